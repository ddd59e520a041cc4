"""``video_publisher``: plays a video file, an image folder or a camera as ``sensor_msgs/Image``.

Usage::

    video_publisher SOURCE [--rate HZ] [--loop] [--frame-id camera] [--topic image]
                    [--reliability best_effort|reliable] [--start N] [--max-frames N]
                    [--wait-subscribers N] [--ros-args ...]

``SOURCE`` is a video file, a folder of images (a sequence folder with ``img/`` or ``color/``
works too) or a camera (``0``, ``/dev/video0``). Every option is also a ROS parameter of the node
(``source``, ``rate``, ``loop``, ``frame_id``, ``reliability``, ``start_frame``, ``max_frames``,
``wait_subscribers``); the topic is ``image``, remappable. Frames are stamped with the node clock
when published.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from siam_tracking_ros.data.sequences import IMAGE_SUFFIXES, list_images
from siam_tracking_ros.ros.image_conversion import cv2_to_imgmsg
from siam_tracking_ros.ros.shutdown import (
    disarm_interrupts,
    end_after_interrupt_at_start,
    ignore_interrupts_until_exit,
    install_interrupt_once,
)


class FrameSource:
    """Frames from a video file, an image folder or a camera, as BGR arrays."""

    def __init__(self, source: str, start: int = 0) -> None:
        self.source = source
        self.fps = 0.0
        self._capture: cv2.VideoCapture | None = None
        self._images: list[Path] = []
        self._index = 0
        self._start = max(0, start)
        self.is_camera = source.isdigit() or source.startswith("/dev/video")
        path = Path(source).expanduser()
        if not self.is_camera and path.is_dir():
            folder = next((path / sub for sub in ("img", "color") if (path / sub).is_dir()), path)
            self._images = list_images(folder)
            if not self._images:
                raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        elif not self.is_camera and not path.is_file():
            raise FileNotFoundError(f"no such video, folder or camera: '{source}'")
        self.rewind()

    def rewind(self) -> None:
        """Go back to the start frame."""
        self._index = self._start
        if self._images:
            return
        if self._capture is not None:
            self._capture.release()
        device = int(self.source) if self.source.isdigit() else self.source
        self._capture = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            raise OSError(f"cannot open '{self.source}'")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if self._start and not self.is_camera:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, self._start)

    @property
    def index(self) -> int:
        """Index of the next frame (in the whole file or folder)."""
        return self._index

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end."""
        if self._images:
            if self._index >= len(self._images):
                return None
            frame = cv2.imread(str(self._images[self._index]), cv2.IMREAD_COLOR)
            if frame is None:
                raise OSError(f"cannot read {self._images[self._index]}")
        else:
            assert self._capture is not None
            ok, frame = self._capture.read()
            if not ok:
                return None
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class VideoPublisher(Node):
    """Publishes frames of a :class:`FrameSource` on ``image`` at a fixed rate."""

    def __init__(self, node_name: str = "video_publisher", autostart: bool = True, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare = self._declare
        self.source_path = declare("source", "", "Video file, image folder or camera (0, /dev/video0).")
        self.rate = declare("rate", 0.0, "Frames per second; 0 = the video's own rate (30 if unknown).")
        self.loop = declare("loop", False, "Start again at the end.")
        self.frame_id = declare("frame_id", "camera", "header.frame_id of the images.")
        reliability = declare("reliability", "reliable", "QoS reliability: reliable or best_effort.")
        start = declare("start_frame", 0, "First frame index to publish.")
        self.max_frames = declare("max_frames", 0, "Stop after this many frames (0 = no limit).")
        self.wait_subscribers = declare("wait_subscribers", 0, "Start only once this many subscribers "
                                        "are connected (0 = start at once).")
        if reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability must be reliable or best_effort, got '{reliability}'")
        if not self.source_path:
            raise ValueError("parameter 'source' is empty: give a video file, image folder or camera")
        self.frames = FrameSource(self.source_path, start)
        qos = QoSProfile(depth=qos_profile_sensor_data.depth, history=qos_profile_sensor_data.history,
                         reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        self.publisher = self.create_publisher(Image, "image", qos)
        self.period = 1.0 / (self.rate or self.frames.fps or 30.0)
        self.published = 0
        self.finished = threading.Event()
        self._timer = None
        if autostart:
            self.start()

    def _declare(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                         read_only=True)).value

    def start(self) -> None:
        """Publish on a timer at the configured rate."""
        if self._timer is None:
            self.get_logger().info(f"publishing '{self.source_path}' at {1.0 / self.period:.1f} fps on "
                                   f"{self.publisher.topic_name}")
            self._timer = self.create_timer(self.period, self._tick)

    def _tick(self) -> None:
        if self.published == 0 and self.publisher.get_subscription_count() < self.wait_subscribers:
            return
        done = self.finished.is_set() or self.publish_next() is None
        if done and self._timer is not None:
            self._timer.cancel()

    def publish_next(self) -> tuple[int, Image] | None:
        """Read and publish one frame; ``(frame index, message)`` or None when finished."""
        if self.max_frames and self.published >= self.max_frames:
            return self._finish()
        index = self.frames.index
        frame = self.frames.read()
        if frame is None and self.loop and self.published:
            self.frames.rewind()
            index, frame = self.frames.index, self.frames.read()
        if frame is None:
            return self._finish()
        msg = cv2_to_imgmsg(frame, "bgr8")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        self.on_frame(index, frame, msg)
        self.publisher.publish(msg)
        self.published += 1
        return index, msg

    def on_frame(self, index: int, frame: np.ndarray, msg: Image) -> None:
        """Hook called before each frame is published (the demo records frames here)."""

    def _finish(self) -> None:
        if not self.finished.is_set():
            self.get_logger().info(f"finished after {self.published} frames")
            self.finished.set()
        return None


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split ``argv`` into our options and the ROS arguments."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog="video_publisher", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", help="video file, image folder or camera (0, /dev/video0)")
    parser.add_argument("--rate", type=float, help="frames per second (default: the video's rate)")
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument("--frame-id", help="header.frame_id (default camera)")
    parser.add_argument("--topic", help="topic name (default image; same as remapping image:=...)")
    parser.add_argument("--reliability", choices=["reliable", "best_effort"])
    parser.add_argument("--start", type=int, help="first frame index")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--wait-subscribers", type=int, help="start once this many subscribers are connected")
    args = parser.parse_args(remove_ros_args(list(argv))[1:])
    return args, list(argv)


def overrides_from_args(args: argparse.Namespace) -> list[Parameter]:
    """CLI options as parameter overrides (options not given keep the ROS parameter values)."""
    pairs = {"source": args.source, "rate": args.rate, "loop": args.loop or None,
             "frame_id": args.frame_id, "reliability": args.reliability, "start_frame": args.start,
             "max_frames": args.max_frames, "wait_subscribers": args.wait_subscribers}
    return [Parameter(name, value=value) for name, value in pairs.items() if value is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``video_publisher``."""
    full = list(sys.argv if argv is None else ["video_publisher", *argv])
    args, ros_argv = parse_args(full)
    if args.topic:
        ros_argv += ["--ros-args", "-r", f"image:={args.topic}"]
    install_interrupt_once()  # a second Ctrl-C must not interrupt the capture release
    rclpy.init(args=ros_argv)
    try:
        node = VideoPublisher(parameter_overrides=overrides_from_args(args))
    except (ValueError, OSError) as exc:
        print(f"video_publisher: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # Ctrl-C while opening the source
        return end_after_interrupt_at_start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not node.finished.is_set():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        disarm_interrupts()
        node.frames.close()
        node.destroy_node()
        rclpy.try_shutdown()
        ignore_interrupts_until_exit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
