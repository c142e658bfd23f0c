"""The tamper-evident audit log: every state change is a Merkle leaf (RFC 9162 hashing).

``record`` appends inside the caller's transaction, so an event exists exactly
when the change it describes was committed. Appends lock the single
``audit_state`` row (SELECT ... FOR UPDATE on PostgreSQL; SQLite transactions
already hold the write lock), cost O(log n) node writes, and proofs read
O(log n) stored subtree hashes. On PostgreSQL triggers refuse UPDATE and
DELETE of the log tables and let ``audit_state`` only advance with the log,
and the service runs as a role that may only append (registry.server.db_roles); on
SQLite this module never issues them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.audit.models import AuditEntry, AuditState, MerkleNode, SignedTreeHead
from registry.core.errors import ApiError
from registry.core.registry_key import RegistrySigner
from registry.core.tables import utcnow
from signing.jcs import canonicalize
from signing.merkle import MerkleLog, NodeKey
from signing.tree_head import SignedTreeHead as SignedHead
from signing.tree_head import TreeHead, sign_tree_head

_BATCH = 200


class SqlNodeStore:
    """signing.merkle.NodeStore over the ``merkle_nodes`` table."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, level: int, index: int) -> bytes:
        node = self.session.get(MerkleNode, (level, index))
        if node is None:
            raise KeyError((level, index))
        return node.hash

    def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        wanted = list(dict.fromkeys(keys))
        found: dict[NodeKey, bytes] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            condition = or_(*(and_(MerkleNode.level == lv, MerkleNode.idx == ix) for lv, ix in chunk))
            for level, idx, digest in self.session.execute(
                select(MerkleNode.level, MerkleNode.idx, MerkleNode.hash).where(condition)
            ):
                found[(level, idx)] = bytes(digest)
        return found

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        if items:
            self.session.execute(
                insert(MerkleNode), [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in items.items()]
            )


def _lock_state(session: Session) -> AuditState:
    state = session.scalar(select(AuditState).where(AuditState.id == 1).with_for_update())
    if state is None:
        raise RuntimeError("audit_state row is missing: the schema was not created by migrations")
    return state


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
) -> AuditEntry:
    """Append one event (who, what, when, digests in ``details``) to the log, in the caller's transaction."""
    state = _lock_state(session)
    index = state.size
    at = utcnow()
    body = {
        "index": index,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "artifact": f"{namespace}/{name}" if namespace and name else None,
        "version": version,
        "details": details or {},
    }
    encoded = canonicalize(body)
    log = MerkleLog(SqlNodeStore(session), index)
    leaf_index, leaf = log.append(encoded)
    assert leaf_index == index
    entry = AuditEntry(
        leaf_index=index,
        at=at,
        actor=actor,
        action=action,
        namespace=namespace,
        name=name,
        version=version,
        body=encoded.decode(),
        leaf_hash=leaf.hex(),
    )
    session.add(entry)
    session.flush()  # the entry first: on PostgreSQL audit_state may only advance to the entries that exist
    state.size = index + 1
    session.flush()
    return entry


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
