"""DSSE envelopes (Dead Simple Signing Envelope, v1): PAE, signing, strict parsing.

A DSSE signature covers ``PAE(payloadType, payload)``, never the JSON around
it, so the envelope can be re-encoded (base64 variants, key order) without
invalidating anything and a signature for one payload type cannot be replayed
as another. See https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signing.keys import PrivateKey, PublicKey, key_id, sign_message, verify_message

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_SIGNATURES = 64
_STD_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_URL_B64 = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


class EnvelopeFormatError(ValueError):
    """A DSSE envelope whose structure or base64 fields are malformed."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: ``DSSEv1 <len type> <type> <len body> <body>`` (byte lengths)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64decode_field(value: object, field: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (DSSE allows both); refuse anything else."""
    if not isinstance(value, str):
        raise EnvelopeFormatError(f"{field} must be a base64 string, got {type(value).__name__}")
    if _STD_B64.match(value):
        text = value
    elif _URL_B64.match(value):
        text = value.replace("-", "+").replace("_", "/")
    else:
        raise EnvelopeFormatError(f"{field} is not base64")
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise EnvelopeFormatError(f"{field} is not base64 (bad length)")
    padded = stripped + "=" * (-len(stripped) % 4)
    if text != stripped and text != padded:
        raise EnvelopeFormatError(f"{field} is not base64 (bad padding)")
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the regexes above already filter
        raise EnvelopeFormatError(f"{field} is not base64: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature of an envelope; ``keyid`` is a hint only and never trusted."""

    sig: bytes
    keyid: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"sig": base64.b64encode(self.sig).decode("ascii"), "keyid": self.keyid}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A payload, its type, and one or more signatures over their PAE."""

    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape shared by DSSE and Sigstore bundles (``dsseEnvelope``)."""
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [s.to_dict() for s in self.signatures],
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls, data: object) -> Envelope:
        """Parse the JSON object form, raising EnvelopeFormatError for any deviation that matters."""
        if not isinstance(data, Mapping):
            raise EnvelopeFormatError("DSSE envelope must be a JSON object")
        for required in ("payload", "payloadType", "signatures"):
            if required not in data:
                raise EnvelopeFormatError(f"DSSE envelope has no {required!r}")
        payload = b64decode_field(data["payload"], "envelope payload")
        payload_type = data["payloadType"]
        if not isinstance(payload_type, str) or not payload_type:
            raise EnvelopeFormatError("envelope payloadType must be a non-empty string")
        raw_sigs = data["signatures"]
        if not isinstance(raw_sigs, list) or not raw_sigs:
            raise EnvelopeFormatError("envelope signatures must be a non-empty list")
        if len(raw_sigs) > MAX_SIGNATURES:
            raise EnvelopeFormatError(f"envelope has more than {MAX_SIGNATURES} signatures")
        signatures = []
        for index, item in enumerate(raw_sigs):
            if not isinstance(item, Mapping) or "sig" not in item:
                raise EnvelopeFormatError(f"envelope signature #{index} must be an object with 'sig'")
            keyid = item.get("keyid", "")
            if keyid is None:
                keyid = ""
            if not isinstance(keyid, str):
                raise EnvelopeFormatError(f"envelope signature #{index} keyid must be a string")
            sig = b64decode_field(item["sig"], f"envelope signature #{index}")
            if not sig:
                raise EnvelopeFormatError(f"envelope signature #{index} is empty")
            signatures.append(Signature(sig=sig, keyid=keyid))
        return cls(payload=payload, payload_type=payload_type, signatures=tuple(signatures))

    @classmethod
    def from_json(cls, data: bytes | str) -> Envelope:
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise EnvelopeFormatError(f"DSSE envelope is not valid JSON: {exc}") from exc
        return cls.from_dict(parsed)


def sign_envelope(payload: bytes, private_key: PrivateKey, payload_type: str = INTOTO_PAYLOAD_TYPE) -> Envelope:
    """A new envelope over ``payload`` with one signature; ``keyid`` is our :func:`key_id`."""
    signature = Signature(
        sig=sign_message(private_key, pae(payload_type, payload)), keyid=key_id(private_key.public_key())
    )
    return Envelope(payload=payload, payload_type=payload_type, signatures=(signature,))


def add_signature(envelope: Envelope, private_key: PrivateKey) -> Envelope:
    """The same envelope with one more signature (a countersignature over the same PAE)."""
    signature = Signature(sig=sign_message(private_key, envelope.pae()), keyid=key_id(private_key.public_key()))
    return Envelope(envelope.payload, envelope.payload_type, (*envelope.signatures, signature))


def verifying_keys(envelope: Envelope, public_keys: Iterable[PublicKey]) -> list[PublicKey]:
    """The keys among ``public_keys`` that made at least one valid signature of ``envelope``."""
    message = envelope.pae()
    keys = list(public_keys)
    return [k for k in keys if any(verify_message(k, s.sig, message) for s in envelope.signatures)]


def signed_json_payload(envelope: Any, key: PublicKey, payload_type: str) -> dict[str, Any] | None:
    """The JSON object a DSSE envelope (as parsed JSON) carries, if it is of ``payload_type`` and ``key`` signed
    it; None if it is anything else (malformed, another type, unsigned by ``key``, not a JSON object)."""
    try:
        env = Envelope.from_dict(envelope)
    except EnvelopeFormatError:
        return None
    if env.payload_type != payload_type or not any(verify_message(key, s.sig, env.pae()) for s in env.signatures):
        return None
    try:
        payload = json.loads(env.payload)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
