"""video_publisher: frames from a real video file and image folders, and the node in-process over DDS."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from siam_ros_testing import SHARED, Spinner, wait_for

pytestmark = pytest.mark.ros

VIDEO = SHARED / "data" / "videos" / "pysot_bag" / "bag.avi"  # the vot_bag frames as a video


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def bag(sequences_dir: Path):
    from siam_tracking_ros.data.sequences import load_sequence

    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} not present")
    return load_sequence(sequences_dir / "vot_bag")


def test_video_file_gives_the_sequence_frames_and_seeks(bag) -> None:
    from siam_tracking_ros.ros.video_publisher import FrameSource

    source = FrameSource(str(VIDEO))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert len(frames) == len(bag) == 196 and source.index == 196 and source.fps == pytest.approx(25.0)
    assert frames[0].shape == bag.frame(0).shape
    # the same pictures (up to compression), in order: each frame is closest to its own image
    for index in (0, 1, 60, 195):
        around = range(max(0, index - 2), min(196, index + 3))
        near = {i: difference(frames[index], bag.frame(i)) for i in around}
        assert min(near, key=near.get) == index, near
    later = FrameSource(str(VIDEO), start=100)
    assert later.index == 100
    first = later.read()
    assert later.index == 101 and difference(first, frames[100]) < 1.0
    later.read()
    later.rewind()  # back to the start frame, not to 0
    assert later.index == 100 and difference(later.read(), frames[100]) < 1.0
    source.close()
    later.close()


def make_folder(folder: Path, crossing, count: int) -> list[np.ndarray]:
    (folder / "img").mkdir(parents=True)
    for index in range(count):
        shutil.copy(crossing.frames[index], folder / "img" / f"{index:04d}.jpg")
    return [cv2.imread(str(folder / "img" / f"{i:04d}.jpg"), cv2.IMREAD_COLOR) for i in range(count)]


def test_folder_source_and_errors(crossing, tmp_path: Path) -> None:
    from siam_tracking_ros.ros.video_publisher import FrameSource

    images = make_folder(tmp_path / "seq", crossing, 4)
    source = FrameSource(str(tmp_path / "seq"), start=2)  # a sequence folder: its img/ is used
    assert source.index == 2 and source.fps == 0.0
    np.testing.assert_array_equal(source.read(), images[2])
    np.testing.assert_array_equal(source.read(), images[3])
    assert source.read() is None and source.read() is None
    source.rewind()
    np.testing.assert_array_equal(source.read(), images[2])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        FrameSource(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no such video, folder or camera"):
        FrameSource(str(tmp_path / "missing.mp4"))


class Receiver(Node):
    def __init__(self, topic: str) -> None:
        from sensor_msgs.msg import Image

        super().__init__("vp_receiver")
        self.images: list = []
        self.subscription = self.create_subscription(Image, topic, self.images.append, 50)


@pytest.fixture
def player(ros_session, tmp_path: Path):
    """Builds video_publisher nodes on a private topic with a receiver, spins them, cleans up."""
    from siam_tracking_ros.ros.video_publisher import VideoPublisher

    made = []

    def make(source: Path, name: str, topic: str, cls=VideoPublisher, autostart: bool = False, **params):
        overrides = [Parameter("source", value=str(source)),
                     *(Parameter(k, value=v) for k, v in params.items())]
        node = cls(name, autostart=autostart, parameter_overrides=overrides,
                   cli_args=["--ros-args", "-r", f"image:={topic}"])
        receiver = Receiver(topic)
        spinner = Spinner(node, receiver)
        made.append((node, receiver, spinner))
        assert wait_for(lambda: node.publisher.get_subscription_count() > 0), "the receiver never matched"
        return node, receiver

    yield make
    for node, receiver, spinner in made:
        spinner.stop()
        node.frames.close()
        node.destroy_node()
        receiver.destroy_node()


def test_publishes_the_folder_frames_then_finishes(player, crossing, tmp_path: Path) -> None:
    from siam_tracking_ros.ros.image_conversion import imgmsg_to_bgr8
    from siam_tracking_ros.ros.video_publisher import VideoPublisher

    images = make_folder(tmp_path / "seq", crossing, 5)

    class Recording(VideoPublisher):
        def on_frame(self, index, frame, msg) -> None:
            self.seen = [*getattr(self, "seen", []), (index, frame.shape, msg.header.frame_id)]

    node, receiver = player(tmp_path / "seq", "vp_folder", "/vp_folder/image", cls=Recording,
                            frame_id="cam_test", max_frames=3, start_frame=1)
    assert node.period == pytest.approx(1 / 30)  # a folder has no rate of its own: 30 fps
    sent = [node.publish_next() for _ in range(3)]
    assert [index for index, _ in sent] == [1, 2, 3]
    assert node.publish_next() is None and node.finished.is_set() and node.published == 3  # max_frames
    assert node.seen == [(i, (240, 360, 3), "cam_test") for i in (1, 2, 3)]
    assert wait_for(lambda: len(receiver.images) == 3), len(receiver.images)
    for msg, (index, _) in zip(receiver.images, sent, strict=True):
        assert msg.header.frame_id == "cam_test" and msg.encoding == "bgr8"
        np.testing.assert_array_equal(imgmsg_to_bgr8(msg), images[index])  # bgr8 is lossless
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in receiver.images]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_loop_and_waiting_for_subscribers(player, crossing, tmp_path: Path, ros_session) -> None:
    make_folder(tmp_path / "two", crossing, 2)
    node, receiver = player(tmp_path / "two", "vp_loop", "/vp_loop/image", loop=True, max_frames=5,
                            wait_subscribers=2, rate=50.0)
    assert node.period == pytest.approx(1 / 50)
    node._tick()  # the timer callback: one subscriber of the two it waits for, nothing is sent
    assert node.published == 0
    second = Receiver("/vp_loop/image")
    spinner = Spinner(second)
    try:
        assert wait_for(lambda: node.publisher.get_subscription_count() == 2)
        node._tick()
        assert node.published == 1
        indices = [node.publish_next()[0] for _ in range(4)]
        assert indices == [1, 0, 1, 0]  # back to the start at the end of the folder
        assert node.publish_next() is None and node.finished.is_set()
        assert wait_for(lambda: len(receiver.images) == 5 and len(second.images) == 5)
    finally:
        spinner.stop()
        second.destroy_node()


def test_timer_plays_a_video_file_to_its_limit(player, bag) -> None:
    node, receiver = player(VIDEO, "vp_video", "/vp_video/image", autostart=True, max_frames=6,
                            start_frame=10, rate=100.0)
    assert wait_for(node.finished.is_set, 60.0), node.published
    assert node.published == 6 and node.frames.index == 16
    assert wait_for(lambda: len(receiver.images) == 6)
    from siam_tracking_ros.ros.image_conversion import imgmsg_to_bgr8

    assert difference(imgmsg_to_bgr8(receiver.images[0]), bag.frame(10)) < 5.0


def test_bad_parameters_are_refused(ros_session, tmp_path: Path) -> None:
    from siam_tracking_ros.ros.video_publisher import VideoPublisher

    with pytest.raises(ValueError, match="'source' is empty"):
        VideoPublisher("vp_empty", autostart=False)
    with pytest.raises(ValueError, match="reliability must be"):
        VideoPublisher("vp_bad_qos", autostart=False, parameter_overrides=[
            Parameter("source", value=str(tmp_path)), Parameter("reliability", value="sometimes")])
