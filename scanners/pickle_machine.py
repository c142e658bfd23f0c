"""The pickle virtual machine's state, and the rules every opcode family shares.

:class:`PickleMachine` holds what CPython's unpickler holds (stack, marks, memo,
protocol) as symbolic values, plus what the analysis learns: the globals a
pickle imports, its persistent ids and its findings. The opcode handlers in
``scanners.pickle_ops`` are plain functions over a machine, grouped by family;
the loop that drives them is ``scanners.pickle_scan``. Nothing here imports or
calls what a pickle names.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scanners import globals_policy as policy
from scanners.errors import LimitExceeded, MalformedError, TruncatedError
from scanners.limits import Limits
from scanners.pickle_values import (
    CONTAINER_ITEMS,
    MAX_WEIGHT,
    UNKNOWN,
    BigData,
    Call,
    Const,
    DictVal,
    GlobalRef,
    Seq,
    Val,
    call_target,
    const_int,
    const_str,
    first_arg,
    resolve_bytes,
)
from scanners.report import Finding, Verdict
from scanners.source import Reader, Window

HIGHEST_PROTOCOL = 5
NO_FRAME = 1 << 62
EXPANSION_MIN = 1_000_000
"""Traversed sizes below this are never an expansion finding, whatever the ratio."""
EXPANSION_RATIO = 100
"""How many times its stored items a value may stand for before the sharing counts as an expansion attack."""
SELF_REFS_LIMIT = 16
"""``PickleMachine.frame_end`` while no FRAME is open."""

NestedScan = Callable[[bytes | Window, str], None]
"""Callback scanning a nested payload (bytes or a re-readable window) as member ``name``."""

FindingSink = Callable[[Finding], None]


@dataclass(slots=True)
class GlobalUse:
    """Everything the analyser learnt about one imported global."""

    qualname: str
    first_offset: int
    classification: policy.Classification
    ops: set[str] = field(default_factory=set)
    count: int = 0


@dataclass(slots=True)
class PickleResult:
    """What one complete pickle (up to its STOP) contained."""

    start: int
    end: int
    proto: int
    value: Val
    persistent_ids: list[Val]
    joblib_arrays: int
    globals: dict[str, GlobalUse]


Handler = Callable[["PickleMachine"], bool]
"""One opcode's effect on a machine; True only for STOP."""


