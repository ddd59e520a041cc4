"""Conversion between ``sensor_msgs/Image`` / ``CompressedImage`` and numpy, without cv_bridge.

Semantics follow cv_bridge for the encodings we support:

- :func:`imgmsg_to_cv2` with ``desired_encoding="passthrough"`` returns the pixels as they are
  (``HxW`` for one channel, ``HxWxC`` otherwise; YUV 4:2:2 as ``HxWx2``), in native byte order.
  With another encoding the pixels are converted (colour order, channel count, 8/16-bit depth
  scaled by 256 as cv_bridge does).
- :func:`cv2_to_imgmsg` builds a message from an array; ``encoding="passthrough"`` names it
  ``8UC1``/``16UC3``/... after its dtype and channels.

:func:`imgmsg_to_numpy` is the zero-copy view underneath: it wraps the message buffer (padded
``step`` and big-endian data included) without copying. Everything raises
:class:`ImageConversionError` with a message that says what is wrong.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """An image message that cannot be converted (unknown encoding, wrong size, empty, ...)."""


@dataclass(frozen=True)
class EncodingInfo:
    """Layout of one ``sensor_msgs`` encoding."""

    dtype: str       # numpy base type, e.g. "u1", "u2", "f4"
    channels: int
    color: str       # "bgr", "rgb", "bgra", "rgba", "mono", "uyvy", "yuyv" or "" for generic


_COLOR = {
    "rgb8": EncodingInfo("u1", 3, "rgb"), "bgr8": EncodingInfo("u1", 3, "bgr"),
    "rgba8": EncodingInfo("u1", 4, "rgba"), "bgra8": EncodingInfo("u1", 4, "bgra"),
    "rgb16": EncodingInfo("u2", 3, "rgb"), "bgr16": EncodingInfo("u2", 3, "bgr"),
    "rgba16": EncodingInfo("u2", 4, "rgba"), "bgra16": EncodingInfo("u2", 4, "bgra"),
    "mono8": EncodingInfo("u1", 1, "mono"), "mono16": EncodingInfo("u2", 1, "mono"),
    # YUV 4:2:2, two bytes per pixel. ROS's "yuv422" is UYVY; "yuv422_yuy2" is YUYV.
    "yuv422": EncodingInfo("u1", 2, "uyvy"), "uyvy": EncodingInfo("u1", 2, "uyvy"),
    "yuv422_yuy2": EncodingInfo("u1", 2, "yuyv"), "yuyv": EncodingInfo("u1", 2, "yuyv"),
}
_GENERIC_DEPTHS = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4",
                   "64F": "f8"}
_DTYPE_TO_DEPTH = {np.dtype(v).str[1:]: k for k, v in _GENERIC_DEPTHS.items()}

#: encodings this module reads and writes (plus every generic ``<depth>C<n>``)
SUPPORTED_ENCODINGS = tuple(_COLOR) + tuple(f"{d}C{n}" for d in _GENERIC_DEPTHS for n in (1, 2, 3, 4))


def encoding_info(encoding: str) -> EncodingInfo:
    """Layout of ``encoding``; raises :class:`ImageConversionError` for an unsupported one."""
    if encoding in _COLOR:
        return _COLOR[encoding]
    depth, sep, channels = encoding.upper().partition("C")
    if sep and depth in _GENERIC_DEPTHS and channels.isdigit() and 1 <= int(channels) <= 4:
        return EncodingInfo(_GENERIC_DEPTHS[depth], int(channels), "")
    raise ImageConversionError(
        f"unsupported image encoding '{encoding}'; supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16, "
        f"rgb16, bgr16, rgba16, bgra16, yuv422 (uyvy), yuv422_yuy2 (yuyv) and <8U|16U|32F|...>C<1-4>")


def imgmsg_to_numpy(msg) -> np.ndarray:
    """Zero-copy view of an ``Image`` message's pixels, shaped ``HxW`` or ``HxWxC``.

    Honours a padded ``step`` (rows longer than ``width * pixel size``) and ``is_bigendian``
    (the view's dtype carries the byte order). Raises :class:`ImageConversionError` for an
    unsupported encoding, a zero-size image or data whose length does not match ``height * step``.
    """
    info = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"zero-size image ({width}x{height})")
    dtype = np.dtype(info.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    pixel_bytes = dtype.itemsize * info.channels
    if step < width * pixel_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width {width} x {pixel_bytes} bytes per pixel "
            f"for encoding '{msg.encoding}'")
    size = len(msg.data)
    if size != height * step:
        raise ImageConversionError(
            f"image data has {size} bytes, expected height {height} x step {step} = {height * step}")
    if step % dtype.itemsize:
        raise ImageConversionError(f"step {step} is not a multiple of the {dtype.itemsize}-byte pixel type")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    rows = buffer.reshape(height, step)[:, :width * pixel_bytes]
    pixels = rows.view(dtype)  # a view: padding bytes are skipped by the row stride
    return pixels.reshape(height, width, info.channels) if info.channels > 1 else pixels


def _native(image: np.ndarray) -> np.ndarray:
    """``image`` in native byte order (a copy only when it is not)."""
    if image.dtype.byteorder in ("=", "|") or image.dtype.isnative:
        return image
    return image.astype(image.dtype.newbyteorder("="))


_TO_BGR = {"rgb": cv2.COLOR_RGB2BGR, "rgba": cv2.COLOR_RGBA2BGR, "bgra": cv2.COLOR_BGRA2BGR,
           "mono": cv2.COLOR_GRAY2BGR, "uyvy": cv2.COLOR_YUV2BGR_UYVY, "yuyv": cv2.COLOR_YUV2BGR_YUY2}
_FROM_BGR = {"rgb": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_BGR2RGBA, "bgra": cv2.COLOR_BGR2BGRA,
             "mono": cv2.COLOR_BGR2GRAY}


def _convert_color(image: np.ndarray, src: EncodingInfo, dst: EncodingInfo) -> np.ndarray:
    """Colour-order/channel conversion through BGR, depth kept."""
    if src.color == dst.color:
        return image
    if dst.color in ("uyvy", "yuyv"):
        raise ImageConversionError("conversion to YUV 4:2:2 is not supported")
    direct = {("rgb", "rgba"): cv2.COLOR_RGB2RGBA, ("rgba", "rgb"): cv2.COLOR_RGBA2RGB,
              ("bgra", "rgba"): cv2.COLOR_BGRA2RGBA, ("rgba", "bgra"): cv2.COLOR_RGBA2BGRA,
              ("mono", "rgba"): cv2.COLOR_GRAY2RGBA, ("mono", "bgra"): cv2.COLOR_GRAY2BGRA,
              ("rgb", "mono"): cv2.COLOR_RGB2GRAY, ("rgba", "mono"): cv2.COLOR_RGBA2GRAY,
              ("bgra", "mono"): cv2.COLOR_BGRA2GRAY}
    if (src.color, dst.color) in direct:
        return cv2.cvtColor(image, direct[(src.color, dst.color)])
    if src.color in ("uyvy", "yuyv") and image.dtype != np.uint8:
        raise ImageConversionError("YUV 4:2:2 images must be 8-bit")
    bgr = image if src.color == "bgr" else cv2.cvtColor(image, _TO_BGR[src.color])
    return bgr if dst.color == "bgr" else cv2.cvtColor(bgr, _FROM_BGR[dst.color])


def _convert_depth(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """8 <-> 16 bit with cv_bridge's scaling (x256 / /256); other types cast."""
    if image.dtype == dtype:
        return image
    if image.dtype == np.uint16 and dtype == np.uint8:
        return (image >> 8).astype(np.uint8)
    if image.dtype == np.uint8 and dtype == np.uint16:
        return image.astype(np.uint16) << 8
    return image.astype(dtype)


def imgmsg_to_cv2(msg, desired_encoding: str = "passthrough") -> np.ndarray:
    """An ``Image`` message as an OpenCV-style array, converted to ``desired_encoding``.

    ``passthrough`` keeps the message's encoding; colour encodings (``bgr8``, ``rgb8``, ``mono8``,
    ``mono16``, ...) convert as cv_bridge does. A generic source (``8UC3``) converts only to an
    encoding with as many channels (the bytes are taken as they are), as in cv_bridge.
    The result may share memory with ``msg.data`` when no conversion was needed.
    """
    image = _native(imgmsg_to_numpy(msg))
    if desired_encoding in ("passthrough", msg.encoding):
        return image
    src, dst = encoding_info(msg.encoding), encoding_info(desired_encoding)
    if not src.color or not dst.color:
        if src.channels != dst.channels:
            raise ImageConversionError(
                f"cannot convert '{msg.encoding}' to '{desired_encoding}': "
                f"{src.channels} vs {dst.channels} channels and no colour meaning")
        return _convert_depth(image, np.dtype(dst.dtype))
    if src.color in ("uyvy", "yuyv"):
        image = cv2.cvtColor(image, _TO_BGR[src.color])
        src = _COLOR["bgr8"]
    return _convert_color(_convert_depth(image, np.dtype(dst.dtype)), src, dst)


def imgmsg_to_bgr8(msg) -> np.ndarray:
    """The ``HxWx3 uint8`` BGR frame trackers take (no copy for a tightly packed ``bgr8`` message).

    Generic encodings are read by channel count (1: grey, 3: BGR, 4: BGRA); 16-bit data is scaled
    by 1/256 and floating-point data from [0, 1] to [0, 255] (clipped; NaN as 0). Signed integer
    and two-channel generic data have no colour meaning and are refused.
    """
    info = encoding_info(msg.encoding)
    if info.color:
        return imgmsg_to_cv2(msg, "bgr8")
    if info.channels == 2:
        raise ImageConversionError(f"'{msg.encoding}' has 2 channels and no colour meaning")
    image = _to_uint8(_native(imgmsg_to_numpy(msg)), msg.encoding)
    return image if info.channels == 3 else cv2.cvtColor(image, _GENERIC_TO_BGR[info.channels])


_GENERIC_TO_BGR = {1: cv2.COLOR_GRAY2BGR, 4: cv2.COLOR_BGRA2BGR}


def _to_uint8(image: np.ndarray, encoding: str) -> np.ndarray:
    """Generic pixels as 8-bit: 8U as is, 16U / 256, float [0, 1] x 255; signed types refused."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype.kind == "f":
        scaled = np.nan_to_num(image.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
        return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ImageConversionError(f"'{encoding}' holds signed integers with no brightness scale; "
                               f"publish 8UC*/16UC*/32FC* (0..1) or a colour encoding")


def _passthrough_encoding(image: np.ndarray) -> str:
    depth = _DTYPE_TO_DEPTH.get(image.dtype.str[1:])
    if depth is None:
        raise ImageConversionError(f"no image encoding for dtype {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    return f"{depth}C{channels}"


def cv2_to_imgmsg(image: np.ndarray, encoding: str = "passthrough", header=None):
    """A ``sensor_msgs/Image`` holding ``image`` (tightly packed rows).

    ``encoding`` must fit the array's dtype and channel count (as in cv_bridge, no conversion
    happens here). Multi-byte pixels keep the array's byte order, flagged in ``is_bigendian``.
    """
    from sensor_msgs.msg import Image

    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ImageConversionError(f"expected a non-empty HxW or HxWxC array, got shape {image.shape}")
    if encoding == "passthrough":
        encoding = _passthrough_encoding(image)
    info = encoding_info(encoding)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != info.channels or image.dtype.str[1:] != np.dtype(info.dtype).str[1:]:
        raise ImageConversionError(
            f"encoding '{encoding}' needs {info.channels} channel(s) of {np.dtype(info.dtype)}, "
            f"got {channels} of {image.dtype}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    big = image.dtype.byteorder == ">" or (image.dtype.byteorder == "=" and sys.byteorder == "big")
    msg.is_bigendian = int(big and image.dtype.itemsize > 1)
    msg.step = msg.width * info.channels * image.dtype.itemsize
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(image).tobytes())
    msg.data = data
    return msg


def compressed_imgmsg_to_cv2(msg, desired_encoding: str = "bgr8") -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg/png/...) through OpenCV."""
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageConversionError("compressed image has no data")
    flag = cv2.IMREAD_UNCHANGED if desired_encoding == "passthrough" else cv2.IMREAD_COLOR
    image = cv2.imdecode(buffer, flag)
    if image is None:
        raise ImageConversionError(f"cannot decode compressed image (format '{msg.format}')")
    if desired_encoding in ("passthrough", "bgr8"):
        return image
    return _convert_color(image, _COLOR["bgr8"], encoding_info(desired_encoding))


