"""RFC 9162 Merkle tree primitives over a store of complete subtree hashes.

The audit log is an append-only list of entries; its tree is the RFC 9162
(Certificate Transparency v2) Merkle tree: ``leaf = SHA-256(0x00 || entry)``,
``node = SHA-256(0x01 || left || right)``, and ``MTH(D[n])`` splits at the
largest power of two below ``n``.

Storage design (why this module is more than the RFC recursion): only
*perfect, aligned* subtrees are ever stored. Node ``(level, index)`` covers the
leaves ``[index * 2**level, (index + 1) * 2**level)`` and is written once, when
its last leaf is appended; it never changes afterwards. Every range the RFC
hashes for a tree of any size (the root, each PATH sibling, each PROOF node) is
``MTH`` of a range that starts on a multiple of a power of two at least as
large as the range, so it decomposes into at most ``log2(n) + 1`` stored
perfect subtrees, folded right to left with :func:`node_hash`. Hence:

* appending leaf ``i`` writes ``1 + trailing_ones(i)`` nodes (amortised 2,
  worst ``log2(n) + 1``) and reads nothing once the log's frontier is cached;
* a root, an inclusion proof or a consistency proof reads ``O(log n)`` nodes,
  all named up front by :func:`root_keys`, :func:`inclusion_proof_keys` and
  :func:`consistency_proof_keys`, so an SQL store answers in one query.

Verification (:func:`verify_inclusion`, :func:`verify_consistency`) follows
RFC 9162 §2.1.3.2 and §2.1.4.2 and needs no store. Contract: inputs that are
malformed whatever the hashes (wrong types, hashes that are not 32 bytes,
sizes or indices out of range, a proof whose length does not match the sizes)
raise :class:`ProofError`; a well-formed proof whose hashes do not check out
returns ``False``. Both outcomes mean "not proven".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "InMemoryNodeStore",
    "MerkleError",
    "MerkleLog",
    "MerkleRangeError",
    "NodeKey",
    "NodeStore",
    "ProofError",
    "StoreError",
    "consistency_proof_keys",
    "consistency_proof_size",
    "inclusion_proof_keys",
    "inclusion_proof_size",
    "leaf_hash",
    "mth",
    "node_hash",
    "root_keys",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_TREE_SIZE = 1 << 62  # far beyond any log; keeps levels below 63 for SQL integer columns

NodeKey = tuple[int, int]
"""``(level, index)``: the perfect subtree over leaves ``[index << level, (index + 1) << level)``."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleError(Exception):
    """Base class for every error this module raises."""


class ProofError(MerkleError, ValueError):
    """A proof or verification input that is malformed regardless of its hashes."""


class MerkleRangeError(MerkleError, ValueError):
    """A request for a size, index or range the log does not (yet) have."""


class StoreError(MerkleError):
    """The node store is missing a node it must have, holds a bad hash, or was asked to rewrite one."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 leaf hash: ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 ``MTH`` of a whole list of leaf hashes, in O(n) time and O(log n) memory."""
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        level, acc = 0, h
        while stack and stack[-1][0] == level:
            acc = node_hash(stack.pop()[1], acc)
            level += 1
        stack.append((level, acc))
    return _fold([h for _, h in stack])


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Combine perfect subtrees (left to right, strictly decreasing sizes) into their MTH."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


# ---------------------------------------------------------------- range arithmetic


