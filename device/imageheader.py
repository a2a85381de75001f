"""Image dimensions from the file header, before anything is decoded.

A 389 kB PNG can claim 20000 x 20000 pixels and make OpenCV allocate 1.2 GB; every place that
decodes images it did not make (the ``images`` frame source, ``parcelguard data ingest-*``) asks
:func:`check_image` first. PNG, JPEG, BMP, WebP and TIFF headers are parsed; a header that cannot
be read is refused, as a decoder would refuse the image anyway.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO

MAX_PIXELS = 40_000_000  # 8000 x 5000: far above any camera frame or crop this project handles
HEAD_BYTES = 64 * 1024  # JPEG SOF markers come after EXIF/ICC segments; 64 kB covers real files


def _jpeg(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue
        if marker == 0xD9:
            return None
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = int.from_bytes(seg, "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            d = f.read(5)
            if len(d) < 5:
                return None
            return int.from_bytes(d[3:5], "big"), int.from_bytes(d[1:3], "big")
        if length < 2:
            return None
        f.seek(length - 2, 1)


def _webp(h: bytes) -> tuple[int, int] | None:
    chunk = h[12:16]
    if chunk == b"VP8X" and len(h) >= 30:
        return 1 + int.from_bytes(h[24:27], "little"), 1 + int.from_bytes(h[27:30], "little")
    if chunk == b"VP8 " and len(h) >= 30:
        w, ht = struct.unpack("<HH", h[26:30])
        return w & 0x3FFF, ht & 0x3FFF
    if chunk == b"VP8L" and len(h) >= 25:
        bits = int.from_bytes(h[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def _tiff(h: bytes) -> tuple[int, int] | None:
    end = "<" if h[:2] == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", h[4:8])
    if ifd + 2 > len(h):
        return None
    (n,) = struct.unpack(end + "H", h[ifd : ifd + 2])
    dims: dict[int, int] = {}
    for i in range(n):
        at = ifd + 2 + 12 * i
        if at + 12 > len(h):
            break
        tag, typ = struct.unpack(end + "HH", h[at : at + 4])
        if tag in (256, 257):
            fmt = end + ("H" if typ == 3 else "I")
            dims[tag] = struct.unpack(fmt, h[at + 8 : at + 8 + struct.calcsize(fmt)])[0]
    return (dims[256], dims[257]) if len(dims) == 2 else None


def header_size(head: bytes, stream: BinaryIO | None = None) -> tuple[int, int] | None:
    """(width, height) from the first bytes of an image file (a JPEG's markers are walked in
    ``stream``, the open file, when given); None if the header is not readable."""
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"\xff\xd8":
            return _jpeg(stream if stream is not None else io.BytesIO(head))
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp(head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(head)
    except (struct.error, ValueError):
        return None
    return None


def check_image(
    head: bytes, max_pixels: int = MAX_PIXELS, stream: BinaryIO | None = None
) -> str | None:
    """None when the header says the image is safe to decode, else the reason (one phrase)."""
    size = header_size(head, stream)
    if size is None:
        return "no readable PNG/JPEG/BMP/WebP/TIFF header (corrupt or unsupported)"
    w, h = size
    if w <= 0 or h <= 0:
        return f"its header gives an empty size {w}x{h}"
    if w * h > max_pixels:
        return f"its header claims {w}x{h} pixels, over the {max_pixels:,}-pixel limit"
    return None


def check_image_file(path: Path, max_pixels: int = MAX_PIXELS) -> str | None:
    """:func:`check_image` on the start of the file at ``path`` (an unreadable file is a reason)."""
    try:
        with open(path, "rb") as f:
            return check_image(f.read(HEAD_BYTES), max_pixels, stream=f)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
