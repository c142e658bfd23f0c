"""The audit log's sequencer: moves queued events into the Merkle log, many per transaction (group commit).

Appending to the log serialises on the single ``audit_state`` row. When every change appended inside its own
transaction, each writer held that lock from its append until its commit, so concurrent pushes ran one at a
time. Now a change only inserts its event into ``audit_queue`` (``audit.record``): the event exists exactly
when the change commits, and no change waits for the log. Once the change has committed, ``session_scope``
runs :meth:`Sequencer.settle`: the thread waits until a sequencer pass that started after its commit has
finished, so when an API call returns, its events are in the log with inclusion proofs, as before.

Within a process one waiting thread runs each pass and the others wait for it (the leader/follower group
commit of database WAL flushes). A pass takes *every* queued event, whichever process recorded it, under the
``audit_state`` lock, in queue order, and appends a batch with one insert of entries, one of Merkle nodes and
one update of the size. Several processes contend only for that lock, and each pass also does the others' work.

SQLite runs one write transaction at a time, and the caller's holds the lock from its BEGIN IMMEDIATE: there a
pass in its own transaction would only add a second commit, so ``audit.record`` runs it inside the caller's
transaction (:func:`integrate_here`) and the event has its leaf before the change commits, as it always had.

Order: the log holds events in the order passes take them, by queue id among committed events. The events of
one transaction keep their order, and an event committed after another committed is logged after it (its id
is larger, and any pass that sees it sees the earlier one too). Events of a process that died between commit
and pass stay queued until the next pass (any commit, or ``mir serve`` starting).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from registry.audit.models import AuditEntry, AuditState, MerkleNode, QueuedAuditEvent
from signing.jcs import canonicalize, loads
from signing.merkle import MerkleLog, NodeKey

log = logging.getLogger("mir.audit")

BATCH = 500  # events per transaction: bounds a pass's memory; a pass loops until the queue is empty
_NODE_BATCH = 200


# PostgreSQL: one statement whatever the keys, an expanding IN of (level, idx) pairs (an index scan per pair).
# An OR of pairs has a shape per tree size, so every pass built, keyed and often compiled it anew. SQLite
# answers the row-value IN with a scan of the whole table, so it keeps the OR of pairs (a primary-key search
# per pair).
_NODES_AT = select(MerkleNode.level, MerkleNode.idx, MerkleNode.hash).where(
    tuple_(MerkleNode.level, MerkleNode.idx).in_(bindparam("keys", expanding=True))
)


def _nodes_at_on_sqlite(keys: Sequence[NodeKey]) -> Select[int, int, bytes]:
    return select(MerkleNode.level, MerkleNode.idx, MerkleNode.hash).where(
        or_(*(and_(MerkleNode.level == level, MerkleNode.idx == index) for level, index in keys)))


class SqlNodeStore:
    """signing.merkle.NodeStore over the ``merkle_nodes`` table (through an ORM session or a connection)."""

    def __init__(self, session: Session | Connection) -> None:
        self.session = session

    def get(self, level: int, index: int) -> bytes:
        found = self.get_many([(level, index)])
        if (level, index) not in found:
            raise KeyError((level, index))
        return found[(level, index)]

    def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        wanted = list(dict.fromkeys(keys))
        found: dict[NodeKey, bytes] = {}
        on_sqlite = self._dialect() == "sqlite"
        for start in range(0, len(wanted), _NODE_BATCH):
            chunk = wanted[start : start + _NODE_BATCH]
            rows = (self.session.execute(_nodes_at_on_sqlite(chunk)) if on_sqlite
                    else self.session.execute(_NODES_AT, {"keys": chunk}))
            for level, idx, digest in rows:
                found[(level, idx)] = bytes(digest)
        return found

    def _dialect(self) -> str:
        if isinstance(self.session, Connection):
            return self.session.dialect.name
        return self.session.get_bind().dialect.name

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        if items:
            self.session.execute(
                insert(MerkleNode), [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in items.items()]
            )


_QUEUED = QueuedAuditEvent.__table__
# A pass's fixed statements, built once: building one per call costs as much CPU (its cache key) as running it.
_LOCK_SIZE = select(AuditState.size).where(AuditState.id == 1).with_for_update()
_TAKE_OLDEST = delete(QueuedAuditEvent).where(QueuedAuditEvent.id.in_(
    select(_QUEUED.c.id).order_by(_QUEUED.c.id).limit(bindparam("limit", type_=Integer)).scalar_subquery()
)).returning(*_QUEUED.c)
_ADD_ENTRIES = insert(AuditEntry)
_ADVANCE_SIZE = update(AuditState).where(AuditState.id == 1).values(size=bindparam("new_size"))


def entry_body(index: int, event: Row[Any]) -> bytes:
    """The RFC 8785 JSON the leaf hashes: the event as recorded, with the index the sequencer gave it."""
    return canonicalize({
        "index": index,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "artifact": f"{event.namespace}/{event.name}" if event.namespace and event.name else None,
        "version": event.version,
        "details": loads(event.details),
    })


def _integrate_batch(conn: Connection, limit: int) -> int:
    """One transaction: lock the size, take the oldest queued events out, append them, advance the size.

    Core statements on one connection, six round trips whatever the batch holds: lock, take the events out of
    the queue, read the frontier, insert the nodes, insert the entries, advance the size.
    """
    size = conn.scalar(_LOCK_SIZE)
    if size is None:
        raise RuntimeError("audit_state row is missing: the schema was not created by migrations")
    taken = conn.execute(_TAKE_OLDEST, {"limit": limit})
    events = sorted(taken.all(), key=lambda event: int(event.id))
    if not events:
        return 0
    merkle = MerkleLog(SqlNodeStore(conn), size)
    bodies = [entry_body(size + offset, event) for offset, event in enumerate(events)]
    leaves = merkle.append_many(bodies)  # the new leaves and every subtree they complete, in one insert
    conn.execute(_ADD_ENTRIES, [
        {"leaf_index": index, "at": event.at, "actor": event.actor, "action": event.action,
         "namespace": event.namespace, "name": event.name, "version": event.version, "body": body.decode(),
         "leaf_hash": leaf.hex()}
        for (index, leaf), body, event in zip(leaves, bodies, events, strict=True)
    ])
    # After the entries: on PostgreSQL audit_state may only advance to the entries that exist.
    conn.execute(_ADVANCE_SIZE, {"new_size": merkle.size})
    return len(events)


def integrate(engine: Engine, *, batch: int = BATCH) -> int:
    """Append every queued event to the log, ``batch`` per transaction; returns how many were appended."""
    total = 0
    while True:
        with engine.begin() as conn:
            appended = _integrate_batch(conn, batch)
        total += appended
        if appended < batch:
            return total


def integrate_here(conn: Connection, *, batch: int = BATCH) -> int:
    """Append every queued event inside the caller's transaction (SQLite: it already holds the write lock)."""
    total = 0
    while (appended := _integrate_batch(conn, batch)) == batch:
        total += appended
    return total + appended