class PickleMachine:
    """Symbolic unpickler state for one pickle, and the checks its opcodes share.

    A subclass supplies ``HANDLERS`` (one per opcode byte, None where the byte is no opcode): the machine
    cannot import the opcode families, which are written against it.
    """

    HANDLERS: Sequence[Handler | None] = ()

    def __init__(
        self,
        reader: Reader,
        *,
        member: str,
        limits: Limits,
        sink: FindingSink,
        nested: NestedScan | None = None,
        report_threshold: Verdict = Verdict.SUSPICIOUS,
        container_cap: int = CONTAINER_ITEMS,
    ) -> None:
        self.r = reader
        self.cap = container_cap
        self.member = member
        self.limits = limits
        self.sink = sink
        self.nested = nested
        self.report_threshold = report_threshold
        self.stack: list[Val] = []  # one list; marks hold the stack heights of open MARKs
        self.marks: list[int] = []
        self.fence = 0  # height of the innermost open MARK: nothing below it may be popped
        self.memo: dict[int, Val] = {}
        self.proto = 0
        self.retained = 0
        self.op_offset = 0
        self.frame_end = NO_FRAME  # offset where the open FRAME ends (NO_FRAME: none open)
        self.ops_seen = 0
        self.start = 0  # where the pickle being run begins
        self.globals: dict[str, GlobalUse] = {}
        self.persistent_ids: list[Val] = []
        self.joblib_arrays = 0
        self.elements = 0  # items ever added to containers: the pickle's real size, against which expansion is judged
        self.heaviest: Seq | DictVal | None = None  # the container that expands the most when traversed
        self._reported: set[str] = set()

    # -- driving ----------------------------------------------------------------------------------
    def run(self) -> PickleResult:
        """Analyse up to STOP; raises ScanError if the stream is malformed (findings so far are kept)."""
        start = self.start = self.r.tell()
        try:
            value = self._loop()
        finally:
            self.emit_globals()
        self.judge_expansion()
        return PickleResult(
            start=start,
            end=self.r.tell(),
            proto=self.proto,
            value=value,
            persistent_ids=self.persistent_ids,
            joblib_arrays=self.joblib_arrays,
            globals=self.globals,
        )

    # -- the loop ---------------------------------------------------------------------------------
    def _loop(self) -> Val:
        r = self.r
        handlers = self.HANDLERS
        check_every = 0xFFFF
        ops = 0
        frame_end = self.frame_end  # a local copy, refreshed whenever the machine's may have changed
        try:
            while True:
                # Fast path: take the opcode straight from the reader's buffer.
                i = r._i
                buf = r._buf
                if i < len(buf):
                    code = buf[i]
                    r._i = i + 1
                    self.op_offset = off = r._base + i
                else:
                    self.op_offset = off = r.tell()
                    code = r.read_byte()
                    if code < 0:
                        raise TruncatedError("pickle ends without a STOP opcode", offset=self.op_offset)
                if off >= frame_end:
                    self.leave_frame(off)
                    frame_end = self.frame_end
                handler = handlers[code]
                if handler is None:
                    raise MalformedError(f"invalid pickle opcode 0x{code:02x}", offset=self.op_offset)
                if handler(self):
                    return self.pop()
                if code == 0x95:  # FRAME
                    frame_end = self.frame_end
                ops += 1
                if not ops & check_every and (
                    len(self.stack) > self.limits.max_stack or len(self.marks) > self.limits.max_stack
                ):
                    raise LimitExceeded("pickle stack exceeds the scanner limit", offset=self.op_offset)
        finally:
            self.ops_seen += ops

    # -- frames -----------------------------------------------------------------------------------
    def frame_violation(self, what: str, kind: str) -> None:
        """CPython's picklers never write these; the pure-Python unpickler refuses them while older C ones read
        on, so the opcodes a scanner reads may not be the ones a loader runs."""
        self.finding(
            Verdict.SUSPICIOUS,
            f"{what}: unpicklers disagree on how to read this pickle (frame-boundary evasion)",
            key=f"frame:{kind}",
        )

    def leave_frame(self, offset: int) -> None:
        """Close the open FRAME at ``offset``, where the reading has got to; past its end, something crossed it."""
        if offset > self.frame_end:
            self.frame_violation(f"an opcode or its data runs past the FRAME ending at offset {self.frame_end}", "x")
        self.frame_end = NO_FRAME

    # -- findings ---------------------------------------------------------------------------------
    def finding(self, severity: Verdict, message: str, *, symbol: str | None = None, key: str = "") -> None:
        dedupe = key or message
        if dedupe in self._reported or severity.rank < self.report_threshold.rank:
            return
        self._reported.add(dedupe)
        self.sink(Finding(severity, message, member=self.member or None, offset=self.op_offset, symbol=symbol))

    def emit_globals(self) -> None:
        for use in self.globals.values():
            c = use.classification
            if c.verdict is Verdict.CLEAN or c.verdict.rank < self.report_threshold.rank:
                continue
            how = ", ".join(sorted(use.ops))
            times = f", {use.count} uses" if use.count > 1 else ""
            self.sink(
                Finding(
                    c.verdict,
                    f"global {use.qualname} ({how}{times}): {c.reason}",
                    member=self.member or None,
                    offset=use.first_offset,
                    symbol=use.qualname,
                    rule=c.rule,
                )
            )

    def use(self, g: Val, op: str) -> None:
        if isinstance(g, GlobalRef):
            use = self.globals.get(g.qualname)
            if use is not None:
                use.ops.add(op)

    # -- stack helpers ----------------------------------------------------------------------------
    def push(self, v: Val) -> bool:
        """Push ``v``; returns False (not STOP) so a handler can end with ``return m.push(v)``."""
        self.stack.append(v)
        return False

    def pop(self) -> Val:
        if len(self.stack) <= self.fence:
            raise MalformedError("pickle stack underflow", offset=self.op_offset)
        return self.stack.pop()

    def top(self) -> Val:
        if len(self.stack) <= self.fence:
            raise MalformedError("pickle stack underflow", offset=self.op_offset)
        return self.stack[-1]

    def pop_mark(self) -> list[Val]:
        if not self.marks:
            raise MalformedError("pickle MARK not found", offset=self.op_offset)
        height = self.marks.pop()
        items = self.stack[height:]
        del self.stack[height:]
        self.fence = self.marks[-1] if self.marks else 0
        return items

    # -- argument readers -------------------------------------------------------------------------
    def u1(self) -> int:
        r = self.r
        i = r._i
        if i < len(r._buf):
            r._i = i + 1
            return r._buf[i]
        b = r.read_byte()
        if b < 0:
            raise TruncatedError("pickle ends inside an opcode argument", offset=self.op_offset)
        return b

    def unpack(self, fmt: str, n: int) -> int:
        value: int = struct.unpack(fmt, self.r.read_exact(n, "an opcode argument"))[0]
        return value

    def read_line(self, what: str) -> bytes:
        return self.r.readline(self.limits.max_line, what)[:-1]

    def read_data(self, n: int, *, text: bool, what: str) -> Val:
        """Read (or skip, if large) a string/bytes payload of ``n`` bytes."""
        if n < 0:
            raise MalformedError(f"negative length for {what}", offset=self.op_offset)
        if n <= self.limits.max_inline_value and self.retained + n <= self.limits.max_retained_bytes:
            self.retained += n
            return Const(self.r.read_exact(n, what))
        offset = self.r.tell()
        window = self.r.window_at(offset, n)
        self.r.skip(n, what)
        return BigData(text, offset, n, window)

    def read_text(self, n: int, what: str) -> Val:
        v = self.read_data(n, text=True, what=what)
        if isinstance(v, Const):
            assert isinstance(v.value, bytes)
            try:
                return Const(v.value.decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError as exc:
                raise MalformedError(f"invalid UTF-8 in {what}: {exc.reason}", offset=self.op_offset) from None
        return v

    def latin1(self, v: Val) -> Val:
        """Protocol 0-2 byte strings: decoded the way torch/pickle's default encodings let them through."""
        if isinstance(v, Const) and isinstance(v.value, bytes):
            return Const(v.value.decode("latin-1"))
        return v

    # -- globals ----------------------------------------------------------------------------------
    def global_ref(self, module: str, name: str, op: str) -> GlobalRef:
        if self.proto < 3:
            module, name = policy.fix_imports(module, name)
        ref = GlobalRef(module, name, self.op_offset)
        use = self.globals.get(ref.qualname)
        if use is None:
            if len(self.globals) > 100_000:
                raise LimitExceeded("too many distinct globals", offset=self.op_offset)
            use = GlobalUse(ref.qualname, self.op_offset, policy.classify(module, name, self.limits.extra_safe_globals))
            self.globals[ref.qualname] = use
        use.count += 1
        use.ops.add(op)
        return ref

    def global_pair(self, op: str) -> GlobalRef:
        try:
            module = self.read_line(f"{op} module name").decode("utf-8")
            name = self.read_line(f"{op} attribute name").decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError(f"{op} name is not valid UTF-8", offset=self.op_offset) from None
        return self.global_ref(module, name, op)

    # -- calls ------------------------------------------------------------------------------------
    def call(self, func: Val, args: Val, op: str) -> Call:
        result = Call(func, args, self.op_offset, op)
        if isinstance(func, GlobalRef):
            self.use(func, f"called by {op}")
            if func.qualname in policy.NESTED_LOADERS:
                self._nested_load(func, args)
        elif isinstance(func, Call) and isinstance(func.func, GlobalRef):
            self.finding(
                Verdict.SUSPICIOUS,
                f"{op} calls the result of calling {func.func.qualname} (a computed callable)",
                key=f"computed:{func.func.qualname}",
            )
        else:
            self.finding(
                Verdict.SUSPICIOUS,
                f"{op} calls a value that is not an imported global ({type(func).__name__})",
                key=f"noncallable:{op}",
            )
        return result

    def _nested_load(self, func: GlobalRef, args: Val) -> None:
        payload = resolve_bytes(first_arg(args))
        name = f"{self.member}>nested@{self.op_offset}" if self.member else f"nested@{self.op_offset}"
        if payload is None:
            self.finding(
                Verdict.MALICIOUS,
                f"{func.qualname} loads a payload that cannot be resolved statically",
                symbol=func.qualname,
                key=f"unresolved:{func.qualname}",
            )
            return
        if self.nested is None:
            self.finding(Verdict.ERROR, f"nested payload of {func.qualname} not scanned", symbol=func.qualname)
            return
        self.nested(payload, name)

    # -- expansion ("billion laughs") -------------------------------------------------------------
    def grew(self, container: Seq | DictVal, added: int) -> None:
        self.elements += added
        if self.heaviest is None or container.weight > self.heaviest.weight:
            self.heaviest = container
        if container.self_refs >= SELF_REFS_LIMIT:
            self.finding(
                Verdict.SUSPICIOUS,
                f"a container holds itself {container.self_refs}+ times: an expansion pattern (a naive traversal "
                "never ends); no model needs it",
                key="expansion:self",
            )

    def judge_expansion(self) -> None:
        """Shared containers nested in shared containers: tiny on disk, astronomically large when traversed."""
        heaviest = self.heaviest
        if heaviest is None or heaviest.weight < EXPANSION_MIN:
            return
        if heaviest.weight >= EXPANSION_RATIO * (self.elements + 1):
            size = f"{heaviest.weight:,}" if heaviest.weight < MAX_WEIGHT else "more than 4e18"
            self.finding(
                Verdict.SUSPICIOUS,
                f"expansion: a value made of {self.elements:,} stored items stands for {size} when traversed "
                "(shared containers nested in shared containers, the billion-laughs shape)",
                key="expansion:weight",
            )

    # -- BUILD and joblib arrays ------------------------------------------------------------------
    def mutates_global(self, target: Val, op: str) -> None:
        if isinstance(target, GlobalRef):
            self.use(target, f"mutated by {op}")
            self.finding(
                Verdict.MALICIOUS,
                f"{op} modifies the imported object {target.qualname} itself (attribute/item overwrite)",
                symbol=target.qualname,
                key=f"mutate:{target.qualname}:{op}",
            )

    def joblib_array(self, state: Val) -> None:
        """Skip (or scan, for object arrays) the array data joblib writes right after the wrapper."""
        if not isinstance(state, DictVal):
            raise MalformedError("joblib array wrapper without a state dict", offset=self.op_offset)
        shape = state.get("shape")
        dims = [const_int(v) for v in shape.items] if isinstance(shape, Seq) and not shape.truncated else None
        info = _dtype_info(state.get("dtype"))
        if dims is None or any(d is None or d < 0 for d in dims) or info is None:
            raise MalformedError("cannot determine the layout of a joblib array", offset=self.op_offset)
        itemsize, has_object = info
        count = math.prod(d for d in dims if d is not None)
        self.joblib_arrays += 1
        # joblib commits the frame before the array and reads the array from the file, outside any frame
        if self.frame_end != NO_FRAME:
            if self.r.tell() < self.frame_end:
                self.frame_violation("joblib array data inside a FRAME (joblib reads it after the frame)", "j")
            self.leave_frame(self.r.tell())
        if has_object:
            inner = type(self)(
                self.r, member=self.member, limits=self.limits, sink=self.sink, nested=self.nested,
                report_threshold=self.report_threshold,
            )
            inner.run()
            return
        alignment = const_int(state.get("numpy_array_alignment_bytes"))
        if alignment is not None:
            pad = self.u1()
            if pad > alignment:
                raise MalformedError("joblib array padding longer than its alignment", offset=self.op_offset)
            self.r.skip(pad, "joblib array padding")
        self.r.skip(count * itemsize, "joblib array data")


def parse_int(line: bytes, offset: int) -> Val:
    try:
        return Const(int(line))
    except ValueError:
        if line.strip().lstrip(b"+-").isdigit():
            return UNKNOWN  # more digits than int() converts by default; the value does not matter
        raise MalformedError("bad integer argument", offset=offset) from None


def parse_index(line: bytes, offset: int) -> int:
    try:
        return int(line)
    except ValueError:
        raise MalformedError("bad memo index", offset=offset) from None


def _dtype_info(v: Val | None) -> tuple[int, bool] | None:
    """(itemsize, has_object) of a pickled ``numpy.dtype``, from its constructor args and BUILD state."""
    if not isinstance(v, Call) or call_target(v) != "numpy.dtype" or not isinstance(v.args, Seq):
        return None
    typestr = const_str(first_arg(v.args))
    if typestr is None or len(typestr) > 64:
        return None
    state = v.state.items if isinstance(v.state, Seq) else []
    flags = const_int(state[7]) if len(state) > 7 else None
    elsize = const_int(state[5]) if len(state) > 5 else None
    has_object = typestr.startswith("O") or (flags is not None and bool(flags & 1))
    if elsize is not None and elsize > 0:
        return elsize, has_object
    try:
        import numpy  # numpy parses a type string as data; nothing is imported or executed from it

        return int(numpy.dtype(typestr).itemsize), has_object
    except (TypeError, ValueError, SyntaxError):
        return None
