"""The ROS package contract: package.xml, generated interfaces, installed executables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXECUTABLES = ["tracker_node", "tracker_lifecycle_node", "video_publisher", "siam-demo", "siam-train",
               "siam-eval", "siam-bench", "siam-convert", "siam-tune"]


def test_package_xml_is_valid_format3() -> None:
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    package = catkin_pkg.parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.package_format == 3
    assert package.name == "siam_tracking_ros"
    assert package.licenses == ["Apache-2.0"]
    assert all("@" in m.email and "example" not in m.email for m in package.maintainers)
    names = {d.name for d in package.exec_depends + package.build_depends + package.build_export_depends}
    for needed in ["rclpy", "sensor_msgs", "std_msgs", "std_srvs", "geometry_msgs", "diagnostic_msgs",
                   "builtin_interfaces", "rosidl_default_runtime", "python3-numpy", "python3-opencv"]:
        assert needed in names, needed
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]


def test_tracked_object_contract() -> None:
    msg_module = pytest.importorskip("siam_tracking_ros.msg", reason="interfaces not built: ./setup.sh")
    msg = msg_module.TrackedObject()
    assert (msg.IDLE, msg.TRACKING, msg.LOST) == (0, 1, 2)
    fields = msg.get_fields_and_field_types()
    expected = {"header": "std_msgs/Header", "tracker": "string", "state": "uint8", "score": "float",
                "x": "float", "y": "float", "width": "float", "height": "float",
                "polygon": "geometry_msgs/Polygon", "has_mask": "boolean", "latency_ms": "float"}
    for name, kind in expected.items():
        assert fields[name] == kind, name


def test_init_target_contract() -> None:
    srv_module = pytest.importorskip("siam_tracking_ros.srv", reason="interfaces not built: ./setup.sh")
    request = srv_module.InitTarget.Request.get_fields_and_field_types()
    response = srv_module.InitTarget.Response.get_fields_and_field_types()
    assert request == {"x": "float", "y": "float", "width": "float", "height": "float",
                       "stamp": "builtin_interfaces/Time", "tracker": "string"}
    assert response == {"success": "boolean", "message": "string"}


@pytest.mark.parametrize("name", EXECUTABLES)
def test_executables_installed(name: str) -> None:
    install = ROOT / "install" / "siam_tracking_ros"
    if not install.is_dir():
        pytest.skip("not built: ./setup.sh")
    for folder in ("lib/siam_tracking_ros", "bin"):
        path = install / folder / name
        assert path.exists() and os.access(path, os.X_OK), path
