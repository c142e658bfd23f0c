"""RFC 9162 Merkle log: agreement with a naive reference, proof checks, tampering, and I/O bounds."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.merkle import (
    EMPTY_ROOT,
    InMemoryNodeStore,
    MerkleLog,
    MerkleRangeError,
    NodeKey,
    NodeStore,
    ProofError,
    StoreError,
    consistency_proof_keys,
    inclusion_proof_keys,
    leaf_hash,
    mth,
    node_hash,
    root_keys,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------- naive reference (RFC 9162 §2.1 text)

SMALL = 130
LARGE = 5000
ENTRIES = [f"entry {i}".encode() for i in range(LARGE)]


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def ref_mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) over ENTRIES, straight from the RFC's recursive definition."""
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + ENTRIES[lo]).digest()
    k = _split(n)
    return hashlib.sha256(b"\x01" + ref_mth(lo, lo + k) + ref_mth(lo + k, hi)).digest()


def ref_path(m: int, lo: int, hi: int) -> list[bytes]:
    n = hi - lo
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*ref_path(m, lo, lo + k), ref_mth(lo + k, hi)]
    return [*ref_path(m - k, lo + k, hi), ref_mth(lo, lo + k)]


def ref_subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if b else [ref_mth(lo, hi)]
    k = _split(n)
    if m <= k:
        return [*ref_subproof(m, lo, lo + k, b), ref_mth(lo + k, hi)]
    return [*ref_subproof(m - k, lo + k, hi, False), ref_mth(lo, lo + k)]


def ref_proof(m: int, n: int) -> list[bytes]:
    return ref_subproof(m, 0, n, True)


# ---------------------------------------------------------------- an instrumented store (real store inside)


class CountingStore:
    """A NodeStore that counts the I/O it is asked for, delegating to the in-memory store."""

    def __init__(self, inner: InMemoryNodeStore | None = None) -> None:
        self.inner = inner or InMemoryNodeStore()
        self.reset()

    def reset(self) -> None:
        self.get_calls = 0
        self.batch_calls = 0
        self.nodes_read = 0
        self.put_calls = 0
        self.nodes_written = 0

    def get(self, level: int, index: int) -> bytes:
        self.get_calls += 1
        self.nodes_read += 1
        return self.inner.get(level, index)

    def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        keys = list(keys)
        self.batch_calls += 1
        self.nodes_read += len(keys)
        return self.inner.get_many(keys)

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        self.put_calls += 1
        self.nodes_written += len(items)
        self.inner.put_many(items)


def _build(n: int, store: NodeStore | None = None) -> MerkleLog:
    log = MerkleLog(store if store is not None else InMemoryNodeStore())
    for entry in ENTRIES[:n]:
        log.append(entry)
    return log


@pytest.fixture(scope="module")
def small_log() -> MerkleLog:
    return _build(SMALL)


@pytest.fixture(scope="module")
def large_log() -> MerkleLog:
    log = MerkleLog(InMemoryNodeStore())
    log.append_many(ENTRIES)
    return log


def _rejected(check: object, *args: object) -> bool:
    """A verifier refused: it returned False or raised ProofError (both mean "not proven")."""
    assert callable(check)
    try:
        return check(*args) is False
    except ProofError:
        return True


def _flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


# ---------------------------------------------------------------- known answers


