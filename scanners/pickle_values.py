"""Symbolic values the pickle analyser keeps on its stack and memo.

They record *what* an unpickler would hold (a constant, an imported global, the
result of calling something, a container) without creating any of it. Containers
keep only their first few items: the analyser needs them to read argument tuples
and small state dicts, and every global is classified when it is imported, so
dropping later items loses no finding.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from scanners.source import Window

CONTAINER_ITEMS = 64
"""Items kept per symbolic container."""


class Val:
    """Base of all symbolic values."""

    __slots__ = ()


class _Unknown(Val):
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
"""A value the analyser does not model (an object built by code it does not run)."""


@dataclass(slots=True, eq=False)
class Const(Val):
    """A literal: str, bytes, bytearray, int, float, bool or None."""

    value: object


@dataclass(slots=True, eq=False)
class BigData(Val):
    """A string/bytes literal too large to keep; ``window`` re-reads it when the source is seekable."""

    is_text: bool
    offset: int
    length: int
    window: Window | None


@dataclass(slots=True, eq=False)
class GlobalRef(Val):
    """An imported global (after Python 2 name mapping)."""

    module: str
    name: str
    offset: int

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(slots=True, eq=False)
class Call(Val):
    """The result of REDUCE/NEWOBJ/OBJ/INST: ``func`` applied to ``args``; ``state`` set by BUILD."""

    func: Val
    args: Val
    offset: int
    op: str
    state: Val | None = None


MAX_WEIGHT = 1 << 62


def weight(v: Val) -> int:
    """How many elements ``v`` stands for when traversed naively (a shared container counts each time)."""
    return v.weight if isinstance(v, Seq | DictVal) else 1


@dataclass(slots=True, eq=False)
class Seq(Val):
    """A list, tuple, set or frozenset (first CONTAINER_ITEMS items).

    ``weight`` counts every item ever added, nested containers by their own weight at that moment, so
    references to one shared container multiply: the "billion laughs" shape. ``self_refs`` counts the times
    the container was added to itself.
    """

    kind: str
    items: list[Val]
    truncated: bool = False
    cap: int = CONTAINER_ITEMS
    weight: int = 1
    self_refs: int = 0

    def extend(self, new: list[Val]) -> None:
        room = self.cap - len(self.items)
        if room > 0:
            self.items.extend(new[:room])
        if len(new) > room:
            self.truncated = True
        added = 0
        for v in new:
            if v is self:
                self.self_refs += 1
            else:
                added += weight(v)
        self.weight = min(MAX_WEIGHT, self.weight + added)


@dataclass(slots=True, eq=False)
class DictVal(Val):
    """A dict (first CONTAINER_ITEMS pairs)."""

    items: list[tuple[Val, Val]]
    truncated: bool = False
    cap: int = CONTAINER_ITEMS
    weight: int = 1  # as for Seq
    self_refs: int = 0

    def update(self, pairs: list[tuple[Val, Val]]) -> None:
        room = self.cap - len(self.items)
        if room > 0:
            self.items.extend(pairs[:room])
        if len(pairs) > room:
            self.truncated = True
        added = 0
        for k, v in pairs:
            if v is self:
                self.self_refs += 1
            else:
                added += weight(v)
            added += weight(k)
        self.weight = min(MAX_WEIGHT, self.weight + added)

    def get(self, key: str) -> Val | None:
        """The last value stored under the string key ``key`` (later SETITEMs win)."""
        found: Val | None = None
        for k, v in self.items:
            if isinstance(k, Const) and k.value == key:
                found = v
        return found


@dataclass(slots=True, eq=False)
class PersRef(Val):
    """A persistent reference (PERSID/BINPERSID), e.g. a torch storage."""

    pid: Val


def const_str(v: Val | None) -> str | None:
    return v.value if isinstance(v, Const) and isinstance(v.value, str) else None


def const_int(v: Val | None) -> int | None:
    if isinstance(v, Const) and isinstance(v.value, int) and not isinstance(v.value, bool):
        return v.value
    return None


def call_target(v: Val | None) -> str | None:
    """The qualified name of the global a Call applied, if it applied one."""
    if isinstance(v, Call) and isinstance(v.func, GlobalRef):
        return v.func.qualname
    return None


def first_arg(args: Val) -> Val | None:
    if isinstance(args, Seq) and args.items:
        return args.items[0]
    return None


_MAX_DECODED = 64 * 1024 * 1024

_BYTES_WRAPPERS = frozenset(
    ["io.BytesIO", "_io.BytesIO", "builtins.bytes", "builtins.bytearray", "builtins.memoryview"]
)
_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "base64.b64decode": base64.b64decode,
    "base64.standard_b64decode": base64.standard_b64decode,
    "base64.urlsafe_b64decode": base64.urlsafe_b64decode,
    "base64.b32decode": base64.b32decode,
    "base64.b16decode": base64.b16decode,
    "base64.b85decode": base64.b85decode,
    "base64.a85decode": base64.a85decode,
    "base64.decodebytes": base64.decodebytes,
    "binascii.a2b_base64": binascii.a2b_base64,
    "binascii.unhexlify": binascii.unhexlify,
    "binascii.a2b_hex": binascii.a2b_hex,
    "builtins.bytes.fromhex": lambda b: bytes.fromhex(b.decode("latin-1")),
}


def _bounded_decompress(kind: str, data: bytes) -> bytes | None:
    """Decompress with an output cap, so a nested payload cannot be a bomb."""
    try:
        if kind == "zlib":
            d = zlib.decompressobj()
            out = d.decompress(data, _MAX_DECODED)
            return None if d.unconsumed_tail else out
        if kind == "bz2":
            b = bz2.BZ2Decompressor()
            out = b.decompress(data, _MAX_DECODED)
            return out if b.eof else None
        if kind == "lzma":
            x = lzma.LZMADecompressor()
            out = x.decompress(data, _MAX_DECODED)
            return out if x.eof else None
    except (OSError, ValueError, EOFError, zlib.error, lzma.LZMAError):
        return None
    return None


def resolve_bytes(v: Val | None, depth: int = 0) -> bytes | Window | None:
    """Statically evaluate the byte string a loader would receive, or None if that is not possible.

    Follows the wrappers attackers use to hide a nested pickle: latin-1 ``_codecs.encode``,
    ``io.BytesIO``/``bytes``/``bytearray``, base64/hex decoders and zlib/bz2/lzma decompression.
    """
    if v is None or depth > 8:
        return None
    if isinstance(v, Const):
        if isinstance(v.value, (bytes, bytearray)):
            return bytes(v.value)
        if isinstance(v.value, str):
            try:
                return v.value.encode("latin-1")
            except UnicodeEncodeError:
                return v.value.encode("utf-8", "surrogatepass")
        return None
    if isinstance(v, BigData):
        return v.window
    if not isinstance(v, Call) or not isinstance(v.func, GlobalRef) or not isinstance(v.args, Seq):
        return None
    name = v.func.qualname
    items = v.args.items
    if name in _BYTES_WRAPPERS or (name == "_codecs.encode" and len(items) >= 1):
        return resolve_bytes(items[0] if items else None, depth + 1)
    inner = resolve_bytes(items[0] if items else None, depth + 1)
    if not isinstance(inner, bytes):
        return None
    if name in _DECODERS:
        try:
            return bytes(_DECODERS[name](inner))
        except (ValueError, binascii.Error, TypeError):
            return None
    if name in ("codecs.decode", "_codecs.decode") and len(items) >= 2:
        codec = const_str(items[1])
        if codec in ("base64", "base64_codec"):
            return resolve_bytes(Call(GlobalRef("base64", "b64decode", 0), Seq("tuple", [items[0]]), 0, "x"))
        if codec in ("hex", "hex_codec"):
            return resolve_bytes(Call(GlobalRef("binascii", "unhexlify", 0), Seq("tuple", [items[0]]), 0, "x"))
        if codec in ("zlib", "zlib_codec", "bz2", "bz2_codec"):
            return _bounded_decompress(codec.split("_")[0], inner)
        return None
    kinds = {"zlib.decompress": "zlib", "bz2.decompress": "bz2", "lzma.decompress": "lzma"}
    if name in kinds:
        return _bounded_decompress(kinds[name], inner)
    if name == "gzip.decompress":
        try:
            d = zlib.decompressobj(31)
            out = d.decompress(inner, _MAX_DECODED)
            return None if d.unconsumed_tail else out
        except zlib.error:
            return None
    return None
