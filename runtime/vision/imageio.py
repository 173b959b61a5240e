"""Reading images and accepting frames, bounded: the size is checked before decoding.

Files: regular files only (no FIFO or device blocks a read), at most `MAX_IMAGE_BYTES`, in a
format whose header states its size (JPEG, PNG, BMP, WebP, TIFF, PGM/PPM), and at most
`MAX_IMAGE_PIXELS` by that header, so a 1 KB file declaring 30000x30000 pixels is refused
before a byte is decoded. Frames passed to the API: any array shape, dtype and channel count is
converted to BGR uint8 or refused with an ImageError that says why.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.errors import ImageError
from siamese.runtime.storage.fileio import read_regular_file

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # 8K x 5K; about 120 MB decoded
FORMATS = "JPEG, PNG, BMP, WebP, TIFF, PGM/PPM"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    offset = 2
    while offset + 9 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2:offset + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5:offset + 9])
            return width, height
        if length < 2:
            return None
        offset += 2 + length
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    tokens: list[bytes] = []
    for line in data[:4096].split(b"\n"):
        tokens += line.split(b"#")[0].split()
        if len(tokens) >= 3:
            break
    if len(tokens) < 3 or not (tokens[1].isdigit() and tokens[2].isdigit()):
        return None
    return int(tokens[1]), int(tokens[2])


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    size: dict[int, int] = {}
    for i in range(min(count, 512)):
        entry = data[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"),
                                      entry[8:10] if kind == 3 else entry[8:12])[0]
    return (size[256], size[257]) if len(size) == 2 else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from an image file's header, or None for an unknown format."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM":
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header
                return struct.unpack("<HH", data[18:22])
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
            return _pnm_size(data)
    except struct.error:
        return None
    return None


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode image bytes to BGR uint8 (H, W, 3) after checking the declared size."""
    size = declared_size(data)
    if size is None:
        raise ImageError(f"cannot decode image {source}: not a supported image ({FORMATS}) "
                         f"or corrupt")
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"cannot decode image {source}: it declares {width}x{height} pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"image {source} declares {width}x{height} pixels; the limit is "
                         f"{MAX_IMAGE_PIXELS:,}")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"cannot decode image {source}: not an image or corrupt")
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:  # header and pixels disagreed
        raise ImageError(f"image {source} decodes to more than {MAX_IMAGE_PIXELS:,} pixels")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as a BGR uint8 array of shape (H, W, 3); grey files are expanded.

    Raises ImageError naming the file when it is missing, not a regular file, too large, or
    cannot be decoded.
    """
    data = read_regular_file(path, MAX_IMAGE_BYTES, ImageError, "image")
    return decode_image(data, str(path))


def as_bgr_frame(image: object) -> np.ndarray:
    """A frame from an API caller as contiguous BGR uint8 (H, W, 3), or an ImageError.

    Accepts (H, W) and (H, W, 1) grey, (H, W, 3) BGR and (H, W, 4) BGRA; uint8, uint16 (scaled
    down), other integers within 0-255, and floats (0-1 when their maximum is at most 1, else
    0-255). Refuses empty, oversized, non-finite, boolean and other-shaped arrays.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"a frame must be a numpy array, not {type(image).__name__}")
    if image.ndim not in (2, 3) or image.size == 0 or min(image.shape[:2]) < 1:
        raise ImageError(f"a frame must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
                         f"got shape {image.shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ImageError(f"a frame must have 1, 3 or 4 channels; got {image.shape[2]}")
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"frame of {image.shape[1]}x{image.shape[0]} pixels is over the "
                         f"limit of {MAX_IMAGE_PIXELS:,}")
    image = _to_uint8(image)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])),
                            cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0 or image.max() > 255:
            raise ImageError("an integer frame must hold values 0-255 (or be uint16)")
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ImageError("a frame holds NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 255:
            raise ImageError("a float frame must hold values 0-1 or 0-255")
        scale = 255.0 if high <= 1.0 else 1.0
        return np.rint(image * scale).astype(np.uint8)
    raise ImageError(f"a frame of dtype {image.dtype} is not an image")