class Sequencer:
    """Group commit for one engine in this process: one thread runs a pass while the others wait for it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out, one per committed transaction that recorded events
        self._done = 0  # every ticket up to this one is in the log
        self._running = False

    def settle(self) -> None:
        """Return once every event committed before this call is in the log (a pass started after it ended)."""
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while self._done < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running, target, ok = True, self._requested, False
                self._cond.release()
                try:
                    engine = self._engine()
                    if engine is not None:
                        integrate(engine)
                    ok = True
                finally:
                    self._cond.acquire()
                    self._running = False
                    if ok:
                        self._done = max(self._done, target)
                    self._cond.notify_all()

    def settle_after_commit(self) -> None:
        """The after-commit hook: the change is committed whatever happens here, and its events are queued
        durably, so a failed pass is logged, not raised; the next pass (any commit, or a restart) appends them."""
        try:
            self.settle()
        except Exception:
            log.exception("could not append queued audit events now; they stay queued for the next pass")


_sequencers: weakref.WeakKeyDictionary[Engine, Sequencer] = weakref.WeakKeyDictionary()
_sequencers_lock = threading.Lock()


def sequencer_for(engine: Engine) -> Sequencer:
    with _sequencers_lock:
        found = _sequencers.get(engine)
        if found is None:
            found = _sequencers[engine] = Sequencer(engine)
        return found
