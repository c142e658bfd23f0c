"""Client-side audit verification: the client checks the log itself, never taking the server's word.

``verify`` pins the registry key (trust on first use, or a key given
explicitly), checks the signed tree head, proves the new head extends the
last one this client saw (consistency proof), and recomputes the Merkle root
from the entries themselves, so both a rewritten entry and a rewritten history
are caught. The checkpoint keeps only the tree head and its O(log n) frontier.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.client.config import per_registry_path
from registry.client.http import MirClient
from registry.client.pins import PinnedKey, TrustError, pinned_registry_key
from signing.merkle import (
    MerkleError,
    MerkleLog,
    NodeKey,
    leaf_hash,
    root_keys,
    verify_consistency,
    verify_inclusion,
)
from signing.tree_head import SignedTreeHead, TreeHead, TreeHeadError, verify_tree_head

PAGE = 1000


class FrontierStore:
    """A NodeStore that only needs to remember the right edge of the tree (pruned after each page)."""

    def __init__(self, nodes: Mapping[NodeKey, bytes] | None = None) -> None:
        self.nodes: dict[NodeKey, bytes] = dict(nodes or {})

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        return {k: self.nodes[k] for k in keys if k in self.nodes}

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        self.nodes.update(items)

    def prune(self, size: int) -> None:
        keep = set(root_keys(size))
        self.nodes = {k: v for k, v in self.nodes.items() if k in keep}


@dataclass
class AuditReport:
    ok: bool = True
    tree_size: int = 0
    checked_entries: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(message)


def checkpoint_path(url: str) -> Path:
    return per_registry_path("audit", url, ".json")


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def _save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class HeadRejected(Exception):
    """The registry's signed tree head cannot be trusted: nothing can be checked against it."""


def _verified_head(
    client: MirClient, pinned: PinnedKey, checkpoint: dict[str, Any] | None
) -> tuple[SignedTreeHead, TreeHead]:
    """The current signed head, checked against the pinned key and proven to extend the checkpoint's head."""
    try:
        signed = SignedTreeHead.from_dict(client.json("GET", "/v1/audit/tree-head"))
        head = verify_tree_head(signed, pinned.public_key, key_id=pinned.key_id)
    except TreeHeadError as exc:
        raise HeadRejected(f"tree head rejected: {exc}") from exc
    if checkpoint is not None:
        old = SignedTreeHead.from_dict(checkpoint["tree_head"]).head
        if head.tree_size < old.tree_size:
            raise HeadRejected(
                f"the log shrank from {old.tree_size} to {head.tree_size} entries: history was rewritten"
            )
        proof = client.json(
            "GET", "/v1/audit/proof/consistency", params={"old_size": old.tree_size, "new_size": head.tree_size}
        )
        try:
            consistent = verify_consistency(old.tree_size, head.tree_size, old.root_hash, head.root_hash,
                                            [bytes.fromhex(h) for h in proof["proof"]])
        except (MerkleError, ValueError, TypeError, KeyError):
            consistent = False
        if not consistent:
            raise HeadRejected(
                f"the log at size {head.tree_size} is not an extension of the log this client saw at size "
                f"{old.tree_size}: history was rewritten"
            )
    return signed, head


