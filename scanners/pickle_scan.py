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

The parts: ``pickle_machine`` (state and shared checks), ``pickle_ops`` (one
handler per opcode, by family, and the table built from them) and this module,
which joins them into the analyser the scanners use.

Why our own tokenizer instead of ``pickletools.genops``: genops materialises every
argument, so a multi-GB BINBYTES8 would be read into memory; here large strings
are skipped (and re-read from the file only if they reach a loader).
"""

from __future__ import annotations

from scanners.errors import ScanError
from scanners.pickle_machine import GlobalUse, PickleMachine, PickleResult
from scanners.pickle_ops import OPCODE_HANDLERS


class PickleAnalyzer(PickleMachine):
    """Runs one pickle (from the reader's position to its STOP) symbolically, with every opcode known."""

    HANDLERS = OPCODE_HANDLERS


def is_pickle_start(head: bytes) -> bool:
    """True if ``head`` begins with a PROTO opcode (protocol 2+ pickles always do; so does nothing else)."""
    return len(head) >= 2 and head[0] == 0x80


__all__ = [
    "GlobalUse",
    "PickleAnalyzer",
    "PickleResult",
    "ScanError",
    "is_pickle_start",
]
