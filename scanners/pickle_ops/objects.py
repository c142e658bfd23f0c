"""Opcodes that import, call and set up objects, plus persistent ids, extension codes and framing.

This is where a pickle reaches code: every import is classified by
``globals_policy`` and every call is checked for shapes no legitimate pickler
emits (``PickleMachine.call``).
"""

from __future__ import annotations

from scanners import globals_policy as policy
from scanners.errors import MalformedError
from scanners.pickle_machine import HIGHEST_PROTOCOL, NO_FRAME, Handler, PickleMachine
from scanners.pickle_values import (
    UNKNOWN,
    BigData,
    Call,
    Const,
    DictVal,
    GlobalRef,
    PersRef,
    Seq,
    call_target,
    const_str,
)
from scanners.report import Verdict


def op_global(m: PickleMachine) -> bool:
    return m.push(m.global_pair("GLOBAL"))


def op_stack_global(m: PickleMachine) -> bool:
    name = m.pop()
    module = m.pop()
    module_text, name_text = const_str(module), const_str(name)
    if _never_a_str(module) or _never_a_str(name):
        # CPython's unpickler refuses these ("STACK_GLOBAL requires str") before importing anything.
        raise MalformedError("STACK_GLOBAL operands are not strings", offset=m.op_offset)
    if module_text is None or name_text is None:
        m.finding(
            Verdict.MALICIOUS,
            "STACK_GLOBAL with a module/name that is not a constant string (computed import)",
            key="computed-global",
        )
        return m.push(UNKNOWN)
    return m.push(m.global_ref(module_text, name_text, "STACK_GLOBAL"))


def _never_a_str(v: object) -> bool:
    """A value known not to be a ``str`` (a literal of another type, a container, bytes too large to keep);
    a global, a call's result or an unknown value may be one at load time."""
    return (isinstance(v, Const) and not isinstance(v.value, str)) or isinstance(v, Seq | DictVal) or (
        isinstance(v, BigData) and not v.is_text)


def op_reduce(m: PickleMachine) -> bool:
    args = m.pop()
    func = m.pop()
    return m.push(m.call(func, args, "REDUCE"))


def op_newobj(m: PickleMachine) -> bool:
    args = m.pop()
    cls = m.pop()
    return m.push(m.call(cls, args, "NEWOBJ"))


def op_newobj_ex(m: PickleMachine) -> bool:
    m.pop()  # kwargs
    args = m.pop()
    cls = m.pop()
    return m.push(m.call(cls, args, "NEWOBJ_EX"))


def op_obj(m: PickleMachine) -> bool:
    items = m.pop_mark()
    if not items:
        raise MalformedError("OBJ without a class", offset=m.op_offset)
    args = Seq("tuple", [], cap=m.cap)
    args.extend(items[1:])
    return m.push(m.call(items[0], args, "OBJ"))


def op_inst(m: PickleMachine) -> bool:
    ref = m.global_pair("INST")
    args = Seq("tuple", [], cap=m.cap)
    args.extend(m.pop_mark())
    return m.push(m.call(ref, args, "INST"))


def op_build(m: PickleMachine) -> bool:
    state = m.pop()
    inst = m.top()
    m.mutates_global(inst, "BUILD")
    if isinstance(inst, Call):
        inst.state = state
        if isinstance(inst.func, GlobalRef):
            m.use(inst.func, "instance set up by BUILD")
        if call_target(inst) in policy.JOBLIB_ARRAY_WRAPPERS:
            m.joblib_array(state)
            m.stack[-1] = UNKNOWN
    return False


def op_persid(m: PickleMachine) -> bool:
    pid = Const(m.read_line("PERSID argument").decode("latin-1"))
    m.persistent_ids.append(pid)
    return m.push(PersRef(pid))


def op_binpersid(m: PickleMachine) -> bool:
    pid = m.pop()
    m.persistent_ids.append(pid)
    return m.push(PersRef(pid))


def _extension(n: int, fmt: str) -> Handler:
    """EXT1/2/4: a code the copyreg extension registry maps to a global only at load time."""

    def op(m: PickleMachine) -> bool:
        code = m.unpack(fmt, n) if n > 1 else m.u1()
        m.finding(
            Verdict.SUSPICIOUS,
            f"copyreg extension code {code}: resolves to a global registered at load time",
            key=f"ext:{code}",
        )
        return m.push(UNKNOWN)

    return op


def op_proto(m: PickleMachine) -> bool:
    proto = m.u1()
    if proto > HIGHEST_PROTOCOL:
        raise MalformedError(f"unsupported pickle protocol {proto}", offset=m.op_offset)
    if m.op_offset != m.start:
        m.finding(Verdict.SUSPICIOUS, f"PROTO {proto} in the middle of the pickle: picklers write it only first, "
                  "and it changes how later opcodes are read (a scanner-evasion pattern)", key="proto:late")
    m.proto = proto
    return False


def op_frame(m: PickleMachine) -> bool:
    size = m.unpack("<Q", 8)
    if m.frame_end != NO_FRAME:
        m.frame_violation(f"FRAME at offset {m.op_offset} begins inside an unfinished frame", "n")
    m.frame_end = m.r.tell() + size
    return False


def op_stop(m: PickleMachine) -> bool:
    if m.frame_end != NO_FRAME and m.op_offset + 1 < m.frame_end:
        m.frame_violation(f"STOP with {m.frame_end - m.op_offset - 1} bytes of its FRAME unread", "s")
    return True


HANDLERS: dict[bytes, Handler] = {
    b"c": op_global, b"\x93": op_stack_global,
    b"R": op_reduce, b"\x81": op_newobj, b"\x92": op_newobj_ex, b"o": op_obj, b"i": op_inst, b"b": op_build,
    b"P": op_persid, b"Q": op_binpersid,
    b"\x82": _extension(1, "<B"), b"\x83": _extension(2, "<H"), b"\x84": _extension(4, "<i"),
    b"\x80": op_proto, b"\x95": op_frame, b".": op_stop,
}  # fmt: skip
