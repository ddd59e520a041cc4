# ruff: noqa: I001  (the repository's launch/ folder makes ruff take `launch` for first-party)
"""Start the Siamese tracker node (optionally with a video player).

    ros2 launch siam_tracking_ros tracker.launch.py tracker:=nanotrack image:=/camera/image_raw \
        device:=cuda weights:=/path/to/nanotrackv2.pth
    ros2 launch siam_tracking_ros tracker.launch.py video:=/path/to/clip.mp4   # with a player

Arguments: tracker, image, device, weights, params_file (default: config/<tracker>.yaml),
namespace, lifecycle (true: the managed node, left unconfigured), video (empty: no player).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "siam_tracking_ros"


def generate_launch_description() -> LaunchDescription:
    tracker = LaunchConfiguration("tracker")
    image = LaunchConfiguration("image")
    device = LaunchConfiguration("device")
    weights = LaunchConfiguration("weights")
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    lifecycle = LaunchConfiguration("lifecycle")
    video = LaunchConfiguration("video")

    arguments = [
        DeclareLaunchArgument("tracker", default_value="nanotrack", description="tracker variant"),
        DeclareLaunchArgument("image", default_value="image", description="input sensor_msgs/Image topic"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("weights", default_value="",
                              description="weights file; empty = the variant's packaged default"),
        DeclareLaunchArgument(
            "params_file",
            default_value=[FindPackageShare(PACKAGE), "/config/", tracker, ".yaml"],
            description="parameter file (default: config/<tracker>.yaml of this package)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: start the managed (lifecycle) node, unconfigured"),
        DeclareLaunchArgument("video", default_value="",
                              description="video file / image folder / camera to play on the image topic"),
    ]
    # Launch arguments override the file's values; typed as strings (an empty weights stays "").
    parameters = [params_file, {
        "tracker": ParameterValue(tracker, value_type=str),
        "device": ParameterValue(device, value_type=str),
        "weights": ParameterValue(weights, value_type=str),
    }]
    remappings = [("image", image), ("image/compressed", [image, "/compressed"])]

    plain = Node(package=PACKAGE, executable="tracker_node", name="tracker_node", namespace=namespace,
                 parameters=parameters, remappings=remappings, output="screen",
                 condition=UnlessCondition(lifecycle))
    managed = LifecycleNode(package=PACKAGE, executable="tracker_lifecycle_node", name="tracker_node",
                            namespace=namespace, parameters=parameters, remappings=remappings,
                            output="screen", condition=IfCondition(lifecycle))
    player = Node(package=PACKAGE, executable="video_publisher", name="video_publisher",
                  namespace=namespace, parameters=[{"source": ParameterValue(video, value_type=str)}],
                  remappings=[("image", image)], output="screen",
                  condition=IfCondition(PythonExpression(["'", video, "' != ''"])))
    return LaunchDescription([*arguments, plain, managed, player])
