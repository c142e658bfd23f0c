"""The tamper-evident audit log: every state change is a Merkle leaf (RFC 9162 hashing).

``record`` queues an event inside the caller's transaction, so an event exists exactly when the change it
describes was committed; the sequencer (registry.audit.sequencer) appends queued events to the log in
batches, and the committing thread waits for that before it returns (``session_scope`` runs the hook), so
every change an API call made is in the log, with an inclusion proof, when the call answers. On PostgreSQL
appends lock the single ``audit_state`` row (SELECT ... FOR UPDATE) only inside the sequencer's own short
transactions; on SQLite, whose write transactions already hold the one write lock, the sequencer runs in the
caller's transaction. Appends cost amortised 2 node writes per entry, and
proofs read O(log n) stored subtree hashes. On PostgreSQL triggers refuse UPDATE and DELETE of the log tables
and let ``audit_state`` only advance with the log, and the service runs as a role that may only append
(registry.server.db_roles); on SQLite this module never issues them.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from sqlalchemy import Table, event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from registry.audit.models import AuditEntry, AuditState, QueuedAuditEvent, SignedTreeHead
from registry.audit.sequencer import SqlNodeStore, integrate_here, sequencer_for
from registry.core.db import after_commit
from registry.core.errors import ApiError
from registry.core.registry_key import RegistrySigner
from registry.core.tables import utcnow
from signing.jcs import canonicalize
from signing.merkle import MerkleLog
from signing.tree_head import SignedTreeHead as SignedHead
from signing.tree_head import TreeHead, sign_tree_head


def tree_size(session: Session) -> int:
    return session.scalar(select(AuditState.size).where(AuditState.id == 1)) or 0


def record(
    session: Session,
    *,
    action: str,
    actor: str | None,
    namespace: str | None = None,
    name: str | None = None,
    version: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record one event (who, what, when, digests in ``details``) in the caller's transaction.

    On PostgreSQL it joins the log, with its index, once the transaction has committed (before
    ``session_scope`` returns); the events of one transaction are inserted together, in call order, just
    before it commits. On SQLite at once, in this transaction. Details that have no canonical JSON form are
    refused here, in the caller's transaction.
    """
    row = {"at": utcnow(), "actor": actor, "action": action, "namespace": namespace, "name": name,
           "version": version, "details": canonicalize(details or {}).decode()}
    session.flush()  # as when each event was its own INSERT: callers may rely on their rows being written
    session.connection()  # the transaction has begun: its end (commit or rollback) decides the event's fate
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        session.execute(insert(_QUEUE), [row])
        integrate_here(session.connection())  # this transaction already holds SQLite's only write lock
        return
    if session.in_nested_transaction():  # a savepoint that rolls back must take its events with it
        session.execute(insert(_QUEUE), [row])
    else:
        session.info.setdefault(_PENDING, []).append(row)
    after_commit(session, sequencer_for(bind.engine).settle_after_commit)


_QUEUE = cast(Table, QueuedAuditEvent.__table__)  # Core inserts: executemany, rows in call order
_PENDING = "mir.audit.pending"


@event.listens_for(Session, "before_commit")
def _insert_pending(session: Session) -> None:
    """The transaction's queued events in one statement (an executemany, in call order, so queue ids keep the
    transaction's order), before it commits: one round trip where each event was one."""
    events = session.info.pop(_PENDING, None)
    if events:
        session.execute(insert(_QUEUE), events)


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    """A transaction that ended without committing (rolled back) recorded nothing: its events never reach a
    later transaction of the same session."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def settle(session: Session) -> None:
    """Make every event committed so far part of the log (PostgreSQL: run or wait for a sequencer pass).

    For readers that must find the entry of a change another process has just committed: its pass may still
    be running, or not have started (a scan worker descheduled between its commit and its pass, which let a
    client see a verdict whose audit entries were not in the log yet). The audit routes call it before they
    read. Call it outside any lock on ``audit_state`` (readers never take one).
    """
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":  # on SQLite events join the log inside their own transaction
        sequencer_for(bind.engine).settle()


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"index": entry.leaf_index, "leaf_hash": entry.leaf_hash, "body": entry.body, **json.loads(entry.body)}


def list_entries(
    session: Session,
    *,
    namespace: str | None = None,
    name: str | None = None,
    action: str | None = None,
    after: int = -1,
    limit: int = 100,
    actor: str | None = None,
) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.leaf_index > after).order_by(AuditEntry.leaf_index).limit(limit)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if namespace is not None:
        query = query.where(AuditEntry.namespace == namespace)
    if name is not None:
        query = query.where(AuditEntry.name == name)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return list(session.scalars(query))


def current_tree_head(session: Session, signer: RegistrySigner, log_id: str) -> SignedHead:
    """The signed head for the log's current size; signs (and stores) a new one when the log has grown."""
    size = tree_size(session)
    stored = session.get(SignedTreeHead, size)
    if stored is not None:
        return SignedHead.from_json(stored.body)
    root = MerkleLog(SqlNodeStore(session), size).root()
    head = TreeHead(tree_size=size, root_hash=root, timestamp=int(time.time() * 1000), log_id=log_id,
                    key_id=signer.key_id)
    signed = sign_tree_head(head, signer.private_key)
    try:
        with session.begin_nested():
            session.add(SignedTreeHead(tree_size=size, root_hash=root.hex(), body=signed.to_json().decode()))
    except IntegrityError:
        existing = session.get(SignedTreeHead, size)
        assert existing is not None
        return SignedHead.from_json(existing.body)
    return signed


def _check_sizes(session: Session, *sizes: int) -> int:
    current = tree_size(session)
    for size in sizes:
        if size < 0 or size > current:
            raise ApiError(400, "invalid_tree_size", f"tree size {size} is outside 0..{current}")
    return current


def inclusion_proof(session: Session, index: int, size: int | None = None) -> dict[str, Any]:
    current = _check_sizes(session, *([] if size is None else [size]))
    size = current if size is None else size
    if not 0 <= index < size:
        raise ApiError(400, "invalid_index", f"leaf index {index} is outside 0..{size - 1}")
    log = MerkleLog(SqlNodeStore(session), size)
    entry = session.get(AuditEntry, index)
    assert entry is not None
    return {
        "index": index,
        "tree_size": size,
        "leaf_hash": entry.leaf_hash,
        "proof": [h.hex() for h in log.inclusion_proof(index, size)],
    }


def consistency_proof(session: Session, old_size: int, new_size: int) -> dict[str, Any]:
    _check_sizes(session, old_size, new_size)
    if old_size > new_size:
        raise ApiError(400, "invalid_tree_size", "old size must not exceed new size")
    log = MerkleLog(SqlNodeStore(session), new_size)
    return {
        "old_size": old_size,
        "new_size": new_size,
        "proof": [h.hex() for h in log.consistency_proof(old_size, new_size)],
    }