def _largest_pow2_below(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``): RFC 9162's split point ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_keys(start: int, end: int) -> list[NodeKey]:
    """The stored perfect subtrees whose fold is ``MTH(D[start:end])``, left to right.

    Valid for every range the RFC hashes: ``start`` is a multiple of a power of two
    at least ``end - start``, so each piece below is aligned.
    """
    keys: list[NodeKey] = []
    remaining = end - start
    pos = start
    while remaining:
        level = remaining.bit_length() - 1  # largest piece first
        assert pos & ((1 << level) - 1) == 0, f"range [{start}, {end}) is not a tree range"
        keys.append((level, pos >> level))
        pos += 1 << level
        remaining -= 1 << level
    return keys


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form ``PATH(index, D[size])``, in proof order (bottom-up)."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _largest_pow2_below(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form ``PROOF(old_size, D[new_size])`` (RFC 9162 §2.1.4.1), in order."""
    ranges: list[tuple[int, int]] = []
    if old_size == 0 or old_size == new_size:
        return ranges
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        if m == hi - lo:
            if not complete:
                ranges.append((lo, hi))
            break
        mid = lo + _largest_pow2_below(hi - lo)
        if m <= mid - lo:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            m -= mid - lo
            lo = mid
            complete = False
    ranges.reverse()
    return ranges


def _check_size(name: str, value: int, error: type[MerkleError]) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value > MAX_TREE_SIZE:
        raise error(f"{name} {value} is out of range [0, 2**62]")


def _unique(keys: Iterable[NodeKey]) -> list[NodeKey]:
    return sorted(set(keys))


def root_keys(size: int) -> list[NodeKey]:
    """Node keys needed for the root of a tree of ``size`` leaves (also the append frontier)."""
    _check_size("size", size, MerkleRangeError)
    return _subtree_keys(0, size)


def _inclusion_plan(index: int, size: int) -> list[list[NodeKey]]:
    _check_size("index", index, MerkleRangeError)
    _check_size("size", size, MerkleRangeError)
    if index >= size:
        raise MerkleRangeError(f"leaf index {index} is not in a tree of size {size}")
    return [_subtree_keys(lo, hi) for lo, hi in _inclusion_ranges(index, size)]


def _consistency_plan(old_size: int, new_size: int) -> list[list[NodeKey]]:
    _check_size("old_size", old_size, MerkleRangeError)
    _check_size("new_size", new_size, MerkleRangeError)
    if old_size > new_size:
        raise MerkleRangeError(f"old size {old_size} is larger than new size {new_size}")
    return [_subtree_keys(lo, hi) for lo, hi in _consistency_ranges(old_size, new_size)]


def inclusion_proof_keys(index: int, size: int) -> list[NodeKey]:
    """Node keys needed for the inclusion proof of leaf ``index`` in a tree of ``size`` leaves."""
    return _unique(k for keys in _inclusion_plan(index, size) for k in keys)


def consistency_proof_keys(old_size: int, new_size: int) -> list[NodeKey]:
    """Node keys needed for the consistency proof between tree sizes ``old_size <= new_size``."""
    return _unique(k for keys in _consistency_plan(old_size, new_size) for k in keys)


def inclusion_proof_size(index: int, size: int) -> int:
    """Number of hashes in a valid inclusion proof for ``(index, size)``."""
    return len(_inclusion_ranges(index, size))


def consistency_proof_size(old_size: int, new_size: int) -> int:
    """Number of hashes in a valid consistency proof between ``old_size`` and ``new_size``."""
    return len(_consistency_ranges(old_size, new_size))


# ---------------------------------------------------------------- verification


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise ProofError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes, got {len(value)}")
    return bytes(value)