def cv2_to_compressed_imgmsg(image: np.ndarray, dst_format: str = "jpeg", header=None):
    """Encode an array as a ``sensor_msgs/CompressedImage`` (``jpeg`` or ``png``)."""
    from sensor_msgs.msg import CompressedImage

    ok, encoded = cv2.imencode("." + dst_format.lower().replace("jpeg", "jpg"), image)
    if not ok:
        raise ImageConversionError(f"cannot encode image as '{dst_format}'")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = dst_format
    data = array.array("B")
    data.frombytes(encoded.tobytes())
    msg.data = data
    return msg


# --- serialized (CDR) messages ------------------------------------------------------------------
# A raw subscription hands over the serialized message. Reading the few fields of an Image /
# CompressedImage straight from the CDR bytes (the pixels stay a view into them) costs
# microseconds, where deserializing a 1080p Image into a Python message costs about 10 ms.
_ENCAPSULATIONS = {0x0000: ">", 0x0001: "<", 0x0006: ">", 0x0007: "<"}  # (PLAIN_)CDR(2) BE / LE


class _CdrReader:
    """Sequential reader of a plain CDR buffer (alignment relative to the 4-byte encapsulation header)."""

    def __init__(self, buffer: bytes | memoryview) -> None:
        self.view = memoryview(buffer)
        if len(self.view) < 4:
            raise ImageConversionError("serialized message is shorter than its encapsulation header")
        kind = int.from_bytes(self.view[:2], "big")
        if kind not in _ENCAPSULATIONS:
            raise ImageConversionError(f"unsupported CDR encapsulation 0x{kind:04x}")
        self.order = _ENCAPSULATIONS[kind]
        self.pos = 4

    def _take(self, size: int, align: int) -> memoryview:
        self.pos = 4 + -(-(self.pos - 4) // align) * align
        end = self.pos + size
        if end > len(self.view):
            raise ImageConversionError("serialized message is truncated")
        chunk, self.pos = self.view[self.pos:end], end
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self._take(4, 4), "little" if self.order == "<" else "big")

    def int32(self) -> int:
        value = self.uint32()
        return value - (1 << 32) if value >= 1 << 31 else value

    def uint8(self) -> int:
        return self._take(1, 1)[0]

    def string(self) -> str:
        length = self.uint32()
        return bytes(self._take(length, 1)[:max(0, length - 1)]).decode("utf-8", "replace")

    def octets(self) -> memoryview:
        return self._take(self.uint32(), 1)


