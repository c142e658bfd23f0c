"""Sigstore bundle v0.3 JSON for key-based signatures, as OpenSSF model-signing writes it.

A key-signed bundle is just a DSSE envelope plus a hint of which public key made
it; there is no certificate and no transparency-log entry::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": <sha256 of the key's PEM>}, "tlogEntries": []},
     "dsseEnvelope": {"payload": <b64>, "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": <b64>, "keyid": <ours: key_id>}]}}

The hint is unauthenticated: verifiers use it to explain failures, never to
decide trust. Parsing is strict and size-bounded; anything malformed raises
:class:`BundleFormatError` with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signing.dsse import Envelope, EnvelopeFormatError
from signing.keys import PublicKey, key_hint

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
# The same version in the spelling newer Sigstore clients use.
BUNDLE_MEDIA_TYPES = (BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3")
MAX_BUNDLE_BYTES = 64 << 20
_HINT_RE = re.compile(r"^[0-9a-f]{64}$")


class BundleFormatError(ValueError):
    """Input that is not a key-based Sigstore bundle v0.3 we can read (truncated, altered shape...)."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle: the envelope, and the key hint if the bundle carries one."""

    envelope: Envelope
    key_hint: str | None

    def to_dict(self) -> dict[str, Any]:
        public_key: dict[str, Any] = {"hint": self.key_hint} if self.key_hint else {}
        return {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": public_key, "tlogEntries": []},
            "dsseEnvelope": self.envelope.to_dict(),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")


def build_bundle(envelope: Envelope, public_key: PublicKey) -> Bundle:
    """Wrap an envelope signed by ``public_key``'s private key in a bundle naming it."""
    return Bundle(envelope=envelope, key_hint=key_hint(public_key))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BundleFormatError(f"duplicate JSON key {key[:100]!r} in bundle")
        result[key] = value
    return result


def parse_bundle(data: bytes | str, *, source: str = "bundle") -> Bundle:
    """Parse a bundle's JSON text; raises BundleFormatError naming ``source`` and the problem."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"{source}: larger than {MAX_BUNDLE_BYTES} bytes")
    if not raw.strip():
        raise BundleFormatError(f"{source}: empty file")
    try:
        parsed = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except BundleFormatError as exc:
        raise BundleFormatError(f"{source}: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise BundleFormatError(f"{source}: not valid JSON (truncated or corrupted?): {exc}") from exc
    return bundle_from_dict(parsed, source=source)


def bundle_from_dict(parsed: object, *, source: str = "bundle") -> Bundle:
    """Check an already-decoded bundle object (see :func:`parse_bundle`)."""
    if not isinstance(parsed, Mapping):
        raise BundleFormatError(f"{source}: a bundle must be a JSON object")
    media_type = parsed.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise BundleFormatError(f"{source}: mediaType {str(media_type)[:100]!r} is not {BUNDLE_MEDIA_TYPE!r}")
    material = parsed.get("verificationMaterial")
    if not isinstance(material, Mapping):
        raise BundleFormatError(f"{source}: no verificationMaterial object")
    if "publicKey" not in material:
        if "certificate" in material or "x509CertificateChain" in material:
            raise BundleFormatError(
                f"{source}: certificate-based (Sigstore keyless) bundle; only key-based bundles are supported"
            )
        raise BundleFormatError(f"{source}: verificationMaterial has no publicKey")
    public_key = material["publicKey"]
    if not isinstance(public_key, Mapping):
        raise BundleFormatError(f"{source}: verificationMaterial.publicKey must be an object")
    hint = public_key.get("hint")
    if hint is not None and (not isinstance(hint, str) or (hint and not _HINT_RE.match(hint))):
        raise BundleFormatError(f"{source}: publicKey.hint must be 64 lowercase hex digits")
    tlog = material.get("tlogEntries", [])
    if not isinstance(tlog, list):
        raise BundleFormatError(f"{source}: tlogEntries must be a list")
    if "dsseEnvelope" not in parsed:
        if "messageSignature" in parsed:
            raise BundleFormatError(f"{source}: message-signature bundles are not supported (need a DSSE envelope)")
        raise BundleFormatError(f"{source}: no dsseEnvelope")
    try:
        envelope = Envelope.from_dict(parsed["dsseEnvelope"])
    except EnvelopeFormatError as exc:
        raise BundleFormatError(f"{source}: {exc}") from exc
    return Bundle(envelope=envelope, key_hint=hint or None)
