"""The signed statements of the deploy gate, as both sides name them: the registry signs them
(:mod:`registry.gate.attestation`) and clients check them (:mod:`registry.client`), so their types live here once."""

from __future__ import annotations

from datetime import timedelta

BUNDLE_MEDIA_TYPE = "application/vnd.mir.verification-bundle.v1+json"
ATTESTATION_TYPE = "application/vnd.mir.registry-attestation.v1+json"
ATTESTATION_KIND = "mir.registry-attestation.v1"
RECEIPT_TYPE = "application/vnd.mir.verification-receipt.v1+json"
# How far apart the registry's clock and a verifier's may be before a signed timestamp counts against it.
CLOCK_SKEW = timedelta(seconds=60)
