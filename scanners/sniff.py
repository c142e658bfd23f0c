"""Format detection from content (magic bytes and structure), never from file names."""

from __future__ import annotations

import lzma
import re
import struct
import zlib
from enum import StrEnum

from scanners.onnx_wire import looks_like_onnx
from scanners.pickle_ops import VALID_OPCODES
from scanners.pickle_scan import is_pickle_start

SNIFF_BYTES = 4096
"""How many leading bytes :func:`sniff` wants to see."""


class Kind(StrEnum):
    EMPTY = "empty"
    PICKLE = "pickle"  # starts with a PROTO opcode
    MAYBE_PICKLE = "maybe-pickle"  # starts with another opcode byte: protocol 0/1, or text, or junk
    ZIP = "zip"
    TAR = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    LZMA = "lzma"
    ZLIB = "zlib"
    SEVENZIP = "7z"
    ZSTD = "zstd"
    LZ4 = "lz4"
    NPY = "npy"
    ONNX = "onnx"
    SAFETENSORS = "safetensors"
    HDF5 = "hdf5"
    GGUF = "gguf"
    PARQUET = "parquet"
    IMAGE = "image"
    TEXT = "text"
    UNKNOWN = "unknown"


COMPRESSED = frozenset([Kind.GZIP, Kind.BZIP2, Kind.XZ, Kind.LZMA, Kind.ZLIB])
"""Single-stream wrappers the scanner unwraps (stdlib decompressors)."""

UNSUPPORTED_CONTAINERS = {
    Kind.ZSTD: "zstandard-compressed stream",
    Kind.LZ4: "LZ4-compressed stream",
}
"""Containers recognised but not opened: reported as not analysed (never clean)."""

DATA_FORMATS = frozenset([Kind.EMPTY, Kind.TEXT, Kind.PARQUET, Kind.IMAGE])
"""Formats no loader executes: plain data."""


def _is_tar(head: bytes) -> bool:
    if len(head) < 512 or head[257:262] != b"ustar":
        return False
    try:
        stored = int(head[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    block = head[:148] + b" " * 8 + head[156:512]
    return stored == sum(block)


def _is_zlib(head: bytes) -> bool:
    if len(head) < 2 or head[0] & 0x0F != 8 or head[0] >> 4 > 7 or ((head[0] << 8) | head[1]) % 31:
        return False
    try:
        zlib.decompressobj().decompress(head, 64)
    except zlib.error:
        return False
    return True


def _is_lzma_alone(head: bytes) -> bool:
    if len(head) < 13 or head[0] != 0x5D or head[1:3] != b"\0\0":
        return False
    try:
        lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(head, 64)
    except lzma.LZMAError:
        return False
    return True


def _is_safetensors(head: bytes, size: int | None) -> bool:
    if len(head) < 10:
        return False
    # The length's top bytes are zero (so text never matches); a bad length is the validator's to report.
    (n,) = struct.unpack("<Q", head[:8])
    return n >= 2 and head[5:8] == b"\0\0\0" and head[8:9] == b"{"


_CONTROL = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def text_ok(text: str) -> bool:
    """No NUL or other control characters (tabs, newlines, form feeds and ESC are fine)."""
    return _CONTROL.search(text) is None


def looks_like_text(data: bytes, *, final: bool) -> bool:
    """UTF-8 without NUL or other control bytes."""
    try:
        text = data.decode("utf-8") if final else _decode_prefix(data)
    except UnicodeDecodeError:
        return False
    return text_ok(text)


def _decode_prefix(data: bytes) -> str:
    """Decode a prefix that may end inside a multi-byte character."""
    for cut in range(4):
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            if cut == 3:
                raise
    raise AssertionError("unreachable")


def sniff(head: bytes, size: int | None) -> Kind:
    """The kind of content that starts with ``head`` (up to SNIFF_BYTES bytes) in data of ``size`` bytes."""
    if not head:
        return Kind.EMPTY
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return Kind.ZIP
    if head[:2] == b"\x1f\x8b":
        return Kind.GZIP
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return Kind.BZIP2
    if head[:6] == b"\xfd7zXZ\x00":
        return Kind.XZ
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return Kind.SEVENZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return Kind.ZSTD
    if head[:4] == b"\x04\x22\x4d\x18":
        return Kind.LZ4
    if head[:6] == b"\x93NUMPY":
        return Kind.NPY
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return Kind.HDF5
    if head[:4] == b"GGUF":
        return Kind.GGUF
    if head[:4] == b"PAR1":
        return Kind.PARQUET
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:6] in (b"GIF87a", b"GIF89a"):
        return Kind.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Kind.IMAGE
    if _is_tar(head):
        return Kind.TAR
    if _is_safetensors(head, size):
        return Kind.SAFETENSORS
    if looks_like_onnx(head, size):
        return Kind.ONNX
    if is_pickle_start(head):
        return Kind.PICKLE
    if _is_zlib(head):
        return Kind.ZLIB
    if _is_lzma_alone(head):
        return Kind.LZMA
    if head[0] in VALID_OPCODES:
        return Kind.MAYBE_PICKLE
    final = size is not None and size <= len(head)
    if looks_like_text(head, final=final):
        return Kind.TEXT
    return Kind.UNKNOWN
