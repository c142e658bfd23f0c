"""Opcodes that build containers, move values on the stack, and read or write the memo.

Container mutations are where a pickle can overwrite an imported module's
attributes, so every APPEND/SETITEM-style opcode checks its target first.
"""

from __future__ import annotations

from scanners.errors import LimitExceeded, MalformedError
from scanners.pickle_machine import Handler, PickleMachine, parse_index
from scanners.pickle_values import DictVal, Seq, Val

# -- containers ---------------------------------------------------------------------------------------


def _seq(m: PickleMachine, kind: str, items: list[Val]) -> Seq:
    s = Seq(kind, [], cap=m.cap)
    s.extend(items)
    m.grew(s, len(items))
    return s


def _pairs(m: PickleMachine, items: list[Val], op: str) -> list[tuple[Val, Val]]:
    if len(items) % 2:
        raise MalformedError(f"odd number of items for {op}", offset=m.op_offset)
    return list(zip(items[::2], items[1::2], strict=True))


def _extend(m: PickleMachine, target: Val, items: list[Val], op: str) -> None:
    m.mutates_global(target, op)
    if isinstance(target, Seq):
        target.extend(items)
        m.grew(target, len(items))


def _setitems(m: PickleMachine, target: Val, pairs: list[tuple[Val, Val]], op: str) -> None:
    m.mutates_global(target, op)
    if isinstance(target, DictVal):
        target.update(pairs)
        m.grew(target, 2 * len(pairs))


def op_empty_list(m: PickleMachine) -> bool:
    return m.push(Seq("list", [], cap=m.cap))


def op_empty_tuple(m: PickleMachine) -> bool:
    return m.push(Seq("tuple", [], cap=m.cap))


def op_empty_dict(m: PickleMachine) -> bool:
    return m.push(DictVal([], cap=m.cap))


def op_empty_set(m: PickleMachine) -> bool:
    return m.push(Seq("set", [], cap=m.cap))


def op_append(m: PickleMachine) -> bool:
    v = m.pop()
    _extend(m, m.top(), [v], "APPEND")
    return False


def op_appends(m: PickleMachine) -> bool:
    items = m.pop_mark()
    _extend(m, m.top(), items, "APPENDS")
    return False


def op_additems(m: PickleMachine) -> bool:
    items = m.pop_mark()
    _extend(m, m.top(), items, "ADDITEMS")
    return False


def op_list(m: PickleMachine) -> bool:
    return m.push(_seq(m, "list", m.pop_mark()))


def op_tuple(m: PickleMachine) -> bool:
    return m.push(_seq(m, "tuple", m.pop_mark()))


def op_frozenset(m: PickleMachine) -> bool:
    return m.push(_seq(m, "frozenset", m.pop_mark()))


def _tuple_n(n: int) -> Handler:
    def op(m: PickleMachine) -> bool:
        stack = m.stack
        if len(stack) - n < m.fence:
            raise MalformedError("pickle stack underflow", offset=m.op_offset)
        items = stack[len(stack) - n :]
        del stack[len(stack) - n :]
        return m.push(_seq(m, "tuple", items))

    return op


def op_dict(m: PickleMachine) -> bool:
    d = DictVal([], cap=m.cap)
    pairs = _pairs(m, m.pop_mark(), "DICT")
    d.update(pairs)
    m.grew(d, 2 * len(pairs))
    return m.push(d)


def op_setitem(m: PickleMachine) -> bool:
    v = m.pop()
    k = m.pop()
    _setitems(m, m.top(), [(k, v)], "SETITEM")
    return False


def op_setitems(m: PickleMachine) -> bool:
    pairs = _pairs(m, m.pop_mark(), "SETITEMS")
    _setitems(m, m.top(), pairs, "SETITEMS")
    return False


# -- the stack and marks ------------------------------------------------------------------------------


def op_pop(m: PickleMachine) -> bool:
    if len(m.stack) > m.fence:
        m.stack.pop()
    elif m.marks:
        m.pop_mark()  # POP right after MARK discards the mark, as CPython does
    else:
        raise MalformedError("pickle stack underflow", offset=m.op_offset)
    return False


def op_dup(m: PickleMachine) -> bool:
    return m.push(m.top())


def op_mark(m: PickleMachine) -> bool:
    m.fence = len(m.stack)
    m.marks.append(m.fence)
    return False


def op_pop_mark(m: PickleMachine) -> bool:
    m.pop_mark()
    return False


# -- the memo -----------------------------------------------------------------------------------------


def _get(m: PickleMachine, idx: int) -> bool:
    v = m.memo.get(idx)
    if v is None:
        raise MalformedError(f"memo key {idx} is not defined", offset=m.op_offset)
    m.stack.append(v)
    return False


def _put(m: PickleMachine, idx: int) -> bool:
    memo = m.memo
    if idx < 0:
        raise MalformedError("negative memo key", offset=m.op_offset)
    if len(memo) >= m.limits.max_memo and idx not in memo:
        raise LimitExceeded("pickle memo exceeds the scanner limit", offset=m.op_offset)
    if len(m.stack) <= m.fence:
        raise MalformedError("pickle stack underflow", offset=m.op_offset)
    memo[idx] = m.stack[-1]
    return False


def op_get(m: PickleMachine) -> bool:
    return _get(m, parse_index(m.read_line("GET argument"), m.op_offset))


def op_binget(m: PickleMachine) -> bool:
    return _get(m, m.u1())


def op_long_binget(m: PickleMachine) -> bool:
    return _get(m, m.unpack("<I", 4))


def op_put(m: PickleMachine) -> bool:
    return _put(m, parse_index(m.read_line("PUT argument"), m.op_offset))


def op_binput(m: PickleMachine) -> bool:
    return _put(m, m.u1())


def op_long_binput(m: PickleMachine) -> bool:
    return _put(m, m.unpack("<I", 4))


def op_memoize(m: PickleMachine) -> bool:
    return _put(m, len(m.memo))


HANDLERS: dict[bytes, Handler] = {
    b"]": op_empty_list, b")": op_empty_tuple, b"}": op_empty_dict, b"\x8f": op_empty_set,
    b"a": op_append, b"e": op_appends, b"\x90": op_additems,
    b"l": op_list, b"t": op_tuple, b"\x91": op_frozenset,
    b"\x85": _tuple_n(1), b"\x86": _tuple_n(2), b"\x87": _tuple_n(3),
    b"d": op_dict, b"s": op_setitem, b"u": op_setitems,
    b"0": op_pop, b"2": op_dup, b"(": op_mark, b"1": op_pop_mark,
    b"g": op_get, b"h": op_binget, b"j": op_long_binget,
    b"p": op_put, b"q": op_binput, b"r": op_long_binput, b"\x94": op_memoize,
}  # fmt: skip