def verify(client: MirClient, *, pinned_key_pem: str | None = None, full: bool = False) -> AuditReport:
    """Check the whole log (or what was appended since the checkpoint); only a run that passes saves one."""
    report = AuditReport()
    path = checkpoint_path(client.url)
    checkpoint = _load_checkpoint(path)
    try:
        pinned = pinned_registry_key(client, pinned_key_pem)
    except TrustError as exc:
        report.fail(str(exc))
        return report
    if pinned.newly_pinned:
        report.notes.append(f"first run: pinned registry key {pinned.key_id} (trust on first use)")
    try:
        signed, head = _verified_head(client, pinned, checkpoint)
    except HeadRejected as exc:
        report.fail(str(exc))
        return report
    report.tree_size = head.tree_size

    start, frontier = 0, FrontierStore()
    if checkpoint is not None:
        old = SignedTreeHead.from_dict(checkpoint["tree_head"]).head
        if not full:
            start = old.tree_size
            frontier = FrontierStore({tuple(map(int, k.split(":"))): bytes.fromhex(v)  # type: ignore[misc]
                                      for k, v in checkpoint["frontier"].items()})

    log = MerkleLog(frontier, start)
    index = start
    while index < head.tree_size:
        page = client.json("GET", "/v1/audit/entries", params={"after": index - 1, "limit": PAGE})
        if not page["items"]:
            report.fail(f"the registry served no entry at index {index}")
            return report
        for item in page["items"]:
            if item["index"] >= head.tree_size:
                break
            if item["index"] != index:
                report.fail(f"expected entry {index}, the registry served {item['index']}")
                return report
            body = item["body"].encode()
            if json.loads(body).get("index") != index:
                report.fail(f"entry {index}: its body claims another index")
                return report
            computed = leaf_hash(body)
            if computed.hex() != item["leaf_hash"]:
                report.fail(f"entry {index} ({item['action']}): its content does not hash to its leaf")
                return report
            log.append(body)
            index += 1
        frontier.prune(index)
    if log.root(head.tree_size) != head.root_hash:
        report.fail("the entries do not reproduce the signed root: an entry was altered")
        return report
    report.checked_entries = head.tree_size - start
    _save_checkpoint(
        path,
        {
            "tree_head": signed.to_dict(),
            "registry_key": pinned.pem,
            "frontier": {f"{lv}:{ix}": h.hex() for (lv, ix), h in frontier.get_many(root_keys(head.tree_size)).items()},
        },
    )
    return report


@dataclass
class CheckedEntry:
    """One displayed entry: its fields as its own signed-over body says, and why it failed (None: proven)."""

    index: int
    fields: dict[str, Any]
    problem: str | None


@dataclass
class EntriesReport:
    tree_size: int = 0
    entries: list[CheckedEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(e.problem is None for e in self.entries)


def _check_entry(client: MirClient, item: dict[str, Any], head: TreeHead) -> CheckedEntry:
    """Prove one served entry is in the signed tree: its body hashes to a leaf the head's root includes."""
    index = item.get("index")
    body = item.get("body")
    if not isinstance(index, int) or not isinstance(body, str):
        return CheckedEntry(-1, {}, "the registry served a malformed entry")
    try:
        fields = json.loads(body)
    except ValueError:
        return CheckedEntry(index, {}, "its body is not JSON")
    if not isinstance(fields, dict):
        return CheckedEntry(index, {}, "its body is not a JSON object")
    if fields.get("index") != index:
        return CheckedEntry(index, fields, "its body claims another index")
    if index >= head.tree_size:
        return CheckedEntry(index, fields, f"not covered by the signed tree head (size {head.tree_size})")
    leaf = leaf_hash(body.encode())
    if item.get("leaf_hash") != leaf.hex():
        return CheckedEntry(index, fields, "its content does not hash to its leaf")
    proof = client.json("GET", "/v1/audit/proof/inclusion", params={"index": index, "tree_size": head.tree_size})
    try:
        included = verify_inclusion(leaf, index, head.tree_size, [bytes.fromhex(h) for h in proof["proof"]],
                                    head.root_hash)
    except (MerkleError, ValueError, TypeError, KeyError):
        included = False
    if not included:
        return CheckedEntry(index, fields, "not included in the signed tree head: the entry was altered")
    return CheckedEntry(index, fields, None)


def check_entries(
    client: MirClient, items: list[dict[str, Any]], *, pinned_key_pem: str | None = None
) -> EntriesReport:
    """Check entries the registry served against its signed tree head (pinned key, extends the checkpoint).

    Fetch the entries before calling: the log only grows, so a head fetched afterwards covers them all.
    Nothing is saved; ``verify`` alone advances the checkpoint.
    """
    report = EntriesReport()
    try:
        pinned = pinned_registry_key(client, pinned_key_pem)
        if pinned.newly_pinned:
            report.notes.append(f"pinned registry key {pinned.key_id} (trust on first use)")
        _, head = _verified_head(client, pinned, _load_checkpoint(checkpoint_path(client.url)))
    except (TrustError, HeadRejected) as exc:
        report.problems.append(str(exc))
        report.entries = [CheckedEntry(i["index"] if isinstance(i.get("index"), int) else -1, _fields(i),
                                       "no trusted tree head") for i in items]
        return report
    report.tree_size = head.tree_size
    report.entries = [_check_entry(client, item, head) for item in items]
    return report


def _fields(item: dict[str, Any]) -> dict[str, Any]:
    try:
        fields = json.loads(item.get("body") or "")
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}
