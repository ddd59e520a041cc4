"""Image message <-> numpy conversion: every encoding, padded step, byte order, bad input."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable: source env.sh")

from siam_tracking_ros.ros.image_conversion import (  # noqa: E402
    ImageConversionError,
    compressed_imgmsg_to_cv2,
    cv2_to_compressed_imgmsg,
    cv2_to_imgmsg,
    imgmsg_to_bgr8,
    imgmsg_to_cv2,
    imgmsg_to_numpy,
)

RNG = np.random.default_rng(7)


def raw_message(encoding: str, height: int, width: int, step: int, payload: bytes,
                bigendian: bool = False):
    msg = sensor_msgs.Image()
    msg.encoding, msg.height, msg.width, msg.step = encoding, height, width, step
    msg.is_bigendian = int(bigendian)
    data = array.array("B")
    data.frombytes(payload)
    msg.data = data
    return msg


@pytest.mark.parametrize(("encoding", "dtype", "channels"), [
    ("rgb8", np.uint8, 3), ("bgr8", np.uint8, 3), ("rgba8", np.uint8, 4), ("bgra8", np.uint8, 4),
    ("mono8", np.uint8, 1), ("mono16", np.uint16, 1), ("8UC1", np.uint8, 1), ("8UC3", np.uint8, 3),
    ("16UC1", np.uint16, 1), ("32FC1", np.float32, 1), ("yuv422", np.uint8, 2),
    ("yuv422_yuy2", np.uint8, 2), ("uyvy", np.uint8, 2), ("yuyv", np.uint8, 2),
])
def test_round_trip_passthrough(encoding: str, dtype: type, channels: int) -> None:
    shape = (5, 6) if channels == 1 else (5, 6, channels)
    image = (RNG.random(shape) * 250).astype(dtype)
    msg = cv2_to_imgmsg(image, encoding)
    assert msg.step == 6 * channels * np.dtype(dtype).itemsize
    assert len(msg.data) == msg.step * msg.height
    back = imgmsg_to_cv2(msg)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, image)


def test_passthrough_names_generic_encoding() -> None:
    assert cv2_to_imgmsg(np.zeros((2, 3, 3), np.uint8)).encoding == "8UC3"
    assert cv2_to_imgmsg(np.zeros((2, 3), np.uint16)).encoding == "16UC1"
    assert cv2_to_imgmsg(np.zeros((2, 3), np.float32)).encoding == "32FC1"


def test_known_pixel_values_colour_order() -> None:
    # one red pixel, one green, one blue in RGB order
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    msg = cv2_to_imgmsg(rgb, "rgb8")
    bgr = imgmsg_to_cv2(msg, "bgr8")
    np.testing.assert_array_equal(bgr[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(bgr[0, 2], [255, 0, 0])
    rgba = imgmsg_to_cv2(msg, "rgba8")
    np.testing.assert_array_equal(rgba[0, 1], [0, 255, 0, 255])
    bgra = imgmsg_to_cv2(cv2_to_imgmsg(rgba, "rgba8"), "bgra8")
    np.testing.assert_array_equal(bgra[0, 0], [0, 0, 255, 255])
    mono = imgmsg_to_cv2(cv2_to_imgmsg(np.full((2, 2, 3), 200, np.uint8), "bgr8"), "mono8")
    assert mono.shape == (2, 2) and int(mono[0, 0]) == 200


def test_bgra_and_mono_to_bgr8() -> None:
    bgra = np.array([[[10, 20, 30, 40]]], dtype=np.uint8)
    np.testing.assert_array_equal(imgmsg_to_bgr8(cv2_to_imgmsg(bgra, "bgra8"))[0, 0], [10, 20, 30])
    mono = np.array([[7, 9]], dtype=np.uint8)
    np.testing.assert_array_equal(imgmsg_to_bgr8(cv2_to_imgmsg(mono, "mono8"))[0, 1], [9, 9, 9])


def test_mono16_depth_scaling_like_cv_bridge() -> None:
    mono16 = np.array([[0, 256, 65535, 4660]], dtype=np.uint16)
    as8 = imgmsg_to_cv2(cv2_to_imgmsg(mono16, "mono16"), "mono8")
    np.testing.assert_array_equal(as8, [[0, 1, 255, 18]])
    as16 = imgmsg_to_cv2(cv2_to_imgmsg(np.array([[1, 255]], np.uint8), "mono8"), "mono16")
    np.testing.assert_array_equal(as16, [[256, 65280]])


def test_bgr8_is_zero_copy() -> None:
    image = RNG.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    msg = cv2_to_imgmsg(image, "bgr8")
    view = imgmsg_to_bgr8(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))


def test_padded_step() -> None:
    height, width, step = 3, 4, 16  # 12 bytes of pixels + 4 padding bytes per row
    pixels = RNG.integers(0, 255, (height, width, 3), dtype=np.uint8)
    rows = np.full((height, step), 0xEE, dtype=np.uint8)
    rows[:, :12] = pixels.reshape(height, 12)
    msg = raw_message("bgr8", height, width, step, rows.tobytes())
    view = imgmsg_to_numpy(msg)
    assert view.shape == (height, width, 3)
    np.testing.assert_array_equal(view, pixels)
    np.testing.assert_array_equal(imgmsg_to_cv2(msg, "rgb8"), pixels[..., ::-1])


def test_padded_step_mono16() -> None:
    values = np.array([[1, 2, 3], [400, 500, 600]], dtype="<u2")
    rows = np.zeros((2, 8), dtype=np.uint8)
    rows[:, :6] = values.view(np.uint8).reshape(2, 6)
    np.testing.assert_array_equal(imgmsg_to_cv2(raw_message("mono16", 2, 3, 8, rows.tobytes())), values)


def test_bigendian_mono16() -> None:
    values = np.array([[0x0102, 0xA0B0], [0xFFFF, 0x0001]], dtype=np.uint16)
    payload = values.astype(">u2").tobytes()
    assert payload[:2] == b"\x01\x02"
    msg = raw_message("mono16", 2, 2, 4, payload, bigendian=True)
    out = imgmsg_to_cv2(msg)
    assert out.dtype.isnative and out.dtype == np.uint16
    np.testing.assert_array_equal(out, values)
    # writing a big-endian array flags it and keeps its bytes
    back = cv2_to_imgmsg(values.astype(">u2"), "mono16")
    assert back.is_bigendian == 1
    np.testing.assert_array_equal(imgmsg_to_cv2(back), values)


def test_yuv422_known_values() -> None:
    # UYVY: U Y0 V Y1 with U = V = 128 is grey at luma Y0 and Y1
    uyvy = np.array([[[128, 50], [128, 200]]], dtype=np.uint8)
    msg = cv2_to_imgmsg(uyvy, "yuv422")
    bgr = imgmsg_to_cv2(msg, "bgr8")
    expected = cv2.cvtColor(uyvy, cv2.COLOR_YUV2BGR_UYVY)
    np.testing.assert_array_equal(bgr, expected)
    assert abs(int(bgr[0, 0, 0]) - int(bgr[0, 0, 2])) <= 1 and bgr[0, 1, 1] > bgr[0, 0, 1]
    yuyv = np.array([[[50, 128], [200, 128]]], dtype=np.uint8)  # Y0 U Y1 V
    np.testing.assert_array_equal(imgmsg_to_cv2(cv2_to_imgmsg(yuyv, "yuyv"), "bgr8"), expected)


def test_generic_to_colour_needs_same_channels() -> None:
    image = RNG.integers(0, 255, (2, 2, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imgmsg_to_cv2(cv2_to_imgmsg(image, "8UC3"), "bgr8"), image)
    with pytest.raises(ImageConversionError, match="channels"):
        imgmsg_to_cv2(cv2_to_imgmsg(image, "8UC3"), "mono8")


@pytest.mark.parametrize(("encoding", "height", "width", "step", "size", "match"), [
    ("bayer_rggb8", 2, 2, 2, 4, "unsupported image encoding"),
    ("bgr8", 2, 2, 6, 11, "expected height 2 x step 6"),
    ("bgr8", 0, 0, 0, 0, "zero-size"),
    ("bgr8", 2, 4, 6, 12, "step 6 is smaller"),
    ("mono16", 2, 2, 5, 10, "multiple"),
])
def test_bad_messages_raise(encoding: str, height: int, width: int, step: int, size: int,
                            match: str) -> None:
    msg = raw_message(encoding, height, width, step, bytes(size))
    with pytest.raises(ImageConversionError, match=match):
        imgmsg_to_bgr8(msg)


def test_cv2_to_imgmsg_rejects_mismatch() -> None:
    with pytest.raises(ImageConversionError, match="needs 3 channel"):
        cv2_to_imgmsg(np.zeros((2, 2), np.uint8), "bgr8")
    with pytest.raises(ImageConversionError, match="non-empty"):
        cv2_to_imgmsg(np.zeros((0, 2, 3), np.uint8), "bgr8")


def test_compressed_round_trip() -> None:
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8:] = (10, 200, 30)
    msg = cv2_to_compressed_imgmsg(image, "png")
    assert msg.format == "png"
    np.testing.assert_array_equal(compressed_imgmsg_to_cv2(msg), image)
    jpeg = compressed_imgmsg_to_cv2(cv2_to_compressed_imgmsg(image, "jpeg"), "rgb8")
    assert jpeg.shape == (16, 16, 3) and abs(int(jpeg[0, 12, 0]) - 30) < 12


def test_compressed_garbage_raises() -> None:
    msg = sensor_msgs.CompressedImage()
    msg.format = "jpeg"
    msg.data = array.array("B", b"not a jpeg")
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_imgmsg_to_cv2(msg)
