"""config/tracker.rviz: valid YAML in rviz2's layout, showing the camera, debug image and mask."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# display classes of rviz2's default plugins used here (rviz_default_plugins/plugins_description.xml)
KNOWN_CLASSES = {"rviz_default_plugins/Image", "rviz_default_plugins/MoveCamera",
                 "rviz_default_plugins/TF", "rviz_default_plugins/Orbit", "rviz_common/Displays",
                 "rviz_common/Views", "rviz_common/Time"}
QOS_VALUES = {"Durability Policy": {"Volatile", "Transient Local", "System Default"},
              "History Policy": {"Keep Last", "Keep All", "System Default"},
              "Reliability Policy": {"Reliable", "Best Effort", "System Default"}}


def classes(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["Class"]} if isinstance(node.get("Class"), str) and node["Class"] else set()
        return found.union(*(classes(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(classes(v) for v in node))
    return set()


def test_rviz_config_shows_the_tracker_outputs() -> None:
    config = yaml.safe_load((ROOT / "config" / "tracker.rviz").read_text())
    assert classes(config) <= KNOWN_CLASSES, classes(config) - KNOWN_CLASSES
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"}
    assert topics == {"/camera/image_raw", "/tracker_node/debug_image", "/tracker_node/mask"}
    for display in displays:
        for key, allowed in QOS_VALUES.items():
            assert display["Topic"][key] in allowed, (display["Name"], key)
        assert display["Name"] in config["Window Geometry"], display["Name"]  # its image panel