def _check_proof(proof: object, expected: int, what: str) -> list[bytes]:
    if not isinstance(proof, list | tuple):
        raise ProofError(f"{what} proof must be a list of hashes, got {type(proof).__name__}")
    if len(proof) != expected:
        raise ProofError(f"{what} proof has {len(proof)} hashes; these tree sizes need exactly {expected}")
    return [_check_hash(f"{what} proof[{i}]", p) for i, p in enumerate(proof)]


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show leaf ``index`` of a ``tree_size`` tree is ``leaf_hash``?

    :class:`ProofError` for malformed input (see module doc); ``False`` for a wrong proof.
    As in the RFC, the proof binds the leaf and index to ``root`` but not the size by
    itself (index 0 of sizes 3 and 4 fold identically): take ``root`` and ``tree_size``
    together from one verified signed tree head.
    """
    leaf = _check_hash("leaf hash", leaf_hash)
    expected_root = _check_hash("root", root)
    _check_size("index", index, ProofError)
    _check_size("tree size", tree_size, ProofError)
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not in a tree of size {tree_size}")
    path = _check_proof(proof, inclusion_proof_size(index, tree_size), "inclusion")

    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the ``new_size`` tree extends the ``old_size`` one?

    ``old_size == new_size`` needs an empty proof and equal roots; ``old_size == 0``
    needs an empty proof and ``old_root`` equal to the empty-tree hash (every tree
    extends the empty one). :class:`ProofError` for malformed input; ``False`` for a
    wrong proof.
    """
    first_hash = _check_hash("old root", old_root)
    second_hash = _check_hash("new root", new_root)
    _check_size("old size", old_size, ProofError)
    _check_size("new size", new_size, ProofError)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    path = _check_proof(proof, consistency_proof_size(old_size, new_size), "consistency")
    if old_size == 0:
        return first_hash == EMPTY_ROOT and (new_size > 0 or second_hash == EMPTY_ROOT)
    if old_size == new_size:
        return first_hash == second_hash

    if old_size & (old_size - 1) == 0:  # exact power of two: the old root is itself a proof node
        path = [first_hash, *path]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---------------------------------------------------------------- storage


@runtime_checkable
class NodeStore(Protocol):
    """Where complete subtree hashes live. The registry implements this over an SQL table.

    Nodes are immutable: once ``(level, index)`` holds a hash it must never change.
    """

    def get(self, level: int, index: int) -> bytes:
        """The hash of node ``(level, index)``; raise :class:`StoreError` if it is absent."""
        ...

    def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        """Hashes of the requested nodes that exist (absent keys are simply left out)."""
        ...

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        """Store new nodes atomically; rewriting a node with a *different* hash must raise."""
        ...


