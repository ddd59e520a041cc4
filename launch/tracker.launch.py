# ruff: noqa: I001  (the repository's launch/ folder makes ruff take `launch` for first-party)
"""Start the Siamese tracker node (optionally with a video player).

    ros2 launch siam_tracking_ros tracker.launch.py tracker:=nanotrack image:=/camera/image_raw \
        device:=cuda weights:=/path/to/nanotrackv2.pth
    ros2 launch siam_tracking_ros tracker.launch.py video:=/path/to/clip.mp4   # with a player

Arguments: tracker, image, device, weights, params_file, namespace, lifecycle, video.
Parameters are layered: the packaged config/<variant>.yaml, then params_file, then only the
tracker / device / weights arguments that were given (empty = leave the files' value).
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.launch_context import LaunchContext
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "siam_tracking_ros"
NODE_NAME = "tracker_node"
SHARE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # installed share/ or checkout

ARGUMENTS = [
    ("tracker", "", "tracker variant; empty: the params_file's value, else nanotrack"),
    ("image", "image", "input sensor_msgs/Image topic"),
    ("device", "", "auto, cpu, cuda or cuda:N; empty: the params_file's value, else auto"),
    ("weights", "", "weights file; empty: the params_file's value, else the variant's packaged default"),
    ("params_file", "", "parameter file layered over the packaged config/<tracker>.yaml "
     "(empty: the packaged file alone)"),
    ("namespace", "", "namespace of the nodes"),
    ("lifecycle", "false", "true: start the managed (lifecycle) node, unconfigured"),
    ("video", "", "video file / image folder / camera to play on the image topic (empty: no player)"),
]


def _as_text(layers: list) -> list:
    """Keep argument values strings (launch_ros would read 'true' or '1' as YAML otherwise)."""
    return [{k: ParameterValue(v, value_type=str) for k, v in layer.items()} if isinstance(layer, dict)
            else layer for layer in layers]


def _nodes(context: LaunchContext) -> list:
    """The nodes, built from the argument values (plain strings, compared in Python)."""
    from siam_tracking_ros.ros.launch_support import tracker_parameter_layers

    value = {name: context.launch_configurations.get(name, default) for name, default, _ in ARGUMENTS}
    namespace, image, video = value["namespace"], value["image"], value["video"]
    variant, layers = tracker_parameter_layers(SHARE_DIR, value["tracker"], value["device"],
                                               value["weights"], value["params_file"], NODE_NAME,
                                               namespace)
    common = {"package": PACKAGE, "name": NODE_NAME, "namespace": namespace, "output": "screen",
              "parameters": _as_text(layers),
              "remappings": [("image", image), ("image/compressed", f"{image}/compressed")]}
    files = [layer for layer in layers if isinstance(layer, str)]
    actions = [LogInfo(msg=f"{NODE_NAME}: variant {variant}, parameter files {files}")]
    if value["lifecycle"].strip().lower() in ("true", "1", "yes", "on"):
        actions.append(LifecycleNode(executable="tracker_lifecycle_node", **common))
    else:
        actions.append(Node(executable="tracker_node", **common))
    if video:  # a plain comparison: quotes or spaces in the path are fine
        actions.append(Node(package=PACKAGE, executable="video_publisher", name="video_publisher",
                            namespace=namespace, output="screen",
                            # the first frame waits until the tracker listens (no frames lost while it starts)
                            parameters=[{"source": ParameterValue(video, value_type=str),
                                         "wait_subscribers": 1}],
                            remappings=[("image", image)]))
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
