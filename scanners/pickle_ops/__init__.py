"""The opcode table: every pickle opcode the analyser understands, by family.

``VALID_OPCODES`` is derived from the table, so the format sniffer and the
analyser can never disagree about which bytes start an opcode.
"""

from __future__ import annotations

from scanners.pickle_machine import Handler
from scanners.pickle_ops import objects, structure, values

FAMILIES: dict[str, dict[bytes, Handler]] = {
    "values": values.HANDLERS,
    "structure": structure.HANDLERS,
    "objects": objects.HANDLERS,
}


def _by_byte() -> tuple[Handler | None, ...]:
    table: list[Handler | None] = [None] * 256
    for family, handlers in FAMILIES.items():
        for opcode, handler in handlers.items():
            if len(opcode) != 1 or table[opcode[0]] is not None:
                raise RuntimeError(f"opcode {opcode!r} of family {family} is not one new byte")
            table[opcode[0]] = handler
    return tuple(table)


OPCODE_HANDLERS = _by_byte()
"""Handler per opcode byte (None: not an opcode)."""

VALID_OPCODES = frozenset(code for code, handler in enumerate(OPCODE_HANDLERS) if handler is not None)
"""Every byte that starts a valid opcode."""

__all__ = ["FAMILIES", "OPCODE_HANDLERS", "VALID_OPCODES"]
