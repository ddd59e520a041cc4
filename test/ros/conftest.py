"""rclpy tests: DDS kept on this machine, a per-run domain, logs in a temporary folder; fixtures.

The environment is set at import time, before anything initialises rclpy.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(120 + os.getpid() % 100))
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="siam_ros_log_")
os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; DISCOVERY_RANGE replaces it

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import siam_ros_testing`

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: source env.sh")
pytest.importorskip("siam_tracking_ros.msg", reason="interfaces not built: ./setup.sh")

from siam_ros_testing import NANOTRACK_V2, SEQUENCES, nanotrack_available  # noqa: E402


@pytest.fixture(scope="session")
def nanotrack_weights() -> Path:
    ok, reason = nanotrack_available()
    if not ok:
        pytest.skip(reason)
    return NANOTRACK_V2


@pytest.fixture(scope="session")
def crossing():
    """The otb_Crossing sequence (120 frames, 360x240, a walking person)."""
    if not (SEQUENCES / "otb_Crossing").is_dir():
        pytest.skip(f"{SEQUENCES / 'otb_Crossing'} not present")
    from siam_tracking_ros.data.sequences import load_sequence

    return load_sequence(SEQUENCES / "otb_Crossing")


@pytest.fixture(scope="session")
def ros_session():
    """rclpy initialised once for the test session."""
    rclpy.init()
    yield
    rclpy.try_shutdown()