class InMemoryNodeStore:
    """A compact :class:`NodeStore` for tests and benches: one ``bytearray`` per level.

    Each level is append-only (32 bytes per node, no per-node objects), which is
    exactly how :class:`MerkleLog` writes; a put that would leave a gap raises.
    Re-putting an existing node with the same hash is accepted (idempotent retry).
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels) // HASH_SIZE

    def count(self, level: int) -> int:
        """How many nodes are stored at ``level``."""
        return len(self._levels[level]) // HASH_SIZE if 0 <= level < len(self._levels) else 0

    def get(self, level: int, index: int) -> bytes:
        if level < 0 or index < 0 or index >= self.count(level):
            raise StoreError(f"node ({level}, {index}) is not in the store")
        return bytes(self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        found: dict[NodeKey, bytes] = {}
        for level, index in keys:
            if 0 <= index < self.count(level):
                row = self._levels[level]
                found[(level, index)] = bytes(row[index * HASH_SIZE : (index + 1) * HASH_SIZE])
        return found

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        ordered = sorted(items.items())
        # Check everything first so a refused batch leaves the store untouched.
        pending: dict[int, int] = {}
        for (level, index), value in ordered:
            if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
                raise StoreError(f"node ({level}, {index}) must be a {HASH_SIZE}-byte hash")
            if level < 0 or index < 0:
                raise StoreError(f"node key ({level}, {index}) is negative")
            pending.setdefault(level, self.count(level))
            if index < self.count(level):
                if self.get(level, index) != value:
                    raise StoreError(f"node ({level}, {index}) is already stored with a different hash")
            elif index == pending[level]:
                pending[level] += 1
            else:
                raise StoreError(f"node ({level}, {index}) would leave a gap at level {level}")
        for (level, index), value in ordered:
            while len(self._levels) <= level:
                self._levels.append(bytearray())
            if index == self.count(level):
                self._levels[level] += value


class MerkleLog:
    """An append-only RFC 9162 log over a :class:`NodeStore`.

    ``size`` is the number of leaves already in the store (the registry reads it
    from its entries table inside the transaction that holds the log's lock). One
    writer at a time: the instance caches the frontier (the perfect subtrees of
    the current tree) after its first append, so later appends read nothing.
    """

    def __init__(self, store: NodeStore, size: int = 0) -> None:
        _check_size("size", size, MerkleRangeError)
        self._store = store
        self._size = size
        self._frontier: list[tuple[int, int, bytes]] | None = None

    @property
    def size(self) -> int:
        return self._size

    @property
    def store(self) -> NodeStore:
        return self._store

    def _fetch(self, keys: Sequence[NodeKey], tree_size: int) -> dict[NodeKey, bytes]:
        if not keys:
            return {}
        found = self._store.get_many(keys)
        for key in keys:
            value = found.get(key)
            if value is None:
                raise StoreError(f"node {key} is missing from the store of a log of size {tree_size}")
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise StoreError(f"node {key} in the store is not a {HASH_SIZE}-byte hash")
        return found

    def _load_frontier(self) -> list[tuple[int, int, bytes]]:
        if self._frontier is None:
            keys = root_keys(self._size)
            nodes = self._fetch(keys, self._size)
            self._frontier = [(level, index, nodes[(level, index)]) for level, index in keys]
        return self._frontier

    def append(self, entry: bytes) -> tuple[int, bytes]:
        """Append one entry; returns its leaf index and leaf hash."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[bytes]) -> list[tuple[int, bytes]]:
        """Append entries with one ``put_many``; returns ``(index, leaf_hash)`` for each.

        Writes the leaves plus every subtree they complete: amortised 2 nodes per
        entry, at most ``log2(n) + 1`` for one entry.
        """
        stack = list(self._load_frontier())
        writes: dict[NodeKey, bytes] = {}
        results: list[tuple[int, bytes]] = []
        size = self._size
        for entry in entries:
            if not isinstance(entry, bytes | bytearray):
                raise TypeError(f"log entries must be bytes, got {type(entry).__name__}")
            if size >= MAX_TREE_SIZE:
                raise MerkleRangeError("the log is full")
            h = leaf_hash(bytes(entry))
            results.append((size, h))
            writes[(0, size)] = h
            level, index, acc = 0, size, h
            while stack and stack[-1][0] == level:
                acc = node_hash(stack.pop()[2], acc)
                level += 1
                index >>= 1
                writes[(level, index)] = acc
            stack.append((level, index, acc))
            size += 1
        if writes:
            self._store.put_many(writes)
        self._size = size
        self._frontier = stack
        return results

    def _check_tree_size(self, name: str, size: int) -> None:
        _check_size(name, size, MerkleRangeError)
        if size > self._size:
            raise MerkleRangeError(f"{name} {size} is larger than the log ({self._size} entries)")

    def root(self, size: int | None = None) -> bytes:
        """``MTH`` of the first ``size`` entries (default: the whole log)."""
        size = self._size if size is None else size
        self._check_tree_size("size", size)
        keys = root_keys(size)
        nodes = self._fetch(keys, size)
        return _fold([nodes[k] for k in keys])

    def leaf(self, index: int) -> bytes:
        """The leaf hash stored for entry ``index``."""
        _check_size("index", index, MerkleRangeError)
        if index >= self._size:
            raise MerkleRangeError(f"leaf index {index} is not in the log ({self._size} entries)")
        return self._fetch([(0, index)], self._size)[(0, index)]

    def _proof(self, plan: list[list[NodeKey]], size: int) -> list[bytes]:
        nodes = self._fetch(_unique(k for keys in plan for k in keys), size)
        return [_fold([nodes[k] for k in keys]) for keys in plan]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 ``PATH(index, D[size])`` from one batch read of ``O(log n)`` nodes."""
        size = self._size if size is None else size
        self._check_tree_size("size", size)
        return self._proof(_inclusion_plan(index, size), size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 ``PROOF(old_size, D[new_size])`` from one batch read of ``O(log n)`` nodes."""
        new_size = self._size if new_size is None else new_size
        self._check_tree_size("new size", new_size)
        return self._proof(_consistency_plan(old_size, new_size), new_size)