@dataclass(frozen=True)
class SerializedImage:
    """The fields of a serialized ``Image`` / ``CompressedImage``; ``data`` is a view, not a copy.

    Duck-types the message for :func:`imgmsg_to_numpy` (``format`` set for compressed ones).
    """

    stamp_ns: int
    frame_id: str
    data: memoryview
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    format: str | None = None

    @property
    def header(self):
        """A ``std_msgs/Header`` with this stamp and frame id."""
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        sec, nanosec = divmod(self.stamp_ns, 1_000_000_000)
        return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=self.frame_id)


def _read_header(reader: _CdrReader) -> tuple[int, str]:
    sec, nanosec = reader.int32(), reader.uint32()
    return sec * 1_000_000_000 + nanosec, reader.string()


def parse_serialized_image(buffer: bytes | memoryview) -> SerializedImage:
    """A serialized ``sensor_msgs/Image`` as :class:`SerializedImage` (no pixel copy)."""
    reader = _CdrReader(buffer)
    stamp, frame_id = _read_header(reader)
    height, width, encoding = reader.uint32(), reader.uint32(), reader.string()
    is_bigendian, step = reader.uint8(), reader.uint32()
    return SerializedImage(stamp, frame_id, reader.octets(), height, width, encoding, is_bigendian, step)


