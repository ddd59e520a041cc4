"""What the launch files compute (no launch packages needed): parameter layering and topic names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from siam_tracking_ros.ros.launch_support import (
    camera_info_beside,
    node_matches,
    parameters_for_node,
    tracker_parameter_layers,
    variant_in_params_file,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("key", "node", "namespace", "expected"), [
    ("/**", "tracker_node", "", True),
    ("/**", "tracker_node", "/robot/camera", True),
    ("tracker_node", "tracker_node", "", True),
    ("/tracker_node", "tracker_node", "/robot", False),
    ("/robot/tracker_node", "tracker_node", "/robot", True),
    ("/**/tracker_node", "tracker_node", "/robot/front", True),
    ("/**/tracker_node", "follow_target", "/robot", False),
    ("/robot/*", "tracker_node", "/robot", True),
    ("/robot/*", "tracker_node", "/robot/front", False),
])
def test_node_matches_like_rcl(key: str, node: str, namespace: str, expected: bool) -> None:
    assert node_matches(key, node, namespace) is expected


def test_parameters_for_node_merges_matching_sections_in_order() -> None:
    document = yaml.safe_load("""
/**:
  ros__parameters: {tracker: siamfc, device: cpu}
robot:
  tracker_node:
    ros__parameters: {device: cuda}
other_node:
  ros__parameters: {tracker: dasiamrpn}
""")
    assert parameters_for_node(document, "tracker_node", "/robot") == {"tracker": "siamfc", "device": "cuda"}
    assert parameters_for_node(document, "tracker_node") == {"tracker": "siamfc", "device": "cpu"}
    assert parameters_for_node(None, "tracker_node") == {}


def test_user_values_are_not_overridden_and_packaged_defaults_stay_underneath(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text("/**:\n  ros__parameters:\n    tracker: siamfc\n    device: cpu\n")
    share = ROOT  # a source checkout has the same config/ layout as the installed share dir
    variant, layers = tracker_parameter_layers(share, tracker="", device="", weights="",
                                               params_file=str(user))
    assert variant == "siamfc"
    assert layers == [str(ROOT / "config" / "siamfc.yaml"), str(user)]  # nothing from the arguments
    packaged = yaml.safe_load((ROOT / "config" / "siamfc.yaml").read_text())["/**"]["ros__parameters"]
    assert "lost_frames" in packaged  # comes from the packaged layer, under the user's file
    variant, layers = tracker_parameter_layers(share, tracker="nanotrack", device="", weights="random",
                                               params_file=str(user))
    assert variant == "nanotrack"
    assert layers == [str(ROOT / "config" / "nanotrack.yaml"), str(user),
                      {"tracker": "nanotrack", "weights": "random"}]
    assert tracker_parameter_layers(share, "", "", "", "")[1] == [str(ROOT / "config" / "nanotrack.yaml")]


def test_a_missing_params_file_is_an_error_not_silence(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tracker_parameter_layers(ROOT, "", "", "", str(tmp_path / "missing.yaml"))
    assert variant_in_params_file(tmp_path / "missing.yaml") is None


@pytest.mark.parametrize(("image", "expected"), [
    ("/camera/color/image_raw", "/camera/color/camera_info"),
    ("camera/image", "camera/camera_info"),
    ("image", "camera_info"),
    ("/image", "/camera_info"),
])
def test_camera_info_beside_the_image(image: str, expected: str) -> None:
    assert camera_info_beside(image) == expected
