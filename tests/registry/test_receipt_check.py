"""Receipt acceptance rules that a live registry never breaks, checked with a locally made key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from registry.client.receipts import Expected, ReceiptError, check_receipt
from registry.policy.statements import ATTESTATION_TYPE, RECEIPT_TYPE
from signing.dsse import sign_envelope
from signing.jcs import canonicalize
from signing.keys import generate_private_key

KEY = generate_private_key("ecdsa-p256")
NOW = datetime(2030, 1, 1, tzinfo=UTC)
EXPECTED = Expected(reference="acme/llm@prod", artifact="acme/llm", version="1", manifest_digest="sha256:" + "a" * 64,
                    observed={"b": "sha256:" + "b" * 64}, nonce="n" * 32)
CHECKS = [{"check": "signers", "ok": True, "detail": "1 of 1"}]


def receipt(payload_type: str = RECEIPT_TYPE, **changes: Any) -> dict[str, Any]:
    payload = {"type": "mir.verification-receipt.v1", "reference": EXPECTED.reference, "nonce": EXPECTED.nonce,
               "artifact": EXPECTED.artifact, "version": EXPECTED.version,
               "manifest_digest": EXPECTED.manifest_digest, "decision": "allow", "checks": CHECKS,
               "observed_digests": EXPECTED.observed, "issued_at": NOW.isoformat(),
               "expires_at": (NOW + timedelta(minutes=5)).isoformat(), **changes}
    return sign_envelope(canonicalize(payload), KEY, payload_type).to_dict()


def test_genuine_receipt_is_accepted_within_clock_skew() -> None:
    assert check_receipt(receipt(), KEY.public_key(), EXPECTED, now=NOW)["decision"] == "allow"
    assert check_receipt(receipt(), KEY.public_key(), EXPECTED, now=NOW + timedelta(minutes=5, seconds=30))
    assert check_receipt(receipt(), KEY.public_key(), EXPECTED, now=NOW - timedelta(seconds=30))


@pytest.mark.parametrize(("envelope", "now", "reason"), [
    (receipt(), NOW + timedelta(minutes=7), "expired"),
    (receipt(), NOW - timedelta(minutes=5), "future"),
    (receipt(ATTESTATION_TYPE), NOW, "no receipt signed"),
    (receipt(decision="deny"), NOW, "contradicts"),
    (receipt(checks=[{"check": "x", "ok": "yes", "detail": ""}]), NOW, "malformed"),
    (receipt(observed_digests=None), NOW, "observed"),
    (receipt(issued_at="yesterday"), NOW, "not a timestamp"),
    (receipt(expires_at="2030-01-01T00:05:00"), NOW, "no time zone"),
    (receipt(manifest_digest="sha256:" + "c" * 64), NOW, "manifest_digest"),
])
def test_refused(envelope: dict[str, Any], now: datetime, reason: str) -> None:
    with pytest.raises(ReceiptError, match=reason):
        check_receipt(envelope, KEY.public_key(), EXPECTED, now=now)
    with pytest.raises(ReceiptError, match="no receipt signed"):
        check_receipt(receipt(), generate_private_key("ecdsa-p256").public_key(), EXPECTED, now=NOW)