def parse_serialized_compressed(buffer: bytes | memoryview) -> SerializedImage:
    """A serialized ``sensor_msgs/CompressedImage`` as :class:`SerializedImage` (no data copy)."""
    reader = _CdrReader(buffer)
    stamp, frame_id = _read_header(reader)
    fmt = reader.string()
    return SerializedImage(stamp, frame_id, reader.octets(), format=fmt)


# --- size of compressed images before decoding ----------------------------------------------------
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_image_size(data: bytes | memoryview) -> tuple[int, int]:
    """``(width, height)`` from a PNG or JPEG header, without decoding the pixels."""
    view = memoryview(data)
    if bytes(view[:8]) == b"\x89PNG\r\n\x1a\n":
        if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
            raise ImageConversionError("PNG without an IHDR header")
        return int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
    if bytes(view[:2]) == b"\xff\xd8":
        return _jpeg_size(view)
    raise ImageConversionError("compressed image is neither PNG nor JPEG (the formats accepted)")


def _jpeg_size(view: memoryview) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(view):
        if view[pos] != 0xFF:
            raise ImageConversionError("corrupt JPEG header")
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(view[pos + 2:pos + 4], "big")
        if marker in _JPEG_SOF:
            if pos + 9 > len(view):
                break
            return int.from_bytes(view[pos + 7:pos + 9], "big"), int.from_bytes(view[pos + 5:pos + 7], "big")
        if marker == 0xDA or length < 2:
            break
        pos += 2 + length
    raise ImageConversionError("JPEG header without a frame size (SOF) marker")


def check_image_size(width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`ImageConversionError` for an image of more than ``max_pixels`` pixels."""
    if width * height > max_pixels:
        raise ImageConversionError(f"image of {width}x{height} = {width * height} pixels exceeds "
                                   f"max_image_pixels {max_pixels}; refused before decoding")
