"""Signed tree heads: signing, verification, strict JSON, and their refusals."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.jcs import MAX_SAFE_INTEGER, canonicalize
from signing.merkle import EMPTY_ROOT, InMemoryNodeStore, MerkleLog, verify_consistency, verify_inclusion
from signing.tree_head import (
    MAX_TREE_HEAD_JSON,
    TREE_HEAD_TYPE,
    SignedTreeHead,
    TreeHead,
    TreeHeadError,
    TreeHeadSignatureError,
    UnsupportedKeyError,
    sign_tree_head,
    verify_tree_head,
)

ED_KEY = Ed25519PrivateKey.generate()
P256_KEY = ec.generate_private_key(ec.SECP256R1())
ROOT = bytes(range(32))


def _head(**changes: Any) -> TreeHead:
    fields: dict[str, Any] = {
        "tree_size": 42,
        "root_hash": ROOT,
        "timestamp": 1_700_000_000_123,
        "log_id": "mir.example/audit",
        "key_id": "sha256:" + "ab" * 32,
    }
    fields.update(changes)
    return TreeHead(**fields)


def _signed_dict(**changes: Any) -> dict[str, Any]:
    data = sign_tree_head(_head(), ED_KEY).to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize("key", [ED_KEY, P256_KEY], ids=["ed25519", "p256"])
def test_sign_verify_round_trip(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
    head = _head()
    signed = sign_tree_head(head, key)
    assert verify_tree_head(signed, key.public_key()) == head
    assert verify_tree_head(signed, key.public_key(), log_id=head.log_id, key_id=head.key_id) == head
    parsed = SignedTreeHead.from_json(signed.to_json())
    assert parsed == signed
    assert verify_tree_head(parsed, key.public_key()) == head
    assert SignedTreeHead.from_json(signed.to_json().decode()) == signed


def test_signing_bytes_are_jcs_with_a_type_tag() -> None:
    head = _head()
    assert head.signing_bytes() == canonicalize(head.to_dict())
    assert json.loads(head.signing_bytes()) == {
        "type": TREE_HEAD_TYPE,
        "tree_size": 42,
        "root_hash": ROOT.hex(),
        "timestamp": 1_700_000_000_123,
        "log_id": "mir.example/audit",
        "key_id": "sha256:" + "ab" * 32,
    }
    assert head.signing_bytes().startswith(b'{"key_id":')
    assert head.root_hash_hex == ROOT.hex()
    assert TreeHead.from_dict(head.to_dict()) == head


@pytest.mark.parametrize("key", [ED_KEY, P256_KEY], ids=["ed25519", "p256"])
@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 43},
        {"root_hash": bytes(32)},
        {"timestamp": 1},
        {"log_id": "other.log"},
        {"key_id": "other-key"},
    ],
)
def test_any_changed_field_breaks_the_signature(
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, change: dict[str, Any]
) -> None:
    signed = sign_tree_head(_head(), key)
    forged = SignedTreeHead(_head(**change), signed.signature)
    with pytest.raises(TreeHeadSignatureError, match="does not verify"):
        verify_tree_head(forged, key.public_key())
    # And through JSON, as a tamperer would do it.
    data = json.loads(signed.to_json())
    data[next(iter(change))] = _head(**change).to_dict()[next(iter(change))]
    with pytest.raises(TreeHeadSignatureError):
        verify_tree_head(SignedTreeHead.from_json(json.dumps(data)), key.public_key())


def test_wrong_key_and_wrong_ids_are_refused() -> None:
    signed = sign_tree_head(_head(), ED_KEY)
    with pytest.raises(TreeHeadSignatureError, match="does not verify"):
        verify_tree_head(signed, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(TreeHeadSignatureError, match="does not verify"):
        verify_tree_head(signed, P256_KEY.public_key())
    with pytest.raises(TreeHeadSignatureError, match="expected 'other'"):
        verify_tree_head(signed, ED_KEY.public_key(), log_id="other")
    with pytest.raises(TreeHeadSignatureError, match="names key"):
        verify_tree_head(signed, ED_KEY.public_key(), key_id="other")
    flipped = SignedTreeHead(signed.head, bytes([signed.signature[0] ^ 1]) + signed.signature[1:])
    with pytest.raises(TreeHeadSignatureError):
        verify_tree_head(flipped, ED_KEY.public_key())


def test_unsupported_keys_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(UnsupportedKeyError, match="P-256, not secp384r1"):
        sign_tree_head(_head(), p384)
    signed = sign_tree_head(_head(), P256_KEY)
    with pytest.raises(UnsupportedKeyError, match="P-256"):
        verify_tree_head(signed, p384.public_key())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(UnsupportedKeyError, match="RSAPrivateKey"):
        sign_tree_head(_head(), rsa_key)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedKeyError, match="RSAPublicKey"):
        verify_tree_head(signed, rsa_key.public_key())  # type: ignore[arg-type]
    with pytest.raises(UnsupportedKeyError):
        sign_tree_head(_head(), Ed448PrivateKey.generate())  # type: ignore[arg-type]
    with pytest.raises(UnsupportedKeyError):
        verify_tree_head(signed, ED_KEY)  # type: ignore[arg-type]  # a private key is not a public key
    with pytest.raises(TreeHeadError, match="expected a SignedTreeHead"):
        verify_tree_head(signed.to_dict(), ED_KEY.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tree_size": -1}, "out of range"),
        ({"tree_size": MAX_SAFE_INTEGER + 1}, "out of range"),
        ({"tree_size": True}, "must be an integer, got bool"),
        ({"timestamp": 1.5}, "must be an integer, got float"),
        ({"root_hash": b"\x00" * 31}, "root_hash must be 32 bytes"),
        ({"root_hash": ROOT.hex()}, "root_hash must be 32 bytes"),
        ({"log_id": ""}, "printable ASCII"),
        ({"log_id": "has space"}, "printable ASCII"),
        ({"key_id": "x" * 257}, "printable ASCII"),
        ({"key_id": "naïve"}, "printable ASCII"),
        ({"key_id": 7}, "must be a string"),
        ({"tree_size": 0}, "empty-tree root"),
    ],
)
def test_tree_head_construction_is_validated(change: dict[str, Any], message: str) -> None:
    with pytest.raises(TreeHeadError, match=message):
        _head(**change)


def test_empty_tree_head_and_signature_bounds() -> None:
    assert _head(tree_size=0, root_hash=EMPTY_ROOT).tree_size == 0
    with pytest.raises(TreeHeadError, match="signature must be 1 to 512 bytes"):
        SignedTreeHead(_head(), b"")
    with pytest.raises(TreeHeadError, match="head must be a TreeHead"):
        SignedTreeHead(_head().to_dict(), b"sig")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_signed_dict(extra=1), "unknown members extra"),
        ({k: v for k, v in _signed_dict().items() if k != "timestamp"}, "missing timestamp"),
        ({k: v for k, v in _signed_dict().items() if k != "signature"}, "missing signature"),
        (_signed_dict(type="mir.tree-head.v2"), "type must be"),
        (_signed_dict(tree_size="42"), "tree_size must be an integer, got str"),
        (_signed_dict(tree_size=42.0), "tree_size must be an integer, got float"),
        (_signed_dict(tree_size=False), "must be an integer, got bool"),
        (_signed_dict(timestamp=None), "timestamp must be an integer, got NoneType"),
        (_signed_dict(root_hash=ROOT.hex().upper()), "64 lowercase hex"),
        (_signed_dict(root_hash=ROOT.hex()[:-2]), "64 lowercase hex"),
        (_signed_dict(root_hash="zz" * 32), "64 lowercase hex"),
        (_signed_dict(root_hash=" " + ROOT.hex()[1:]), "64 lowercase hex"),
        (_signed_dict(root_hash=list(ROOT)), "64 lowercase hex"),
        (_signed_dict(log_id=["x"]), "log_id must be a string"),
        (_signed_dict(signature="not base64!"), "not valid base64"),
        (_signed_dict(signature="QUJD"[:3]), "not valid base64"),
        (_signed_dict(signature="QUJDRA"), "not valid base64"),
        (_signed_dict(signature=""), "non-empty"),
        (_signed_dict(signature=123), "signature must be a base64 string"),
        (_signed_dict(signature="A" * 2000), "too long"),
        (_signed_dict(signature="é"), "not valid base64"),
        ([1, 2, 3], "must be a JSON object, got list"),
        ("head", "must be a JSON object, got str"),
    ],
)
def test_strict_parsing_refuses_bad_members(data: Any, message: str) -> None:
    with pytest.raises(TreeHeadError, match=message):
        SignedTreeHead.from_dict(data)
    with pytest.raises(TreeHeadError, match=message):
        SignedTreeHead.from_json(json.dumps(data))


def test_non_canonical_base64_is_refused() -> None:
    sig = base64.b64encode(b"\xff\xff").decode()  # "//8="
    assert SignedTreeHead.from_dict(_signed_dict(signature=sig)).signature == b"\xff\xff"
    with pytest.raises(TreeHeadError, match="canonical"):
        SignedTreeHead.from_dict(_signed_dict(signature="//9="))  # same bytes, non-zero padding bits


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff", "not valid UTF-8"),
        (b'{"tree_size": 1, "tree_size": 2}', "duplicate object key"),
        (b'{"tree_size": NaN}', "NaN is not a JSON number"),
        (b" " * (MAX_TREE_HEAD_JSON + 1), "larger than"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        (b"null", "must be a JSON object, got NoneType"),
    ],
)
def test_strict_json_parsing(data: bytes, message: str) -> None:
    with pytest.raises(TreeHeadError, match=message):
        SignedTreeHead.from_json(data)


def test_from_json_refuses_non_text() -> None:
    with pytest.raises(TreeHeadError, match="bytes or str"):
        SignedTreeHead.from_json(42)  # type: ignore[arg-type]


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_fail_only_with_tree_head_error(data: bytes) -> None:
    with contextlib.suppress(TreeHeadError):
        SignedTreeHead.from_json(data)


@given(
    st.dictionaries(
        st.sampled_from(["type", "tree_size", "root_hash", "timestamp", "log_id", "key_id", "signature", "x"]),
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    )
)
@settings(max_examples=300, deadline=None)
def test_arbitrary_objects_fail_only_with_tree_head_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(TreeHeadError):
        SignedTreeHead.from_dict(data)


@given(
    size=st.integers(min_value=1, max_value=MAX_SAFE_INTEGER),
    root=st.binary(min_size=32, max_size=32),
    timestamp=st.integers(min_value=0, max_value=MAX_SAFE_INTEGER),
    log_id=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
)
@settings(max_examples=100, deadline=None)
def test_valid_heads_round_trip(size: int, root: bytes, timestamp: int, log_id: str) -> None:
    head = TreeHead(tree_size=size, root_hash=root, timestamp=timestamp, log_id=log_id, key_id="k1")
    signed = sign_tree_head(head, ED_KEY)
    assert SignedTreeHead.from_json(signed.to_json()) == signed
    assert verify_tree_head(SignedTreeHead.from_json(signed.to_json()), ED_KEY.public_key()) == head


def test_end_to_end_with_a_merkle_log() -> None:
    """What a verifier does: check two signed heads, then inclusion and consistency against them."""
    log = MerkleLog(InMemoryNodeStore())
    entries = [canonicalize({"event": "push", "n": i}) for i in range(37)]
    log.append_many(entries[:20])
    old = sign_tree_head(TreeHead(20, log.root(), 1, "mir.audit", "k1"), P256_KEY)
    log.append_many(entries[20:])
    new = sign_tree_head(TreeHead(37, log.root(), 2, "mir.audit", "k1"), P256_KEY)

    old_head = verify_tree_head(SignedTreeHead.from_json(old.to_json()), P256_KEY.public_key())
    new_head = verify_tree_head(SignedTreeHead.from_json(new.to_json()), P256_KEY.public_key())
    proof = log.inclusion_proof(7, new_head.tree_size)
    assert verify_inclusion(log.leaf(7), 7, new_head.tree_size, proof, new_head.root_hash)
    consistency = log.consistency_proof(old_head.tree_size, new_head.tree_size)
    assert verify_consistency(
        old_head.tree_size, new_head.tree_size, old_head.root_hash, new_head.root_hash, consistency
    )
