"""ONNX models, read field by field from the protobuf wire format: never loaded, no ``onnx`` package.

A hand-written reader rather than ``onnx.load``: the protobuf library reads the whole file (up to 2 GB
of weights) into memory before anything can be checked, and ``onnx.load`` follows external data. This
reader walks only the messages that matter (model, graphs and their subgraphs, nodes, attributes,
tensors, functions, training graphs), keeps only short strings, skips tensor bytes, and bounds every
length by its enclosing message, nesting and item counts by :class:`~scanners.limits.Limits`.

Verdicts: a tensor whose external data ``location`` is absolute or climbs out with ``..`` makes a
runtime read any file on the host (the onnx CVE-2024-27318 class): ``malicious``. Operators in a domain
that is neither standard, a well-known runtime's, nor a function the model itself defines need a native
custom-op library: ``suspicious``, naming the domain. Negative or absurd dimensions, external offsets or
lengths, and ``raw_data`` that does not match its shape are ``suspicious``; a broken wire format is
``error``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from scanners.errors import LimitExceeded, MalformedError, TruncatedError
from scanners.onnx_wire import I32, I64, LEN, VARINT
from scanners.report import Verdict

if TYPE_CHECKING:
    from scanners.context import Context
    from scanners.source import Reader

WELL_KNOWN_DOMAINS = frozenset(
    [
        "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "com.microsoft",
        "com.microsoft.nchwc", "com.microsoft.experimental", "com.microsoft.mlfeaturizers", "org.pytorch.aten",
    ]
)  # fmt: skip
"""Operator sets that ONNX and ONNX Runtime implement themselves."""

SCHEMA: dict[str, dict[int, str]] = {
    "model": {8: "opset", 7: "graph", 20: "training", 25: "function"},
    "opset": {1: "str:domain"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {4: "str:op_type", 7: "str:domain", 5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "tensor": {
        1: "ints:dims",
        2: "int:data_type",
        8: "str:name",
        9: "len:raw_data",
        13: "entry",
        14: "int:data_location",
    },
    "entry": {1: "str:key", 2: "str:value"},
    "sparse": {1: "tensor", 2: "tensor", 3: "ints:dims"},
    "function": {1: "str:name", 10: "str:domain", 7: "node", 9: "opset", 11: "attribute"},
    "training": {1: "graph", 2: "graph"},
}
"""The fields read, per message; every other field is skipped by its wire type."""

DTYPE_BITS = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128,
    16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2, 27: 6, 28: 6,
}  # fmt: skip
"""TensorProto.DataType -> bits per element (strings excluded)."""

MAX_NESTING = 100
MAX_DIMS = 64
MAX_STRING = 64 * 1024
ABSURD = 1 << 50

Record = dict[str, list[Any]]
MAX_NAMES = 100_000


class _Walker:
    def __init__(self, ctx: Context, reader: Reader, member: str) -> None:
        self.ctx, self.reader, self.member = ctx, reader, member
        self.items = 0
        self.custom: dict[str, set[str]] = defaultdict(set)  # domain outside the well-known ones -> op types
        self.opsets: set[str] = set()
        self.functions: set[tuple[str, str]] = set()

    def varint(self) -> int:
        start = self.reader.tell()
        value = shift = 0
        for _ in range(10):
            b = self.reader.read_byte()
            if b < 0:
                raise TruncatedError("data ends inside a varint", offset=start)
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value if value < 1 << 64 else value & ((1 << 64) - 1)
            shift += 7
        raise MalformedError("varint longer than 10 bytes", offset=start)

    def message(self, kind: str, end: int | None, depth: int) -> Record:
        """Read one message up to ``end`` (None: to the end of the data); nested messages are judged here."""
        if depth > MAX_NESTING:
            raise LimitExceeded(f"messages nested deeper than {MAX_NESTING}", offset=self.reader.tell())
        fields = SCHEMA[kind]
        record: Record = defaultdict(list)
        while (self.reader.tell() < end) if end is not None else not self.reader.at_eof():
            self.items += 1
            if self.items > self.ctx.limits.max_metadata_items:
                raise LimitExceeded(f"more than {self.ctx.limits.max_metadata_items} protobuf fields")
            start = self.reader.tell()
            tag = self.varint()
            number, wire = tag >> 3, tag & 7
            what = fields.get(number)
            if wire == VARINT:
                value = self.varint()
                if what is not None and what.startswith(("int:", "ints:")):
                    name = what.split(":")[1]
                    record[name].append(value - (1 << 64) if value >= 1 << 63 else value)
                    if len(record[name]) > MAX_DIMS:
                        raise LimitExceeded(f"{kind} repeats {name} more than {MAX_DIMS} times", offset=start)
                elif what is not None:
                    raise MalformedError(f"{kind} field {number} has the wrong wire type", offset=start)
                continue
            if wire in (I64, I32):
                self.reader.skip(8 if wire == I64 else 4, f"{kind} field {number}")
                if what is not None:
                    raise MalformedError(f"{kind} field {number} has the wrong wire type", offset=start)
                continue
            if wire != LEN:
                raise MalformedError(f"{kind} field {number} has unsupported wire type {wire}", offset=start)
            n = self.varint()
            body = self.reader.tell()
            limit = end if end is not None else self.reader.size
            if limit is not None and body + n > limit:
                raise TruncatedError(f"{kind} field {number} of {n} bytes runs past the end of its message",
                                     offset=start)  # fmt: skip
            self.field(kind, what, record, n, body + n, depth)
            if self.reader.tell() != body + n:
                raise MalformedError(f"{kind} field {number} does not end where its length says", offset=start)
        return record

    def field(self, kind: str, what: str | None, record: Record, n: int, end: int, depth: int) -> None:
        if what is None:
            self.reader.skip(n, f"{kind} field")
        elif what.startswith("str:"):
            if n > MAX_STRING:
                raise LimitExceeded(f"{kind} {what[4:]} of {n} bytes is longer than {MAX_STRING}")
            record[what[4:]].append(self.reader.read_exact(n, what[4:]).decode("utf-8", "replace"))
        elif what.startswith("len:"):
            self.reader.skip(n, what[4:])
            record[what[4:]].append(n)
        elif what.startswith("ints:"):
            values = record[what[5:]]
            while self.reader.tell() < end:
                value = self.varint()
                values.append(value - (1 << 64) if value >= 1 << 63 else value)
                if len(values) > MAX_DIMS:
                    raise LimitExceeded(f"{kind} has more than {MAX_DIMS} {what[5:]}")
        elif what.startswith("int:"):
            raise MalformedError(f"{kind} field {what[4:]} has the wrong wire type")
        else:
            start = self.reader.tell()
            sub = self.message(what, end, depth + 1)
            if what == "entry":
                record["entries"].append((_first(sub, "key"), _first(sub, "value")))
            else:
                self.judge(what, sub, start)

    def judge(self, kind: str, rec: Record, offset: int) -> None:
        if kind == "node" and _first(rec, "domain") not in WELL_KNOWN_DOMAINS:
            self.remember(self.custom[_first(rec, "domain")], _first(rec, "op_type"))
        elif kind == "opset":
            self.remember(self.opsets, _first(rec, "domain"))
        elif kind == "function":
            self.remember(self.functions, (_first(rec, "domain"), _first(rec, "name")))
        elif kind == "tensor":
            self.tensor(rec, offset)

    def remember(self, names: set[Any], name: object) -> None:
        names.add(name)
        if len(names) > MAX_NAMES or len(self.custom) > MAX_NAMES:
            raise LimitExceeded(f"more than {MAX_NAMES} distinct operator domains, operators or functions")

    def flag(self, verdict: Verdict, message: str, offset: int | None = None, symbol: str | None = None) -> None:
        self.ctx.add(verdict, message, member=self.member, offset=offset, symbol=symbol)

    def tensor(self, rec: Record, offset: int) -> None:
        name = _first(rec, "name")
        dims = [d for d in rec.get("dims", []) if isinstance(d, int)]
        if any(d < 0 for d in dims) or any(d > ABSURD for d in dims) or math.prod(dims) > ABSURD:
            self.flag(Verdict.SUSPICIOUS, f"tensor {name!r} declares an impossible shape {dims}", offset, name)
            return
        entries = {str(k): str(v) for k, v in rec.get("entries", [])}
        external = bool(entries) or 1 in rec.get("data_location", [])
        if external:
            self.external(name, entries, offset)
            return
        dtype = rec.get("data_type", [0])[-1]
        raw = rec.get("raw_data", [])
        if raw and isinstance(dtype, int) and dtype in DTYPE_BITS:
            need = -(-math.prod(dims) * DTYPE_BITS[dtype] // 8)
            if raw[-1] != need:
                self.flag(Verdict.SUSPICIOUS, f"tensor {name!r}: raw_data has {raw[-1]} bytes but shape {dims} "
                          f"needs {need}", offset, name)  # fmt: skip

    def external(self, name: str, entries: dict[str, str], offset: int) -> None:
        location = entries.get("location")
        if not location:
            self.flag(Verdict.SUSPICIOUS, f"tensor {name!r} keeps its data outside the model but names no file",
                      offset, name)  # fmt: skip
        elif _escapes(location):
            self.flag(Verdict.MALICIOUS, f"tensor {name!r} reads external data from {location!r}, outside the "
                      "model's directory", offset, location)  # fmt: skip
        for key in ("offset", "length"):
            value = entries.get(key)
            if value is None:
                continue
            try:
                number = int(value)
            except ValueError:
                number = -1
            if not 0 <= number <= ABSURD:
                self.flag(Verdict.SUSPICIOUS, f"tensor {name!r} declares external data {key} {value[:40]!r}",
                          offset, name)  # fmt: skip

    def domains(self) -> None:
        defined = {domain for domain, _ in self.functions}
        for domain, ops in sorted(self.custom.items()):
            custom = sorted(op for op in ops if (domain, op) not in self.functions)
            if custom:
                shown = ", ".join(custom[:5]) + (f" and {len(custom) - 5} more" if len(custom) > 5 else "")
                self.flag(Verdict.SUSPICIOUS, f"custom operator domain {domain!r} ({shown}): needs a native "
                          "custom-op library", symbol=domain)  # fmt: skip
        for domain in sorted(self.opsets - WELL_KNOWN_DOMAINS - defined - set(self.custom)):
            self.flag(Verdict.SUSPICIOUS, f"imports custom operator domain {domain!r}", symbol=domain)


def _first(rec: Record, key: str) -> str:
    values = rec.get(key)
    return str(values[-1]) if values else ""


def _escapes(location: str) -> bool:
    """A path that is absolute, names a drive or share, climbs with ``..``, or smuggles a NUL."""
    parts = location.replace("\\", "/").split("/")
    return (
        "\0" in location
        or location.startswith(("/", "\\", "~"))
        or (len(location) >= 2 and location[1] == ":")
        or ".." in parts
    )


def scan_onnx(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    walker = _Walker(ctx, reader, member)
    walker.message("model", reader.size, 0)
    walker.domains()
    return "onnx"
