"""Offline verification of a mir verification bundle: no server, only local trust.

Trust comes from two local sources: the registry's public key (pinned, or
given) and the signer keys this machine trusts. From those, the bundle must
show: the manifest hashes to its digest; the registry countersigned exactly
it; the registry's attestation (scan verdicts, formats, quarantine state,
policy) covers it and satisfies the attested policy; enough trusted signers
signed it; and the commit entry is included in a signed audit tree head.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.synthetic_check import CHECK as SYNTHETIC_CHECK
from registry.synthetic_check import check_limits
from signing.dsse import Envelope, EnvelopeFormatError
from signing.keys import KeyFormatError, PublicKey, key_id, load_public_key_pem, verify_message
from signing.manifest import InvalidManifestError, Manifest
from signing.merkle import ProofError, leaf_hash, verify_inclusion
from signing.tree_head import SignedTreeHead, TreeHeadError, verify_tree_head
from signing.verify import verify_envelope_for_manifest

BUNDLE_MEDIA_TYPE = "application/vnd.mir.verification-bundle.v1+json"
ATTESTATION_TYPE = "application/vnd.mir.registry-attestation.v1+json"
ATTESTATION_KIND = "mir.registry-attestation.v1"
RECEIPT_TYPE = "application/vnd.mir.verification-receipt.v1+json"
# Formats that are data, not code or weights: always loadable (config.json, tokenizer files, README).
DATA_FORMATS = frozenset({"text", "empty"})


def required_signers(signers: set[str], required_keys: Sequence[str]) -> set[str]:
    """The signers that count toward a k-of-n rule: those listed, or every trusted signer if none are listed."""
    wanted = set(required_keys)
    return signers & wanted if wanted else signers


class BundleError(ValueError):
    """The bundle cannot be read at all (not JSON, wrong media type, missing parts)."""


@dataclass
class BundleReport:
    reference: str = ""
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    manifest: Manifest | None = None
    blake3: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))

    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.checks if not ok]


def load_bundle(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        bundle = data
    else:
        try:
            bundle = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise BundleError(f"verification bundle is not valid JSON: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise BundleError(f"not a mir verification bundle (mediaType must be {BUNDLE_MEDIA_TYPE})")
    for part in ("artifact", "version", "manifest", "manifest_digest", "signatures", "registry_key", "attestation",
                 "audit"):
        if part not in bundle:
            raise BundleError(f"verification bundle has no {part!r}")
    return bundle


def _registry_signed(envelope: Any, key: PublicKey, payload_type: str) -> dict[str, Any] | None:
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


def check_bundle(
    raw: bytes | str | dict[str, Any],
    *,
    registry_key: PublicKey | None,
    signer_keys: list[PublicKey],
    revoked_key_ids: Sequence[str] = (),
) -> BundleReport:
    """Check everything the bundle claims against local trust. Never raises for a bad signature: reports it."""
    bundle = load_bundle(raw)
    report = BundleReport(reference=f"{bundle['artifact']}@{bundle['version']}")
    try:
        served_key = load_public_key_pem(str(bundle["registry_key"]["public_key"]).encode(), source="bundle key")
    except (KeyFormatError, KeyError, TypeError) as exc:
        report.add("registry key", False, f"unreadable registry key in bundle: {exc}")
        return report
    if registry_key is None:
        report.add("registry key", False, "no pinned registry key: pass the registry's public key")
        return report
    if key_id(served_key) != key_id(registry_key):
        report.add("registry key", False, f"bundle was made by key {key_id(served_key)}, not the trusted "
                   f"registry key {key_id(registry_key)}")
        return report
    report.add("registry key", True, f"bundle made by the trusted registry key {key_id(registry_key)}")

    try:
        manifest = Manifest.from_dict(bundle["manifest"])
    except InvalidManifestError as exc:
        report.add("manifest", False, str(exc))
        return report
    report.manifest = manifest
    report.add("manifest", manifest.digest() == bundle["manifest_digest"],
               f"recomputed {manifest.digest()}, bundle says {bundle['manifest_digest']}")

    sigs = [s for s in bundle["signatures"] if isinstance(s, dict)]
    counter_ok = False
    for sig in (s for s in sigs if s.get("origin") == "registry"):
        try:
            counter_ok = counter_ok or verify_envelope_for_manifest(
                Envelope.from_dict(sig.get("envelope")), manifest, [registry_key]).ok
        except EnvelopeFormatError:
            continue
    report.add("registry countersignature", counter_ok,
               "the registry signed exactly this manifest" if counter_ok else "missing or invalid")

    att = _registry_signed(bundle["attestation"], registry_key, ATTESTATION_TYPE)
    if att is None or (att.get("manifest_digest"), att.get("type")) != (manifest.digest(), ATTESTATION_KIND):
        report.add("attestation", False, "registry attestation missing, not signed by the registry key, or about "
                   "another manifest")
        return report
    report.add("attestation", True, f"registry attestation issued at {att.get('issued_at')}")
    blake3 = att.get("blake3") or {}
    report.blake3 = {p: d for p, d in blake3.items() if isinstance(p, str) and isinstance(d, str)}
    pol = att.get("policy") or {}

    revoked = [*revoked_key_ids, *(k for k in att.get("revoked_key_ids") or [] if isinstance(k, str))]
    signers: set[str] = set()
    for sig in (s for s in sigs if s.get("origin") == "pusher"):
        try:
            result = verify_envelope_for_manifest(Envelope.from_dict(sig.get("envelope")), manifest, signer_keys,
                                                  revoked)
        except EnvelopeFormatError:
            continue
        if result.ok:
            signers.update(result.signer_key_ids)
    required = pol.get("required_signers") or {}
    need = int(required.get("threshold", 1))
    counted = required_signers(signers, required.get("keys") or [])
    report.add("signers", len(counted) >= need,
               f"{len(counted)} of {need} required signature(s) by keys trusted on this machine")

    scan = att.get("scan") or {}
    verdicts = pol.get("required_scan_verdicts") or ["clean"]
    report.add("scan", scan.get("status") in verdicts, f"scan status {scan.get('status')}; policy requires "
               f"{' or '.join(verdicts)}")
    allowed = set(pol.get("allowed_formats") or ["safetensors"]) | DATA_FORMATS
    formats = scan.get("formats") or {}
    bad = [f"{p} is {formats.get(p)}" for p in (f.path for f in manifest.files) if formats.get(p) not in allowed]
    report.add("formats", not bad, "; ".join(bad[:20]) if bad else "all files are allowed formats")
    if pol.get("refuse_quarantined_lineage", True):
        held = att.get("quarantine")
        report.add("quarantine", held is None,
                   "no quarantined version in its lineage (as attested)" if held is None
                   else f"{held.get('status')}: {held.get('sources', [{}])[0].get('reason')}")

    limits = check_limits(att.get("synthetic"), max_fraction=pol.get("max_synthetic_fraction"),
                          max_depth=pol.get("max_recursion_depth"))
    if limits is not None:
        report.add(SYNTHETIC_CHECK, limits[0], limits[1] + " (as attested)")
    _check_audit(report, bundle["audit"], registry_key, bundle, manifest)
    return report


def _check_audit(report: BundleReport, audit: Any, key: PublicKey, bundle: dict[str, Any], manifest: Manifest) -> None:
    try:
        head = verify_tree_head(SignedTreeHead.from_dict(audit["tree_head"]), key, key_id=key_id(key))
        entry = audit["entry"]
        body = str(entry["body"]).encode()
        leaf = leaf_hash(body)
        if leaf.hex() != entry["leaf_hash"]:
            raise ValueError("entry does not hash to its leaf")
        proof = [bytes.fromhex(h) for h in audit["inclusion_proof"]]
        if not verify_inclusion(leaf, int(entry["index"]), head.tree_size, proof, head.root_hash):
            raise ValueError("inclusion proof does not verify against the signed tree head")
        content = json.loads(body)
        expected = (f"{bundle['artifact']}", bundle["version"], manifest.digest())
        found = (content.get("artifact"), content.get("version"), (content.get("details") or {}).get("manifest_digest"))
        if content.get("action") != "version.committed" or found != expected:
            raise ValueError(f"the audit entry records {content.get('action')} of {found}, not this commit")
    except (TreeHeadError, ProofError, KeyError, TypeError, ValueError) as exc:
        report.add("audit log", False, f"commit not proven in the audit log: {exc}")
        return
    report.add("audit log", True, f"commit is entry {entry['index']} of the signed log of {head.tree_size} entries")
