"""The start-up heap of a long-running process, kept out of Python's cyclic garbage collector.

A full (generation 2) collection walks every tracked object. After start-up a ``mir serve`` process holds
about 190,000 of them (modules, SQLAlchemy mappers, pydantic models, FastAPI routes); under load a full
collection ran every ten seconds or so and held the GIL for 100-200 ms, stalling every request of that
process at once: the slowest pushes of a load run were those pauses. ``gc.freeze`` moves those objects to a
permanent generation the collector never walks (as Instagram's Django fleet does), so later collections see
only what the process allocated while serving. Almost none of them ever becomes garbage; one that does is
freed by reference counting, unless it sits in a cycle: then it stays, a one-time loss bounded by the start-up
heap (pooled connections replaced after a database restart, say).
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect the garbage start-up left, then freeze what survives; returns how many objects are now frozen.

    Call once, after the process has imported and built everything it serves with, and before it serves.
    Garbage is collected first because a frozen object is never freed.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def frozen_objects() -> int:
    return gc.get_freeze_count()
