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
from hashlib import sha256
from pathlib import Path
from typing import Any

from registry.client import MirClient
from registry.config import config_dir
from registry.trust import TrustError, pinned_registry_key
from signing.merkle import MerkleLog, NodeKey, leaf_hash, root_keys, verify_consistency
from signing.tree_head import SignedTreeHead, TreeHeadError, verify_tree_head

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
    return config_dir() / "audit" / f"{sha256(url.encode()).hexdigest()[:16]}.json"


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


def verify(client: MirClient, *, pinned_key_pem: str | None = None, full: bool = False) -> AuditReport:
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
        signed = SignedTreeHead.from_dict(client.json("GET", "/v1/audit/tree-head"))
        head = verify_tree_head(signed, pinned.public_key, key_id=pinned.key_id)
    except TreeHeadError as exc:
        report.fail(f"tree head rejected: {exc}")
        return report
    report.tree_size = head.tree_size

    start, frontier = 0, FrontierStore()
    if checkpoint is not None:
        old = SignedTreeHead.from_dict(checkpoint["tree_head"]).head
        if head.tree_size < old.tree_size:
            report.fail(f"the log shrank from {old.tree_size} to {head.tree_size} entries: history was rewritten")
            return report
        proof = client.json(
            "GET", "/v1/audit/proof/consistency", params={"old_size": old.tree_size, "new_size": head.tree_size}
        )
        if not verify_consistency(
            old.tree_size, head.tree_size, old.root_hash, head.root_hash, [bytes.fromhex(h) for h in proof["proof"]]
        ):
            report.fail(
                f"the log at size {head.tree_size} is not an extension of the log this client saw at size "
                f"{old.tree_size}: history was rewritten"
            )
            return report
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
