"""With CI=true a skip that is not on the allow-list fails the run (test/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = '''
import pytest

def test_runs():
    assert True

def test_needs_cuda():
    pytest.skip("needs CUDA")

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False
'''

HIDDEN = '''
import pytest

def test_data_missing():
    pytest.skip("/somewhere/shared/data/sequences not present")
'''

BROKEN_IMPORT = '''
import pytest
pytest.importorskip("no_such_module_anywhere", reason="interfaces not built: ./setup.sh")

def test_never_collected():
    assert True
'''


def run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "test" / "conftest.py", folder / "conftest.py")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           "--rootdir", str(folder), str(folder)],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=300, check=False)


@pytest.mark.parametrize(("files", "ci", "fails"), [
    ({"test_a.py": SAMPLE}, "true", False),  # a CUDA skip and an xfail are fine
    ({"test_a.py": SAMPLE, "test_b.py": HIDDEN}, None, False),  # outside CI a skip is a skip
    ({"test_a.py": SAMPLE, "test_b.py": HIDDEN}, "true", True),
    ({"test_a.py": SAMPLE, "test_c.py": BROKEN_IMPORT}, "true", True),  # skipped at collection
], ids=["allowed", "not-ci", "data-missing", "module-importorskip"])
def test_unexpected_skip_fails_under_ci(files: dict[str, str], ci: str | None, fails: bool,
                                        tmp_path: Path) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = run_pytest(tmp_path, ci)
    output = proc.stdout + proc.stderr
    if fails:
        assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output
        assert "unexpected skips with CI=true" in output, output
        assert ("not present" in output) or ("interfaces not built" in output), output
    else:
        assert proc.returncode == pytest.ExitCode.OK, output
        assert "unexpected skips" not in output, output
