# ruff: noqa: I001  (the repository's launch/ folder makes ruff take `launch` for first-party)
"""Tracker + follow-target controller: camera in, cmd_vel out.

    ros2 launch siam_tracking_ros follow.launch.py image:=/camera/color/image_raw \
        cmd_vel:=/cmd_vel device:=cuda
    ros2 launch siam_tracking_ros follow.launch.py mode:=pan_tilt cmd_vel:=/pan_tilt/cmd_vel

Then pick the target (siam-click, or a detector calling ~/init_target). Arguments: image, tracker,
device, weights, params_file, namespace, lifecycle, video (passed to tracker.launch.py), cmd_vel,
camera_info (empty: camera_info beside the image topic), mode (empty: follow_params_file's value,
else drive), follow_params_file (layered over the packaged config/follow.yaml).
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "siam_tracking_ros"
HERE = os.path.dirname(os.path.abspath(__file__))
SHARE_DIR = os.path.dirname(HERE)  # installed share/siam_tracking_ros, or the source checkout
TRACKER_ARGUMENTS = ("image", "tracker", "device", "weights", "params_file", "namespace", "lifecycle",
                     "video")

ARGUMENTS = [
    ("image", "image", "input sensor_msgs/Image topic of the tracker"),
    ("tracker", "", "tracker variant; empty: the params_file's value, else nanotrack"),
    ("device", "", "auto, cpu, cuda or cuda:N; empty: the params_file's value, else auto"),
    ("weights", "", "weights file; empty: the params_file's value, else the variant's packaged default"),
    ("params_file", "", "tracker parameter file layered over the packaged config/<tracker>.yaml"),
    ("namespace", "", "namespace of the nodes"),
    ("lifecycle", "false", "true: the tracker as a managed node (configure and activate it yourself)"),
    ("video", "", "video file / image folder / camera to play on the image topic (empty: no player)"),
    ("cmd_vel", "cmd_vel", "output topic of the velocity commands"),
    ("camera_info", "", "sensor_msgs/CameraInfo topic for the bearing (empty: camera_info beside image)"),
    ("mode", "", "drive or pan_tilt; empty: the follow_params_file's value, else drive"),
    ("follow_params_file", "", "follow_target parameter file layered over the packaged config/follow.yaml"),
]


def _follower(context: LaunchContext) -> list:
    """follow_target, its parameters layered, its topics beside the tracker's."""
    from siam_tracking_ros.ros.launch_support import camera_info_beside, parameter_layers

    value = {name: context.launch_configurations.get(name, default) for name, default, _ in ARGUMENTS}
    packaged = os.path.join(SHARE_DIR, "config", "follow.yaml")
    layers = parameter_layers(packaged, value["follow_params_file"], {"mode": value["mode"]})
    layers = [{k: ParameterValue(v, value_type=str) for k, v in layer.items()}
              if isinstance(layer, dict) else layer for layer in layers]
    camera_info = value["camera_info"] or camera_info_beside(value["image"])
    return [Node(package=PACKAGE, executable="follow_target", name="follow_target",
                 namespace=value["namespace"], output="screen", parameters=layers,
                 remappings=[("tracked_object", "tracker_node/tracked_object"),
                             ("cmd_vel", value["cmd_vel"]), ("camera_info", camera_info)])]


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in ARGUMENTS]
    tracker = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(HERE, "tracker.launch.py")),
        launch_arguments=[(name, LaunchConfiguration(name)) for name in TRACKER_ARGUMENTS])
    return LaunchDescription([*arguments, tracker, OpaqueFunction(function=_follower)])
