"""Static pickle analysis: a symbolic unpickler that never imports or calls anything.

It walks the opcode stream the way CPython's unpickler does (stack, marks, memo,
protocol-dependent name mapping and dotted protocol-4 names) but keeps symbolic
values instead of objects. Every global a pickle can import (GLOBAL, INST,
STACK_GLOBAL with names from any string opcode or the memo) is classified by
``globals_policy``; calls (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST), BUILD and
container mutations are checked for shapes no legitimate pickler emits (calling
a computed object, mutating an imported module). Arguments passed to pickle
loaders are resolved statically and scanned as nested pickles; joblib's raw
array data interleaved with the opcodes is delimited and skipped.

Why our own tokenizer instead of ``pickletools.genops``: genops materialises every
argument, so a multi-GB BINBYTES8 would be read into memory; here large strings
are skipped (and re-read from the file only if they reach a loader).
"""

from __future__ import annotations

import codecs
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from scanners import globals_policy as policy
from scanners.errors import LimitExceeded, MalformedError, ScanError, TruncatedError
from scanners.limits import Limits
from scanners.pickle_values import (
    CONTAINER_ITEMS,
    UNKNOWN,
    BigData,
    Call,
    Const,
    DictVal,
    GlobalRef,
    PersRef,
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


class PickleAnalyzer:
    """Runs one pickle (from the reader's position to its STOP) symbolically."""

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
        self.ops_seen = 0
        self.globals: dict[str, GlobalUse] = {}
        self.persistent_ids: list[Val] = []
        self.joblib_arrays = 0
        self._reported: set[str] = set()
        self._handlers: list[Callable[[], bool] | None] = [None] * 256
        for code, handler in self._handler_table().items():
            self._handlers[ord(code)] = handler

    # -- public ------------------------------------------------------------------------------------
    def run(self) -> PickleResult:
        """Analyse up to STOP; raises ScanError if the stream is malformed (findings so far are kept)."""
        start = self.r.tell()
        try:
            value = self._loop()
        finally:
            self._emit_globals()
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
        handlers = self._handlers
        check_every = 0xFFFF
        ops = 0
        try:
            while True:
                # Fast path: take the opcode straight from the reader's buffer.
                i = r._i
                buf = r._buf
                if i < len(buf):
                    code = buf[i]
                    r._i = i + 1
                    self.op_offset = r._base + i
                else:
                    self.op_offset = r.tell()
                    code = r.read_byte()
                    if code < 0:
                        raise TruncatedError("pickle ends without a STOP opcode", offset=self.op_offset)
                handler = handlers[code]
                if handler is None:
                    raise MalformedError(f"invalid pickle opcode 0x{code:02x}", offset=self.op_offset)
                if handler():
                    return self._pop()
                ops += 1
                if not ops & check_every and (
                    len(self.stack) > self.limits.max_stack or len(self.marks) > self.limits.max_stack
                ):
                    raise LimitExceeded("pickle stack exceeds the scanner limit", offset=self.op_offset)
        finally:
            self.ops_seen += ops

    # -- findings ---------------------------------------------------------------------------------
    def _finding(self, severity: Verdict, message: str, *, symbol: str | None = None, key: str = "") -> None:
        dedupe = key or message
        if dedupe in self._reported or severity.rank < self.report_threshold.rank:
            return
        self._reported.add(dedupe)
        self.sink(Finding(severity, message, member=self.member or None, offset=self.op_offset, symbol=symbol))

    def _emit_globals(self) -> None:
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
                )
            )

    def _use(self, g: Val, op: str) -> None:
        if isinstance(g, GlobalRef):
            use = self.globals.get(g.qualname)
            if use is not None:
                use.ops.add(op)

    # -- stack helpers ----------------------------------------------------------------------------
    def _pop(self) -> Val:
        if len(self.stack) <= self.fence:
            raise MalformedError("pickle stack underflow", offset=self.op_offset)
        return self.stack.pop()

    def _top(self) -> Val:
        if len(self.stack) <= self.fence:
            raise MalformedError("pickle stack underflow", offset=self.op_offset)
        return self.stack[-1]

    def _pop_mark(self) -> list[Val]:
        if not self.marks:
            raise MalformedError("pickle MARK not found", offset=self.op_offset)
        height = self.marks.pop()
        items = self.stack[height:]
        del self.stack[height:]
        self.fence = self.marks[-1] if self.marks else 0
        return items

    # -- argument readers -------------------------------------------------------------------------
    def _u1(self) -> int:
        r = self.r
        i = r._i
        if i < len(r._buf):
            r._i = i + 1
            return r._buf[i]
        b = r.read_byte()
        if b < 0:
            raise TruncatedError("pickle ends inside an opcode argument", offset=self.op_offset)
        return b

    def _unpack(self, fmt: str, n: int) -> int:
        value: int = struct.unpack(fmt, self.r.read_exact(n, "an opcode argument"))[0]
        return value

    def _line(self, what: str) -> bytes:
        return self.r.readline(self.limits.max_line, what)[:-1]

    def _data(self, n: int, *, text: bool, what: str) -> Val:
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

    def _text(self, n: int, what: str) -> Val:
        v = self._data(n, text=True, what=what)
        if isinstance(v, Const):
            assert isinstance(v.value, bytes)
            try:
                return Const(v.value.decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError as exc:
                raise MalformedError(f"invalid UTF-8 in {what}: {exc.reason}", offset=self.op_offset) from None
        return v

    def _latin1(self, v: Val) -> Val:
        """Protocol 0-2 byte strings: decoded the way torch/pickle's default encodings let them through."""
        if isinstance(v, Const) and isinstance(v.value, bytes):
            return Const(v.value.decode("latin-1"))
        return v

    # -- globals ----------------------------------------------------------------------------------
    def _global(self, module: str, name: str, op: str) -> GlobalRef:
        if self.proto < 3:
            module, name = policy.fix_imports(module, name)
        ref = GlobalRef(module, name, self.op_offset)
        use = self.globals.get(ref.qualname)
        if use is None:
            if len(self.globals) > 100_000:
                raise LimitExceeded("too many distinct globals", offset=self.op_offset)
            use = GlobalUse(ref.qualname, self.op_offset, policy.classify(module, name))
            self.globals[ref.qualname] = use
        use.count += 1
        use.ops.add(op)
        return ref

    def _global_pair(self, op: str) -> GlobalRef:
        try:
            module = self._line(f"{op} module name").decode("utf-8")
            name = self._line(f"{op} attribute name").decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError(f"{op} name is not valid UTF-8", offset=self.op_offset) from None
        return self._global(module, name, op)

    # -- calls ------------------------------------------------------------------------------------
    def _call(self, func: Val, args: Val, op: str) -> Call:
        result = Call(func, args, self.op_offset, op)
        if isinstance(func, GlobalRef):
            self._use(func, f"called by {op}")
            if func.qualname in policy.NESTED_LOADERS:
                self._nested_load(func, args)
        elif isinstance(func, Call) and isinstance(func.func, GlobalRef):
            self._finding(
                Verdict.SUSPICIOUS,
                f"{op} calls the result of calling {func.func.qualname} (a computed callable)",
                key=f"computed:{func.func.qualname}",
            )
        else:
            self._finding(
                Verdict.SUSPICIOUS,
                f"{op} calls a value that is not an imported global ({type(func).__name__})",
                key=f"noncallable:{op}",
            )
        return result

    def _nested_load(self, func: GlobalRef, args: Val) -> None:
        payload = resolve_bytes(first_arg(args))
        name = f"{self.member}>nested@{self.op_offset}" if self.member else f"nested@{self.op_offset}"
        if payload is None:
            self._finding(
                Verdict.MALICIOUS,
                f"{func.qualname} loads a payload that cannot be resolved statically",
                symbol=func.qualname,
                key=f"unresolved:{func.qualname}",
            )
            return
        if self.nested is None:
            self._finding(Verdict.ERROR, f"nested payload of {func.qualname} not scanned", symbol=func.qualname)
            return
        self.nested(payload, name)

    # -- BUILD and joblib arrays ------------------------------------------------------------------
    def _mutates_global(self, target: Val, op: str) -> None:
        if isinstance(target, GlobalRef):
            self._use(target, f"mutated by {op}")
            self._finding(
                Verdict.MALICIOUS,
                f"{op} modifies the imported object {target.qualname} itself (attribute/item overwrite)",
                symbol=target.qualname,
                key=f"mutate:{target.qualname}:{op}",
            )

    def _joblib_array(self, state: Val) -> None:
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
        if has_object:
            inner = PickleAnalyzer(
                self.r, member=self.member, limits=self.limits, sink=self.sink, nested=self.nested,
                report_threshold=self.report_threshold,
            )
            inner.run()
            return
        alignment = const_int(state.get("numpy_array_alignment_bytes"))
        if alignment is not None:
            pad = self._u1()
            if pad > alignment:
                raise MalformedError("joblib array padding longer than its alignment", offset=self.op_offset)
            self.r.skip(pad, "joblib array padding")
        self.r.skip(count * itemsize, "joblib array data")

    # -- the handler table ------------------------------------------------------------------------
    def _handler_table(self) -> dict[str, Callable[[], bool]]:
        stack = self.stack
        append = stack.append
        u1 = self._u1

        def p(v: Val) -> bool:
            append(v)
            return False

        def op_int() -> bool:  # I: INT (protocol 0), also spells True/False
            line = self._line("INT argument")
            if line == b"00":
                return p(Const(False))
            if line == b"01":
                return p(Const(True))
            return p(_parse_int(line, self.op_offset))

        def op_long() -> bool:  # L
            line = self._line("LONG argument")
            if line.endswith(b"L"):
                line = line[:-1]
            return p(_parse_int(line, self.op_offset))

        def op_long1() -> bool:
            n = self._u1()
            return p(Const(int.from_bytes(self.r.read_exact(n, "LONG1"), "little", signed=True)))

        def op_long4() -> bool:
            n = self._unpack("<i", 4)
            if n < 0:
                raise MalformedError("LONG4 with a negative length", offset=self.op_offset)
            if n > 4096:
                self.r.skip(n, "LONG4")
                return p(UNKNOWN)
            return p(Const(int.from_bytes(self.r.read_exact(n, "LONG4"), "little", signed=True)))

        def op_string() -> bool:  # S: repr-quoted, escape-decoded
            line = self._line("STRING argument").rstrip(b"\r")
            if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
                raise MalformedError("STRING argument is not quoted", offset=self.op_offset)
            try:
                raw = codecs.escape_decode(line[1:-1])[0]
            except ValueError as exc:
                raise MalformedError(f"bad escape in STRING: {exc}", offset=self.op_offset) from None
            return p(Const(raw.decode("latin-1")))

        def op_binstring() -> bool:
            n = self._unpack("<i", 4)
            return p(self._latin1(self._data(n, text=False, what="BINSTRING")))

        def op_short_binstring() -> bool:
            return p(self._latin1(self._data(self._u1(), text=False, what="SHORT_BINSTRING")))

        def op_binbytes() -> bool:
            return p(self._data(self._unpack("<I", 4), text=False, what="BINBYTES"))

        def op_short_binbytes() -> bool:
            return p(self._data(self._u1(), text=False, what="SHORT_BINBYTES"))

        def op_binbytes8() -> bool:
            return p(self._data(self._unpack("<Q", 8), text=False, what="BINBYTES8"))

        def op_bytearray8() -> bool:
            v = self._data(self._unpack("<Q", 8), text=False, what="BYTEARRAY8")
            return p(Const(bytearray(v.value)) if isinstance(v, Const) and isinstance(v.value, bytes) else v)

        def op_unicode() -> bool:  # V: raw-unicode-escape
            line = self._line("UNICODE argument")
            try:
                return p(Const(line.decode("raw-unicode-escape")))
            except UnicodeDecodeError:
                raise MalformedError("bad UNICODE argument", offset=self.op_offset) from None

        def op_short_binunicode() -> bool:
            return p(self._text(self._u1(), "SHORT_BINUNICODE"))

        def op_binunicode() -> bool:
            return p(self._text(self._unpack("<I", 4), "BINUNICODE"))

        def op_binunicode8() -> bool:
            return p(self._text(self._unpack("<Q", 8), "BINUNICODE8"))

        def op_float() -> bool:
            line = self._line("FLOAT argument")
            try:
                return p(Const(float(line)))
            except ValueError:
                raise MalformedError("bad FLOAT argument", offset=self.op_offset) from None

        def op_binfloat() -> bool:
            value: float = struct.unpack(">d", self.r.read_exact(8, "BINFLOAT"))[0]
            return p(Const(value))

        def op_binint() -> bool:
            return p(Const(self._unpack("<i", 4)))

        def op_binint1() -> bool:
            append(_SMALL_INTS[u1()])
            return False

        def op_binint2() -> bool:
            return p(Const(self._unpack("<H", 2)))

        def op_none() -> bool:
            return p(Const(None))

        def op_true() -> bool:
            return p(Const(True))

        def op_false() -> bool:
            return p(Const(False))

        def op_next_buffer() -> bool:
            self._finding(Verdict.SUSPICIOUS, "pickle uses out-of-band buffers (NEXT_BUFFER)", key="oob")
            return p(UNKNOWN)

        def op_readonly_buffer() -> bool:
            self._top()
            return False

        # containers
        def op_empty_list() -> bool:
            return p(Seq("list", [], cap=self.cap))

        def op_empty_tuple() -> bool:
            return p(Seq("tuple", [], cap=self.cap))

        def op_empty_dict() -> bool:
            return p(DictVal([], cap=self.cap))

        def op_empty_set() -> bool:
            return p(Seq("set", [], cap=self.cap))

        def _extend(target: Val, items: list[Val], op: str) -> None:
            self._mutates_global(target, op)
            if isinstance(target, Seq):
                target.extend(items)

        def op_append() -> bool:
            v = self._pop()
            _extend(self._top(), [v], "APPEND")
            return False

        def op_appends() -> bool:
            items = self._pop_mark()
            _extend(self._top(), items, "APPENDS")
            return False

        def op_additems() -> bool:
            items = self._pop_mark()
            _extend(self._top(), items, "ADDITEMS")
            return False

        def op_list() -> bool:
            items = self._pop_mark()
            s = Seq("list", [], cap=self.cap)
            s.extend(items)
            return p(s)

        def op_tuple() -> bool:
            items = self._pop_mark()
            s = Seq("tuple", [], cap=self.cap)
            s.extend(items)
            return p(s)

        def op_frozenset() -> bool:
            items = self._pop_mark()
            s = Seq("frozenset", [], cap=self.cap)
            s.extend(items)
            return p(s)

        def tuple_n(n: int) -> Callable[[], bool]:
            def op() -> bool:
                if len(stack) - n < self.fence:
                    raise MalformedError("pickle stack underflow", offset=self.op_offset)
                items = stack[len(stack) - n :]
                del stack[len(stack) - n :]
                s = Seq("tuple", [], cap=self.cap)
                s.extend(items)
                return p(s)

            return op

        def _setitems(target: Val, pairs: list[tuple[Val, Val]], op: str) -> None:
            self._mutates_global(target, op)
            if isinstance(target, DictVal):
                target.update(pairs)

        def op_dict() -> bool:
            items = self._pop_mark()
            if len(items) % 2:
                raise MalformedError("odd number of items for DICT", offset=self.op_offset)
            d = DictVal([], cap=self.cap)
            d.update(list(zip(items[::2], items[1::2], strict=True)))
            return p(d)

        def op_setitem() -> bool:
            v = self._pop()
            k = self._pop()
            _setitems(self._top(), [(k, v)], "SETITEM")
            return False

        def op_setitems() -> bool:
            items = self._pop_mark()
            if len(items) % 2:
                raise MalformedError("odd number of items for SETITEMS", offset=self.op_offset)
            _setitems(self._top(), list(zip(items[::2], items[1::2], strict=True)), "SETITEMS")
            return False

        # stack manipulation
        def op_pop() -> bool:
            if len(stack) > self.fence:
                stack.pop()
            elif self.marks:
                self._pop_mark()  # POP right after MARK discards the mark, as CPython does
            else:
                raise MalformedError("pickle stack underflow", offset=self.op_offset)
            return False

        def op_dup() -> bool:
            return p(self._top())

        def op_mark() -> bool:
            self.fence = len(stack)
            self.marks.append(self.fence)
            return False

        def op_pop_mark() -> bool:
            self._pop_mark()
            return False

        # memo
        memo = self.memo
        max_memo = self.limits.max_memo

        def _get(idx: int) -> bool:
            v = memo.get(idx)
            if v is None:
                raise MalformedError(f"memo key {idx} is not defined", offset=self.op_offset)
            append(v)
            return False

        def _put(idx: int) -> bool:
            if idx < 0:
                raise MalformedError("negative memo key", offset=self.op_offset)
            if len(memo) >= max_memo and idx not in memo:
                raise LimitExceeded("pickle memo exceeds the scanner limit", offset=self.op_offset)
            if len(stack) <= self.fence:
                raise MalformedError("pickle stack underflow", offset=self.op_offset)
            memo[idx] = stack[-1]
            return False

        def op_get() -> bool:
            return _get(_parse_index(self._line("GET argument"), self.op_offset))

        def op_binget() -> bool:
            return _get(u1())

        def op_long_binget() -> bool:
            return _get(self._unpack("<I", 4))

        def op_put() -> bool:
            return _put(_parse_index(self._line("PUT argument"), self.op_offset))

        def op_binput() -> bool:
            return _put(u1())

        def op_long_binput() -> bool:
            return _put(self._unpack("<I", 4))

        def op_memoize() -> bool:
            return _put(len(memo))

        # extension registry
        def ext(n: int, fmt: str) -> Callable[[], bool]:
            def op() -> bool:
                code = self._unpack(fmt, n) if n > 1 else self._u1()
                self._finding(
                    Verdict.SUSPICIOUS,
                    f"copyreg extension code {code}: resolves to a global registered at load time",
                    key=f"ext:{code}",
                )
                return p(UNKNOWN)

            return op

        # globals and calls
        def op_global() -> bool:
            return p(self._global_pair("GLOBAL"))

        def op_stack_global() -> bool:
            name = self._pop()
            module = self._pop()
            m, n = const_str(module), const_str(name)
            if m is None or n is None:
                self._finding(
                    Verdict.MALICIOUS,
                    "STACK_GLOBAL with a module/name that is not a constant string (computed import)",
                    key="computed-global",
                )
                return p(UNKNOWN)
            return p(self._global(m, n, "STACK_GLOBAL"))

        def op_reduce() -> bool:
            args = self._pop()
            func = self._pop()
            return p(self._call(func, args, "REDUCE"))

        def op_newobj() -> bool:
            args = self._pop()
            cls = self._pop()
            return p(self._call(cls, args, "NEWOBJ"))

        def op_newobj_ex() -> bool:
            self._pop()  # kwargs
            args = self._pop()
            cls = self._pop()
            return p(self._call(cls, args, "NEWOBJ_EX"))

        def op_obj() -> bool:
            items = self._pop_mark()
            if not items:
                raise MalformedError("OBJ without a class", offset=self.op_offset)
            args = Seq("tuple", [], cap=self.cap)
            args.extend(items[1:])
            return p(self._call(items[0], args, "OBJ"))

        def op_inst() -> bool:
            ref = self._global_pair("INST")
            items = self._pop_mark()
            args = Seq("tuple", [], cap=self.cap)
            args.extend(items)
            return p(self._call(ref, args, "INST"))

        def op_build() -> bool:
            state = self._pop()
            inst = self._top()
            self._mutates_global(inst, "BUILD")
            if isinstance(inst, Call):
                inst.state = state
                if isinstance(inst.func, GlobalRef):
                    self._use(inst.func, "instance set up by BUILD")
                if call_target(inst) in policy.JOBLIB_ARRAY_WRAPPERS:
                    self._joblib_array(state)
                    stack[-1] = UNKNOWN
            return False

        def op_persid() -> bool:
            pid = Const(self._line("PERSID argument").decode("latin-1"))
            self.persistent_ids.append(pid)
            return p(PersRef(pid))

        def op_binpersid() -> bool:
            pid = self._pop()
            self.persistent_ids.append(pid)
            return p(PersRef(pid))

        # framing
        def op_proto() -> bool:
            proto = self._u1()
            if proto > HIGHEST_PROTOCOL:
                raise MalformedError(f"unsupported pickle protocol {proto}", offset=self.op_offset)
            self.proto = proto
            return False

        def op_frame() -> bool:
            self._unpack("<Q", 8)
            return False

        def op_stop() -> bool:
            return True

        return {
            "I": op_int, "J": op_binint, "K": op_binint1, "M": op_binint2, "L": op_long,
            "\x8a": op_long1, "\x8b": op_long4, "S": op_string, "T": op_binstring,
            "U": op_short_binstring, "B": op_binbytes, "C": op_short_binbytes, "\x8e": op_binbytes8,
            "\x96": op_bytearray8, "\x97": op_next_buffer, "\x98": op_readonly_buffer, "N": op_none,
            "\x88": op_true, "\x89": op_false, "V": op_unicode, "\x8c": op_short_binunicode,
            "X": op_binunicode, "\x8d": op_binunicode8, "F": op_float, "G": op_binfloat,
            "]": op_empty_list, "a": op_append, "e": op_appends, "l": op_list, ")": op_empty_tuple,
            "t": op_tuple, "\x85": tuple_n(1), "\x86": tuple_n(2), "\x87": tuple_n(3), "}": op_empty_dict,
            "d": op_dict, "s": op_setitem, "u": op_setitems, "\x8f": op_empty_set, "\x90": op_additems,
            "\x91": op_frozenset, "0": op_pop, "2": op_dup, "(": op_mark, "1": op_pop_mark, "g": op_get,
            "h": op_binget, "j": op_long_binget, "p": op_put, "q": op_binput, "r": op_long_binput,
            "\x94": op_memoize, "\x82": ext(1, "<B"), "\x83": ext(2, "<H"), "\x84": ext(4, "<i"),
            "c": op_global, "\x93": op_stack_global, "R": op_reduce, "b": op_build, "i": op_inst,
            "o": op_obj, "\x81": op_newobj, "\x92": op_newobj_ex, "\x80": op_proto, ".": op_stop,
            "\x95": op_frame, "P": op_persid, "Q": op_binpersid,
        }  # fmt: skip


_SMALL_INTS = [Const(i) for i in range(256)]
"""Shared constants for BININT1 (never mutated)."""

VALID_OPCODES = frozenset(b"IJKML\x8a\x8bSTUBC\x8e\x96\x97\x98N\x88\x89V\x8cX\x8dFG]ael)t\x85\x86\x87}dsu\x8f\x90\x91"
                          b"021(ghjpqr\x94\x82\x83\x84c\x93Rbio\x81\x92\x80.\x95PQ")  # fmt: skip
"""Every byte that starts a valid opcode."""


def _parse_int(line: bytes, offset: int) -> Val:
    try:
        return Const(int(line))
    except ValueError:
        if line.strip().lstrip(b"+-").isdigit():
            return UNKNOWN  # more digits than int() converts by default; the value does not matter
        raise MalformedError("bad integer argument", offset=offset) from None


def _parse_index(line: bytes, offset: int) -> int:
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


def is_pickle_start(head: bytes) -> bool:
    """True if ``head`` begins with a PROTO opcode (protocol 2+ pickles always do; so does nothing else)."""
    return len(head) >= 2 and head[0] == 0x80


__all__ = [
    "VALID_OPCODES",
    "GlobalUse",
    "PickleAnalyzer",
    "PickleResult",
    "ScanError",
    "is_pickle_start",
]
