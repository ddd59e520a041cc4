#!/usr/bin/env python3
"""Rewrite the ROS wheels' cmake export files to this venv's Python paths.

The msg wheels on PyPI carry their build machine's paths (``/opt/python/cp311-cp311/...``) in
``share/*/cmake/*Export*.cmake``; interface generation fails until they point at this
interpreter's include dir and site-packages. Idempotent; run after any reinstall of msg wheels.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

BUILD_PREFIX = re.compile(r"/opt/python/cp3\d+-cp3\d+")


def main() -> int:
    prefix = Path(sys.prefix)
    include = sysconfig.get_paths()["include"]
    purelib = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    changed = 0
    for path in sorted((prefix / "share").glob("*/cmake/*.cmake")):
        text = path.read_text(errors="surrogateescape")
        if "/opt/python/" not in text:
            continue
        new = BUILD_PREFIX.sub("@@PREFIX@@", text)
        new = new.replace(f"@@PREFIX@@/include/{version}", include)
        new = new.replace(f"@@PREFIX@@/lib/{version}/site-packages", purelib)
        new = new.replace("@@PREFIX@@", str(prefix))
        if new != text:
            path.write_text(new, errors="surrogateescape")
            changed += 1
    print(f"fix_ros_wheel_cmake: {changed} cmake file(s) rewritten under {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