CT_ENTRIES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_certificate_transparency_test_vectors() -> None:
    # The 8-leaf tree used by the Certificate Transparency implementations' tests.
    log = MerkleLog(InMemoryNodeStore())
    log.append_many(CT_ENTRIES)
    assert [log.root(n).hex() for n in range(1, 9)] == CT_ROOTS
    assert log.root(0) == EMPTY_ROOT == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert [p.hex() for p in log.inclusion_proof(0, 8)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [p.hex() for p in log.consistency_proof(6, 8)] == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert [p.hex() for p in log.consistency_proof(2, 5)] == [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]


def test_hash_primitives_use_rfc_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert mth([]) == EMPTY_ROOT


# ---------------------------------------------------------------- exhaustive agreement for small trees


def test_roots_match_reference_for_every_size(small_log: MerkleLog) -> None:
    leaves = [leaf_hash(e) for e in ENTRIES[:SMALL]]
    for size in range(SMALL + 1):
        assert small_log.root(size) == ref_mth(0, size), size
        assert mth(leaves[:size]) == ref_mth(0, size), size
    assert small_log.root() == ref_mth(0, SMALL)
    assert small_log.leaf(SMALL - 1) == leaves[-1]


def test_inclusion_proofs_match_reference_verify_and_resist_tampering(small_log: MerkleLog) -> None:
    for size in range(1, SMALL + 1):
        root = ref_mth(0, size)
        for index in range(size):
            proof = small_log.inclusion_proof(index, size)
            assert proof == ref_path(index, 0, size), (index, size)
            leaf = ref_mth(index, index + 1)
            assert verify_inclusion(leaf, index, size, proof, root)
            # Every single-element corruption, a wrong leaf, a wrong root: False.
            for i in range(len(proof)):
                assert not verify_inclusion(leaf, index, size, [*proof[:i], _flip(proof[i]), *proof[i + 1 :]], root)
            assert not verify_inclusion(_flip(leaf), index, size, proof, root)
            assert not verify_inclusion(leaf, index, size, proof, _flip(root, 7))
            # Wrong position claimed for the same proof: never proven.
            if index + 1 < size:
                assert _rejected(verify_inclusion, leaf, index + 1, size, proof, root)
            if index > 0:
                assert _rejected(verify_inclusion, leaf, index - 1, size, proof, root)
            # The proof does not carry over to the real root of another size. (It can verify
            # a *wrong* size against this same root: e.g. index 0 of sizes 3 and 4 fold
            # identically. RFC 9162 binds size to root through the signed tree head.)
            assert _rejected(verify_inclusion, leaf, index, size + 1, proof, ref_mth(0, size + 1))
            if size - 1 > index:
                assert _rejected(verify_inclusion, leaf, index, size - 1, proof, ref_mth(0, size - 1))
            # Truncated, extended or reordered proofs.
            if proof:
                with pytest.raises(ProofError, match="need exactly"):
                    verify_inclusion(leaf, index, size, proof[:-1], root)
            with pytest.raises(ProofError, match="need exactly"):
                verify_inclusion(leaf, index, size, [*proof, root], root)
            if len(proof) > 1 and proof[0] != proof[1]:
                swapped = [proof[1], proof[0], *proof[2:]]
                assert not verify_inclusion(leaf, index, size, swapped, root)


def test_consistency_proofs_match_reference_verify_and_resist_tampering(small_log: MerkleLog) -> None:
    for new in range(SMALL + 1):
        new_root = ref_mth(0, new)
        for old in range(new + 1):
            old_root = ref_mth(0, old)
            proof = small_log.consistency_proof(old, new)
            expected = ref_proof(old, new) if 0 < old < new else []
            assert proof == expected, (old, new)
            assert verify_consistency(old, new, old_root, new_root, proof)
            if old > 0:
                assert not verify_consistency(old, new, _flip(old_root), new_root, proof)
            if 0 < old < new or old == new:
                assert not verify_consistency(old, new, old_root, _flip(new_root), proof)
            for i in range(len(proof)):
                bad = [*proof[:i], _flip(proof[i], 3), *proof[i + 1 :]]
                assert not verify_consistency(old, new, old_root, new_root, bad)
            if 0 < old < new:
                # The same proof does not prove a different pair of sizes.
                if old + 1 < new:
                    assert _rejected(verify_consistency, old + 1, new, ref_mth(0, old + 1), new_root, proof)
                if old > 1:
                    assert _rejected(verify_consistency, old - 1, new, ref_mth(0, old - 1), new_root, proof)
                with pytest.raises(ProofError, match="need exactly"):
                    verify_consistency(old, new, old_root, new_root, proof[:-1])
            with pytest.raises(ProofError, match="need exactly"):
                verify_consistency(old, new, old_root, new_root, [*proof, new_root])


def test_consistency_special_cases() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ref_mth(0, 5), [])
    assert not verify_consistency(0, 5, ref_mth(0, 1), ref_mth(0, 5), [])
    assert verify_consistency(7, 7, ref_mth(0, 7), ref_mth(0, 7), [])
    assert not verify_consistency(7, 7, ref_mth(0, 7), ref_mth(0, 6), [])
    # A tree that was rewritten (same size, different leaf) is not consistent with the honest one.
    forged = MerkleLog(InMemoryNodeStore())
    forged.append_many([*ENTRIES[:3], b"forged", *ENTRIES[4:20]])
    honest = _build(20)
    assert not verify_consistency(10, 20, honest.root(10), honest.root(20), forged.consistency_proof(10, 20))
    assert not verify_consistency(10, 20, forged.root(10), honest.root(20), forged.consistency_proof(10, 20))
    assert verify_consistency(10, 20, forged.root(10), forged.root(20), forged.consistency_proof(10, 20))


