"""NumPy ``.npy`` files (``.npz`` archives are zips of them and come through the zip scanner).

The header is parsed with NumPy's own reader (``ast.literal_eval``, no code).
Numeric arrays: the data length must match shape x itemsize and is skipped.
Object arrays: the data is a pickle that ``np.load(allow_pickle=True)`` runs, so
the file is at least suspicious and that pickle is analysed like any other.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from typing import TYPE_CHECKING

from scanners.errors import LimitExceeded, MalformedError
from scanners.report import Verdict

if TYPE_CHECKING:
    from scanners.context import Context
    from scanners.source import Reader


def scan_npy(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    from numpy.lib import format as npformat

    magic = reader.read_exact(8, "npy magic")
    major, minor = magic[6], magic[7]
    if major == 1:
        len_bytes = reader.read_exact(2, "npy header length")
        (hlen,) = struct.unpack("<H", len_bytes)
    elif major in (2, 3):
        len_bytes = reader.read_exact(4, "npy header length")
        (hlen,) = struct.unpack("<I", len_bytes)
    else:
        raise MalformedError(f"unsupported npy format version {major}.{minor}", offset=6)
    if hlen > ctx.limits.max_npy_header:
        raise LimitExceeded(f"npy header of {hlen} bytes exceeds the limit", offset=8)
    header = reader.read_exact(hlen, "npy header")
    if major == 3:
        try:
            header = header.decode("utf-8").encode("ascii")
        except UnicodeError:
            raise MalformedError("npy v3 header with non-ASCII text is not supported", offset=12) from None
        len_bytes = struct.pack("<I", len(header))
    read_header = npformat.read_array_header_1_0 if major == 1 else npformat.read_array_header_2_0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shape, _fortran, dtype = read_header(
                io.BytesIO(len_bytes + header), max_header_size=ctx.limits.max_npy_header
            )
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
        raise MalformedError(f"invalid npy header: {str(exc).splitlines()[0]}", offset=8) from None
    if any(d < 0 for d in shape):
        raise MalformedError("npy shape has a negative dimension", offset=8)
    if dtype.hasobject:
        ctx.add(
            Verdict.SUSPICIOUS,
            "NumPy object array: np.load needs allow_pickle=True, which unpickles the data that follows "
            "(analysed below)",
            member=member,
            offset=reader.tell(),
        )
        from scanners.pickle_stream import scan_pickle

        if reader.at_eof():
            raise MalformedError("object array without its pickle", offset=reader.tell())
        scan_pickle(ctx, reader, member, depth)
        return "npy-object"
    nbytes = math.prod(shape) * dtype.itemsize
    reader.skip(nbytes, "npy array data")
    if not reader.at_eof():
        left = f"{reader.size - reader.tell()} bytes" if reader.size is not None else "data"
        ctx.add(
            Verdict.SUSPICIOUS,
            f"{left} after the array data (not part of the array; not analysed)",
            member=member,
            offset=reader.tell(),
        )
    return "npy"
