"""The node's image intake: serialized (CDR) frames read without deserializing, sizes read from
compressed headers before decoding, and generic encodings converted for tracking (issue 15)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable: source env.sh")
serialization = pytest.importorskip("rclpy.serialization", reason="rclpy not importable: source env.sh")

from siam_tracking_ros.ros.image_conversion import (  # noqa: E402
    ImageConversionError,
    compressed_image_size,
    cv2_to_compressed_imgmsg,
    cv2_to_imgmsg,
    imgmsg_to_bgr8,
    parse_serialized_compressed,
    parse_serialized_image,
)
from siam_tracking_ros.ros.intake import ImageIntake, OversizedImageError  # noqa: E402

RNG = np.random.default_rng(3)


def stamped(msg, sec: int = 12, nanosec: int = 345, frame_id: str = "camera_optical"):
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, frame_id
    return msg


@pytest.mark.parametrize("encoding,shape", [("bgr8", (5, 7, 3)), ("rgb8", (4, 3, 3)), ("mono16", (3, 5)),
                                            ("8UC1", (2, 9))])
def test_serialized_image_reads_like_the_message(encoding: str, shape: tuple) -> None:
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    pixels = RNG.integers(0, 255, shape).astype(dtype)
    msg = stamped(cv2_to_imgmsg(pixels, encoding))
    view = parse_serialized_image(serialization.serialize_message(msg))
    assert (view.stamp_ns, view.frame_id) == (12 * 10**9 + 345, "camera_optical")
    assert (view.height, view.width, view.encoding, view.step) == (msg.height, msg.width, encoding, msg.step)
    assert view.header == msg.header
    assert np.array_equal(imgmsg_to_bgr8(view), imgmsg_to_bgr8(msg))


def test_serialized_compressed_image_and_its_size() -> None:
    image = RNG.integers(0, 255, (30, 41, 3), dtype=np.uint8)
    for fmt in ("png", "jpeg"):
        msg = stamped(cv2_to_compressed_imgmsg(image, fmt))
        view = parse_serialized_compressed(serialization.serialize_message(msg))
        assert view.format == fmt and bytes(view.data) == bytes(msg.data)
        assert compressed_image_size(view.data) == (41, 30)


def test_truncated_or_foreign_serialized_data_is_refused() -> None:
    data = serialization.serialize_message(stamped(cv2_to_imgmsg(np.zeros((4, 4, 3), np.uint8), "bgr8")))
    with pytest.raises(ImageConversionError, match="truncated"):
        parse_serialized_image(data[:40])
    with pytest.raises(ImageConversionError, match="encapsulation"):
        parse_serialized_image(b"\x12\x34\x00\x00" + data[4:])


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG claiming ``width`` x ``height`` (what a decompression bomb shows)."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height) + b"\x08\x02\x00\x00\x00"


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    intake = ImageIntake(compressed=True, max_pixels=33_177_600)

    class Bomb:
        data = memoryview(png_header(16000, 16000) + b"\x00" * 64)
        format = "png"

    with pytest.raises(OversizedImageError, match="16000x16000"):
        intake.decode(Bomb())
    assert compressed_image_size(png_header(16000, 16000)) == (16000, 16000)
    with pytest.raises(ImageConversionError, match="neither PNG nor JPEG"):
        compressed_image_size(b"GIF89a....")


def test_raw_images_above_the_limit_are_refused_before_conversion() -> None:
    intake = ImageIntake(compressed=False, max_pixels=100)
    with pytest.raises(OversizedImageError, match="max_image_pixels 100"):
        intake.decode(cv2_to_imgmsg(np.zeros((11, 10, 3), np.uint8), "bgr8"))
    assert intake.decode(cv2_to_imgmsg(np.zeros((10, 10, 3), np.uint8), "bgr8")).shape == (10, 10, 3)


def test_float_and_generic_images_convert_for_tracking() -> None:
    intake = ImageIntake(compressed=False, max_pixels=10**6)
    grey = intake.decode(cv2_to_imgmsg(np.full((3, 4, 3), 0.5, np.float32), "32FC3"))
    assert grey.dtype == np.uint8 and np.all(grey == 128)  # scaled from 0..1, not cast to black
    assert intake.notes and "32FC3" in intake.notes[0]
    mono = intake.decode(cv2_to_imgmsg(np.full((3, 4), 200, np.uint8), "8UC1"))
    assert mono.shape == (3, 4, 3) and np.all(mono == 200)  # docs list 8UC1: it is accepted
    bgra = intake.decode(cv2_to_imgmsg(np.full((2, 2, 4), 9, np.uint8), "8UC4"))
    assert bgra.shape == (2, 2, 3)
    with pytest.raises(ImageConversionError, match="signed"):
        intake.decode(cv2_to_imgmsg(np.zeros((2, 2), np.int16), "16SC1"))
    rgb = cv2.cvtColor(np.zeros((2, 2, 3), np.uint8), cv2.COLOR_BGR2RGB)
    assert intake.decode(cv2_to_imgmsg(rgb, "rgb8")).flags.writeable