# ---------------------------------------------------------------- random larger trees


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_random_large_inclusion(large_log: MerkleLog, data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=LARGE), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = large_log.inclusion_proof(index, size)
    assert proof == ref_path(index, 0, size)
    root = large_log.root(size)
    assert root == ref_mth(0, size)
    assert verify_inclusion(leaf_hash(ENTRIES[index]), index, size, proof, root)
    assert not verify_inclusion(leaf_hash(b"not in the log"), index, size, proof, root)
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="tampered")
        proof[i] = _flip(proof[i], data.draw(st.integers(0, 7)))
        assert not verify_inclusion(leaf_hash(ENTRIES[index]), index, size, proof, root)


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_random_large_consistency(large_log: MerkleLog, data: st.DataObject) -> None:
    new = data.draw(st.integers(min_value=1, max_value=LARGE), label="new")
    old = data.draw(st.integers(min_value=1, max_value=new), label="old")
    proof = large_log.consistency_proof(old, new)
    assert proof == (ref_proof(old, new) if old < new else [])
    assert verify_consistency(old, new, large_log.root(old), large_log.root(new), proof)
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="tampered")
        proof[i] = _flip(proof[i], data.draw(st.integers(0, 7)))
        assert not verify_consistency(old, new, large_log.root(old), large_log.root(new), proof)


# ---------------------------------------------------------------- I/O bounds


def _log2(n: int) -> float:
    return math.log2(max(n, 2))


