"""Signed tree heads: the registry's signed statement "my audit log had this root at this size".

A tree head is signed over its RFC 8785 (JCS) canonical bytes, which include a
fixed ``type`` member so that a tree-head signature can never be replayed as a
signature over any other JSON document the same key signs. Anyone holding the
log's public key can check a head offline, then use
:func:`signing.merkle.verify_inclusion` / :func:`signing.merkle.verify_consistency`
against its root.

Keys are ``cryptography`` key objects: Ed25519, or ECDSA on P-256 with SHA-256
(DER signatures). Other key types and curves are refused.

Errors: malformed data raises :class:`TreeHeadError`; an unsupported key raises
:class:`UnsupportedKeyError`; a signature that does not verify raises
:class:`TreeHeadSignatureError`. Verification never answers with a boolean that
could be ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from signing.jcs import MAX_SAFE_INTEGER, JCSError, canonicalize, loads
from signing.merkle import EMPTY_ROOT, HASH_SIZE

__all__ = [
    "MAX_TREE_HEAD_JSON",
    "TREE_HEAD_TYPE",
    "SignedTreeHead",
    "TreeHead",
    "TreeHeadError",
    "TreeHeadSignatureError",
    "UnsupportedKeyError",
    "sign_tree_head",
    "verify_tree_head",
]

TREE_HEAD_TYPE = "mir.tree-head.v1"
MAX_TREE_HEAD_JSON = 16 * 1024
MAX_ID_LENGTH = 256
MAX_SIGNATURE_SIZE = 512

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey

_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[\x21-\x7e]+")
_HEAD_FIELDS = frozenset({"type", "tree_size", "root_hash", "timestamp", "log_id", "key_id"})
_SIGNED_FIELDS = _HEAD_FIELDS | {"signature"}


class TreeHeadError(ValueError):
    """A tree head (or its JSON) that is malformed."""


class UnsupportedKeyError(TreeHeadError):
    """A key that is neither Ed25519 nor ECDSA P-256."""


class TreeHeadSignatureError(TreeHeadError):
    """A tree head signature that does not verify under the given key."""


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TreeHeadError(f"tree head {name} must be an integer, got {type(value).__name__}")
    if value < 0 or value > MAX_SAFE_INTEGER:
        raise TreeHeadError(f"tree head {name} {value} is out of range [0, 2**53 - 1]")
    return value


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TreeHeadError(f"tree head {name} must be a string, got {type(value).__name__}")
    if not 0 < len(value) <= MAX_ID_LENGTH or not _ID.fullmatch(value):
        raise TreeHeadError(f"tree head {name} must be 1 to {MAX_ID_LENGTH} printable ASCII characters, no spaces")
    return value


@dataclass(frozen=True, slots=True)
class TreeHead:
    """An unsigned tree head. ``timestamp`` is milliseconds since the Unix epoch (as in RFC 9162)."""

    tree_size: int
    root_hash: bytes
    timestamp: int
    log_id: str
    key_id: str

    def __post_init__(self) -> None:
        _check_count("tree_size", self.tree_size)
        _check_count("timestamp", self.timestamp)
        _check_id("log_id", self.log_id)
        _check_id("key_id", self.key_id)
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise TreeHeadError(f"tree head root_hash must be {HASH_SIZE} bytes")
        if self.tree_size == 0 and self.root_hash != EMPTY_ROOT:
            raise TreeHeadError("a tree head of size 0 must carry the empty-tree root (SHA-256 of nothing)")

    @property
    def root_hash_hex(self) -> str:
        return self.root_hash.hex()

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": TREE_HEAD_TYPE,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "log_id": self.log_id,
            "key_id": self.key_id,
        }

    def signing_bytes(self) -> bytes:
        """The exact bytes a signature covers: JCS of :meth:`to_dict`."""
        return canonicalize(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> TreeHead:
        """Parse the unsigned form, refusing missing, extra or mistyped members."""
        return cls._from_mapping(data, _HEAD_FIELDS)

    @classmethod
    def _from_mapping(cls, data: object, fields: frozenset[str]) -> TreeHead:
        if not isinstance(data, Mapping):
            raise TreeHeadError(f"tree head must be a JSON object, got {type(data).__name__}")
        keys = set(data)
        missing = sorted(fields - keys)
        extra = sorted(str(k) for k in keys - fields)
        if missing:
            raise TreeHeadError(f"tree head is missing {', '.join(missing)}")
        if extra:
            raise TreeHeadError(f"tree head has unknown members {', '.join(extra)}")
        if data["type"] != TREE_HEAD_TYPE:
            raise TreeHeadError(f"tree head type must be {TREE_HEAD_TYPE!r}, got {data['type']!r}")
        root_hex = data["root_hash"]
        if not isinstance(root_hex, str) or not _HEX_HASH.fullmatch(root_hex):
            raise TreeHeadError("tree head root_hash must be 64 lowercase hex characters")
        return cls(
            tree_size=_check_count("tree_size", data["tree_size"]),
            root_hash=bytes.fromhex(root_hex),
            timestamp=_check_count("timestamp", data["timestamp"]),
            log_id=_check_id("log_id", data["log_id"]),
            key_id=_check_id("key_id", data["key_id"]),
        )


def _decode_signature(value: object) -> bytes:
    if not isinstance(value, str):
        raise TreeHeadError(f"tree head signature must be a base64 string, got {type(value).__name__}")
    if len(value) > MAX_SIGNATURE_SIZE * 2:
        raise TreeHeadError("tree head signature is too long")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise TreeHeadError("tree head signature is not valid base64") from None
    if not raw or base64.b64encode(raw).decode("ascii") != value:
        raise TreeHeadError("tree head signature is not canonical, non-empty base64")
    return raw


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A tree head with the signature over its :meth:`TreeHead.signing_bytes`."""

    head: TreeHead
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.head, TreeHead):
            raise TreeHeadError("head must be a TreeHead")
        if not isinstance(self.signature, bytes) or not 0 < len(self.signature) <= MAX_SIGNATURE_SIZE:
            raise TreeHeadError(f"signature must be 1 to {MAX_SIGNATURE_SIZE} bytes")

    def to_dict(self) -> dict[str, Any]:
        return {**self.head.to_dict(), "signature": base64.b64encode(self.signature).decode("ascii")}

    def to_json(self) -> bytes:
        """Canonical (JCS) JSON bytes, suitable for storing and serving as-is."""
        return canonicalize(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> SignedTreeHead:
        head = TreeHead._from_mapping(data, _SIGNED_FIELDS)
        assert isinstance(data, Mapping)
        return cls(head=head, signature=_decode_signature(data["signature"]))

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedTreeHead:
        """Strict parse: size-capped UTF-8 JSON, no duplicate keys, exactly the known members."""
        if not isinstance(data, bytes | str):
            raise TreeHeadError(f"tree head JSON must be bytes or str, got {type(data).__name__}")
        if len(data) > MAX_TREE_HEAD_JSON:
            raise TreeHeadError(f"tree head JSON is larger than {MAX_TREE_HEAD_JSON} bytes")
        try:
            value = loads(data)
        except JCSError as exc:
            raise TreeHeadError(f"tree head is not valid JSON: {exc}") from None
        return cls.from_dict(value)


def _check_curve(curve: ec.EllipticCurve) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise UnsupportedKeyError(f"ECDSA keys must be on P-256, not {curve.name}")


def sign_tree_head(head: TreeHead, private_key: PrivateKey) -> SignedTreeHead:
    """Sign ``head`` with an Ed25519 or ECDSA P-256 private key."""
    message = head.signing_bytes()
    if isinstance(private_key, Ed25519PrivateKey):
        return SignedTreeHead(head, private_key.sign(message))
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        _check_curve(private_key.curve)
        return SignedTreeHead(head, private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    raise UnsupportedKeyError(f"cannot sign tree heads with a {type(private_key).__name__}")


def verify_tree_head(
    signed: SignedTreeHead,
    public_key: PublicKey,
    *,
    log_id: str | None = None,
    key_id: str | None = None,
) -> TreeHead:
    """Check the signature (and, if given, the expected log and key ids); return the head.

    Raises :class:`TreeHeadSignatureError` if the signature does not verify or an id
    does not match, :class:`UnsupportedKeyError` for other key types.
    """
    if not isinstance(signed, SignedTreeHead):
        raise TreeHeadError(f"expected a SignedTreeHead, got {type(signed).__name__}")
    head = signed.head
    message = head.signing_bytes()
    try:
        if isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signed.signature, message)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            _check_curve(public_key.curve)
            public_key.verify(signed.signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            raise UnsupportedKeyError(f"cannot verify tree heads with a {type(public_key).__name__}")
    except InvalidSignature:
        raise TreeHeadSignatureError(
            f"tree head signature does not verify (log {head.log_id}, size {head.tree_size})"
        ) from None
    if log_id is not None and head.log_id != log_id:
        raise TreeHeadSignatureError(f"tree head is for log {head.log_id!r}, expected {log_id!r}")
    if key_id is not None and head.key_id != key_id:
        raise TreeHeadSignatureError(f"tree head names key {head.key_id!r}, expected {key_id!r}")
    return head
