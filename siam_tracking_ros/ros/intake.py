"""Image intake of the tracker node: cheap parsing of every frame, decoding of the tracked ones only.

The image subscription is raw (serialized CDR bytes): every arriving frame costs a parse of its
header fields (microseconds, pixels stay a view into the bytes), so frames that the newest-frame
mailbox replaces cost next to nothing. Only a frame that will be tracked (or named by
``init_target``) is decoded; one taken while there is no target is only checked (size, layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from siam_tracking_ros.ros.image_conversion import (
    ImageConversionError,
    check_image_size,
    compressed_image_size,
    compressed_imgmsg_to_cv2,
    encoding_info,
    imgmsg_to_bgr8,
    imgmsg_to_numpy,
    parse_serialized_compressed,
    parse_serialized_image,
)


class OversizedImageError(ImageConversionError):
    """An image with more pixels than ``max_image_pixels`` (refused before decoding)."""


@dataclass(frozen=True)
class Frame:
    """One received frame: its (serialized or deserialized) message, stamp, receive time, arrival number."""

    image: Any
    stamp_ns: int
    received: float
    arrival: int


def stamp_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class ImageIntake:
    """Parses serialized ``Image`` / ``CompressedImage`` messages and decodes chosen ones to BGR."""

    def __init__(self, compressed: bool, max_pixels: int) -> None:
        self.compressed = compressed
        self.max_pixels = max_pixels
        self.notes: list[str] = []  # one-off notes for the log (e.g. a converted encoding)
        self._noted: set[str] = set()

    def parse(self, data: Any) -> tuple[Any, int]:
        """``(image, stamp_ns)`` of a serialized message (a deserialized one is passed through)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            return data, stamp_ns(data.header.stamp)
        parse = parse_serialized_compressed if self.compressed else parse_serialized_image
        try:
            image = parse(data)
        except ImageConversionError:
            return self._deserialize(data)
        return image, image.stamp_ns

    def _deserialize(self, data: bytes) -> tuple[Any, int]:
        """Fallback for a CDR layout :func:`parse_serialized_image` does not read."""
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image

        try:
            msg = deserialize_message(bytes(data), CompressedImage if self.compressed else Image)
        except Exception as exc:  # rclpy raises plain exceptions for undecodable CDR
            raise ImageConversionError(f"cannot deserialize the image message: {exc}") from exc
        return msg, stamp_ns(msg.header.stamp)

    def check(self, image: Any) -> tuple[int, int]:
        """``(width, height)`` of ``image`` without decoding it; raises for an oversized or (raw) bad one."""
        if self.compressed:
            width, height = compressed_image_size(image.data)
            self._check_size(width, height)
            return width, height
        self._check_size(int(image.width), int(image.height))
        imgmsg_to_numpy(image)  # a view: checks encoding, step and data length, copies nothing
        return int(image.width), int(image.height)

    def decode(self, image: Any) -> np.ndarray:
        """The BGR frame of ``image``; refuses an oversized one before decoding."""
        self.check(image)
        if self.compressed:
            return compressed_imgmsg_to_cv2(image)
        self._note_encoding(image.encoding)
        frame = imgmsg_to_bgr8(image)
        # a view into the received bytes is read-only; trackers get a frame they may write to
        return frame if frame.flags.writeable else frame.copy()

    def _check_size(self, width: int, height: int) -> None:
        try:
            check_image_size(width, height, self.max_pixels)
        except ImageConversionError as exc:
            raise OversizedImageError(str(exc)) from exc

    def _note_encoding(self, encoding: str) -> None:
        if encoding in self._noted:
            return
        self._noted.add(encoding)
        try:
            info = encoding_info(encoding)
        except ImageConversionError:
            return
        if not info.color and info.dtype != "u1":
            scale = "0..1 scaled to 0..255" if info.dtype.startswith("f") else "divided by 256"
            self.notes.append(f"'{encoding}' images are converted to 8-bit BGR for tracking ({scale})")