def test_proof_reads_are_one_batch_of_log_n_nodes() -> None:
    store = CountingStore()
    n = 1 << 14
    log = MerkleLog(store)
    log.append_many(f"e{i}".encode() for i in range(n + 123))
    sizes = [1, 2, 3, 5, 1000, 4095, 4096, 4097, 12345, n - 1, n, n + 1, n + 123]
    for size in sizes:
        bound = 2 * _log2(size) + 2
        for index in {i for i in (0, 1, size // 3, size // 2, size - 2, size - 1) if 0 <= i < size}:
            store.reset()
            proof = log.inclusion_proof(index, size)
            assert store.batch_calls == (1 if proof else 0) and store.get_calls == 0
            assert store.nodes_read == len(inclusion_proof_keys(index, size)) <= bound, (index, size)
            assert verify_inclusion(log.leaf(index), index, size, proof, log.root(size))
        for old in {o for o in (1, 2, size // 3, size // 2, size - 1, size) if 1 <= o <= size}:
            store.reset()
            proof = log.consistency_proof(old, size)
            assert store.batch_calls == (1 if proof else 0) and store.get_calls == 0
            assert store.nodes_read == len(consistency_proof_keys(old, size)) <= bound + 1, (old, size)
            assert verify_consistency(old, size, log.root(old), log.root(size), proof)
        store.reset()
        log.root(size)
        assert store.nodes_read == bin(size).count("1") <= _log2(size) + 1


@given(st.integers(min_value=1, max_value=1 << 62), st.data())
@settings(max_examples=300, deadline=None)
def test_key_counts_stay_logarithmic_for_huge_trees(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    old = data.draw(st.integers(min_value=0, max_value=size))
    bound = 2 * _log2(size) + 2
    inclusion = inclusion_proof_keys(index, size)
    consistency = consistency_proof_keys(old, size)
    assert len(inclusion) <= bound
    assert len(consistency) <= bound + 1
    assert len(root_keys(size)) <= _log2(size) + 1
    for level, node in [*inclusion, *consistency]:
        assert (node + 1) << level <= size  # only complete subtrees are ever read


def test_appends_write_log_n_nodes_and_read_nothing_once_warm() -> None:
    store = CountingStore()
    log = MerkleLog(store)
    n = 3000
    per_append = []
    for i in range(n):
        before = store.nodes_written
        index, h = log.append(ENTRIES[i])
        assert (index, h) == (i, leaf_hash(ENTRIES[i]))
        written = store.nodes_written - before
        # Leaf plus the subtrees it completes: 1 + trailing ones of i.
        assert written == 1 + (((i + 1) & -(i + 1)).bit_length() - 1)
        assert written <= _log2(i + 1) + 1
        per_append.append(written)
    assert store.nodes_read == 0 and store.put_calls == n
    assert sum(per_append) == 2 * n - bin(n).count("1")  # amortised < 2 writes per entry
    assert len(store.inner) == sum(per_append)


def test_a_fresh_writer_reads_only_the_frontier_once() -> None:
    base = InMemoryNodeStore()
    _build(1000, base)
    store = CountingStore(base)
    log = MerkleLog(store, size=1000)
    log.append(ENTRIES[1000])
    assert store.batch_calls == 1 and store.nodes_read == bin(1000).count("1")
    log.append(ENTRIES[1001])
    assert store.batch_calls == 1
    assert log.root() == ref_mth(0, 1002)


def test_append_many_equals_single_appends_and_resumes() -> None:
    one = _build(777)
    store = InMemoryNodeStore()
    log = MerkleLog(store)
    results = log.append_many(ENTRIES[:300])
    assert results == [(i, leaf_hash(ENTRIES[i])) for i in range(300)]
    resumed = MerkleLog(store, size=300)  # a new writer (e.g. next transaction) picks up the log
    resumed.append_many(ENTRIES[300:700])
    resumed.append_many([])
    for entry in ENTRIES[700:777]:
        resumed.append(entry)
    assert resumed.size == 777
    assert resumed.root() == one.root() == ref_mth(0, 777)
    assert resumed.inclusion_proof(5) == one.inclusion_proof(5, 777)


# ---------------------------------------------------------------- bad input and inconsistent stores


def test_store_refuses_rewrites_gaps_and_bad_hashes() -> None:
    store = InMemoryNodeStore()
    h = leaf_hash(b"x")
    store.put_many({(0, 0): h})
    store.put_many({(0, 0): h})  # idempotent retry
    with pytest.raises(StoreError, match=r"already stored with a different hash"):
        store.put_many({(0, 0): leaf_hash(b"y")})
    with pytest.raises(StoreError, match="gap"):
        store.put_many({(0, 2): h})
    with pytest.raises(StoreError, match="32-byte"):
        store.put_many({(0, 1): b"short"})
    with pytest.raises(StoreError, match="negative"):
        store.put_many({(-1, 0): h})
    # A refused batch changes nothing, even its valid members.
    with pytest.raises(StoreError, match="gap"):
        store.put_many({(0, 1): h, (0, 5): h})
    assert len(store) == 1 and store.count(0) == 1
    with pytest.raises(StoreError, match=r"node \(0, 1\) is not in the store"):
        store.get(0, 1)
    assert store.get_many([(0, 0), (0, 1), (-1, 0), (9, 0)]) == {(0, 0): h}
    assert isinstance(store, NodeStore)


def test_log_reports_missing_and_corrupt_nodes() -> None:
    log = MerkleLog(InMemoryNodeStore(), size=10)  # claims entries the store does not have
    with pytest.raises(StoreError, match=r"missing from the store of a log of size 10"):
        log.root()
    with pytest.raises(StoreError, match="missing"):
        log.append(b"x")

    class TruncatingStore(CountingStore):
        def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
            return {k: v[:31] for k, v in super().get_many(keys).items()}

    store = TruncatingStore()
    MerkleLog(store).append_many(ENTRIES[:5])
    with pytest.raises(StoreError, match="not a 32-byte hash"):
        MerkleLog(store, size=5).inclusion_proof(1)


def test_generation_rejects_out_of_range_requests(small_log: MerkleLog) -> None:
    with pytest.raises(MerkleRangeError, match="larger than the log"):
        small_log.root(SMALL + 1)
    with pytest.raises(MerkleRangeError, match="not in a tree of size 5"):
        small_log.inclusion_proof(5, 5)
    with pytest.raises(MerkleRangeError, match="larger than the log"):
        small_log.inclusion_proof(0, SMALL + 1)
    with pytest.raises(MerkleRangeError, match="larger than new size"):
        small_log.consistency_proof(6, 5)
    with pytest.raises(MerkleRangeError, match="out of range"):
        small_log.inclusion_proof(-1, 5)
    with pytest.raises(MerkleRangeError, match="must be an int"):
        small_log.root(True)
    with pytest.raises(MerkleRangeError, match="not in the log"):
        small_log.leaf(SMALL)
    with pytest.raises(MerkleRangeError, match="out of range"):
        MerkleLog(InMemoryNodeStore(), size=-1)
    store = InMemoryNodeStore()
    log = MerkleLog(store)
    with pytest.raises(TypeError, match="must be bytes"):
        log.append("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be bytes"):
        log.append_many([b"fine", None])  # type: ignore[list-item]
    assert log.size == 0 and len(store) == 0  # a refused batch writes nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((b"x" * 31, 0, 1, [], b"r" * 32), "leaf hash must be 32 bytes"),
        (("x" * 32, 0, 1, [], b"r" * 32), "leaf hash must be bytes"),
        ((b"x" * 32, 0, 1, [], b"r" * 33), "root must be 32 bytes"),
        ((b"x" * 32, 1, 1, [], b"r" * 32), "not in a tree of size 1"),
        ((b"x" * 32, 0, 0, [], b"r" * 32), "not in a tree of size 0"),
        ((b"x" * 32, -1, 3, [], b"r" * 32), "out of range"),
        ((b"x" * 32, 0, 2.0, [], b"r" * 32), "must be an int"),
        ((b"x" * 32, False, 2, [], b"r" * 32), "must be an int"),
        ((b"x" * 32, 0, 2, b"p" * 32, b"r" * 32), "must be a list"),
        ((b"x" * 32, 0, 2, [b"p" * 31], b"r" * 32), r"proof\[0\] must be 32 bytes"),
        ((b"x" * 32, 0, 2, [], b"r" * 32), "has 0 hashes; these tree sizes need exactly 1"),
        ((b"x" * 32, 0, 1 << 70, [], b"r" * 32), "out of range"),
    ],
)
def test_verify_inclusion_malformed_input(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 4, b"a" * 32, b"b" * 32, []), "larger than new size"),
        ((-1, 4, b"a" * 32, b"b" * 32, []), "out of range"),
        ((1, 4, b"a" * 31, b"b" * 32, [b"c" * 32] * 2), "old root must be 32 bytes"),
        ((1, 4, b"a" * 32, None, [b"c" * 32] * 2), "new root must be bytes"),
        ((1, 4, b"a" * 32, b"b" * 32, [b"c" * 32]), "has 1 hashes; these tree sizes need exactly 2"),
        ((3, 3, b"a" * 32, b"a" * 32, [b"c" * 32]), "need exactly 0"),
        ((0, 3, EMPTY_ROOT, b"a" * 32, [b"c" * 32]), "need exactly 0"),
        ((1, 4, b"a" * 32, b"b" * 32, [b"c" * 32, 7]), r"proof\[1\] must be bytes"),
    ],
)
def test_verify_consistency_malformed_input(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(*args)  # type: ignore[arg-type]
