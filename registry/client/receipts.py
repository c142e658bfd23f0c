"""Accepting a ``/v1/verify`` answer: only the receipt signed by the pinned registry key counts.

Everything outside the signed receipt can be rewritten by anything between
the job and the registry, so it is ignored. The receipt itself must be about
exactly what was asked (reference, artifact, version, manifest digest, the
digests observed on disk), answer this request (the caller's nonce), and be
current (issued and expiring within a small clock-skew tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from registry.policy.statements import CLOCK_SKEW, RECEIPT_TYPE
from signing.dsse import signed_json_payload
from signing.keys import PublicKey

RECEIPT_KIND = "mir.verification-receipt.v1"


class ReceiptError(ValueError):
    """The receipt is missing, not signed by the pinned key, or about something other than what was asked."""


@dataclass(frozen=True)
class Expected:
    """What the caller asked about; the signed receipt must say the same."""

    reference: str
    artifact: str
    version: str
    manifest_digest: str
    observed: dict[str, str] | None
    nonce: str


def parse_time(value: Any, what: str) -> datetime:
    """An ISO 8601 timestamp with a zone; anything else is refused (fail closed)."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ReceiptError(f"the receipt's {what} {value!r} is not a timestamp") from exc
    if parsed.tzinfo is None:
        raise ReceiptError(f"the receipt's {what} {value!r} has no time zone")
    return parsed


def check_receipt(
    envelope: Any, registry_key: PublicKey, expected: Expected, *, now: datetime | None = None
) -> dict[str, Any]:
    """The signed receipt's payload, if it is genuine and answers exactly ``expected``; else ReceiptError."""
    payload = signed_json_payload(envelope, registry_key, RECEIPT_TYPE)
    if payload is None or payload.get("type") != RECEIPT_KIND:
        raise ReceiptError("the answer carries no receipt signed by the pinned registry key")
    subject = {"reference": expected.reference, "artifact": expected.artifact, "version": expected.version,
               "manifest_digest": expected.manifest_digest}
    for field, want in subject.items():
        if payload.get(field) != want:
            raise ReceiptError(f"the receipt is about {field} {payload.get(field)!r}, not {want!r} (replayed?)")
    want_observed = dict(sorted(expected.observed.items())) if expected.observed is not None else None
    if payload.get("observed_digests") != want_observed:
        raise ReceiptError("the receipt was issued for other observed file digests than this directory's")
    if payload.get("nonce") != expected.nonce:
        raise ReceiptError("the receipt does not echo this request's nonce: it answers another request (replayed?)")
    now = now or datetime.now(UTC)
    issued = parse_time(payload.get("issued_at"), "issue time")
    expires = parse_time(payload.get("expires_at"), "expiry")
    if issued > now + CLOCK_SKEW:
        raise ReceiptError(f"the receipt was issued in the future ({issued.isoformat()}): check the clocks")
    if expires < now - CLOCK_SKEW:
        raise ReceiptError(f"the receipt expired at {expires.isoformat()}")
    checks = payload.get("checks")
    if not isinstance(checks, list) or not all(
        isinstance(c, dict) and isinstance(c.get("check"), str) and isinstance(c.get("ok"), bool)
        and isinstance(c.get("detail"), str) for c in checks
    ):
        raise ReceiptError("the receipt's checks are malformed")
    allowed = bool(checks) and all(c["ok"] for c in checks)
    if payload.get("decision") != ("allow" if allowed else "deny"):
        raise ReceiptError(f"the receipt's decision {payload.get('decision')!r} contradicts its own checks")
    return payload
