"""Checking a version's signature list (as the registry serves it, or as a bundle carries it) on this machine.

One implementation for the online ``mir verify`` and the offline bundle check,
so both count signers and accept countersignatures the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from signing.dsse import Envelope, EnvelopeFormatError
from signing.keys import PublicKey
from signing.manifest import Manifest
from signing.verify import verify_envelope_for_manifest


def trusted_signers(
    sigs: Sequence[Any], manifest: Manifest, keys: list[PublicKey], revoked: Sequence[str] = ()
) -> tuple[set[str], list[str]]:
    """Key ids of ``keys`` that signed exactly ``manifest`` (pusher signatures), and why the others failed."""
    signers: set[str] = set()
    problems: list[str] = []
    for sig in _of_origin(sigs, "pusher"):
        try:
            result = verify_envelope_for_manifest(Envelope.from_dict(sig.get("envelope")), manifest, keys,
                                                  list(revoked))
        except EnvelopeFormatError as exc:
            problems.append(f"malformed signature from {sig.get('key_id')}: {exc}")
            continue
        if result.ok:
            signers.update(result.signer_key_ids)
        else:
            problems.extend(str(f) for f in result.failures)
    return signers, list(dict.fromkeys(problems))


def has_pusher_signature(sigs: Sequence[Any]) -> bool:
    return any(True for _ in _of_origin(sigs, "pusher"))


def countersigned(sigs: Sequence[Any], manifest: Manifest, registry_key: PublicKey) -> bool:
    """Whether the registry key countersigned exactly ``manifest``."""
    for sig in _of_origin(sigs, "registry"):
        try:
            if verify_envelope_for_manifest(Envelope.from_dict(sig.get("envelope")), manifest, [registry_key]).ok:
                return True
        except EnvelopeFormatError:
            continue
    return False


def _of_origin(sigs: Sequence[Any], origin: str) -> list[dict[str, Any]]:
    return [s for s in sigs if isinstance(s, dict) and s.get("origin") == origin]
