"""``mir verify NAME@REF DIR``: is DIR exactly the version, signed by a key *we* trust, accepted by the registry?

Everything is checked on this machine: local files are re-hashed and compared
with the manifest (paths and digests), the manifest's own digest is
recomputed, pusher signatures are verified against locally trusted keys (the
server's key list is not taken on faith), and the registry countersignature
against the pinned registry key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.bundle_check import RECEIPT_TYPE
from registry.client import MirClient, MirError
from registry.trust import TrustError, pinned_registry_key, trusted_signer_keys
from signing.dsse import Envelope, EnvelopeFormatError
from signing.hashing import hash_directory
from signing.keys import PublicKey, verify_message
from signing.manifest import Manifest
from signing.tree import TreeError
from signing.verify import compare_manifests, verify_envelope_for_manifest


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class OnlineReport:
    reference: str
    checks: list[Check] = field(default_factory=list)
    receipt: dict[str, Any] | None = None
    manifest_digest: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))


def _signature_checks(
    report: OnlineReport, manifest: Manifest, sigs: list[dict[str, Any]],
    signer_keys: list[PublicKey], revoked: list[str], registry_key: PublicKey,
) -> None:
    pusher = [s for s in sigs if s["origin"] == "pusher"]
    counters = [s for s in sigs if s["origin"] == "registry"]
    signers: set[str] = set()
    problems: list[str] = []
    for sig in pusher:
        try:
            result = verify_envelope_for_manifest(Envelope.from_dict(sig["envelope"]), manifest, signer_keys, revoked)
        except EnvelopeFormatError as exc:
            problems.append(f"malformed signature from {sig['key_id']}: {exc}")
            continue
        if result.ok:
            signers.update(result.signer_key_ids)
        else:
            problems.extend(str(f) for f in result.failures)
    if not signer_keys:
        report.add("signature", False, "no trusted signer keys on this machine: pass --key PUB.pem or add keys to "
                   "the trust store")
    elif signers:
        report.add("signature", True, f"signed by trusted key(s) {', '.join(sorted(signers))}")
    elif not pusher:
        report.add("signature", False, "the version carries no signature")
    else:
        report.add("signature", False, "; ".join(dict.fromkeys(problems)) or "no trusted key signed it")
    countersigned = False
    for sig in counters:
        try:
            result = verify_envelope_for_manifest(Envelope.from_dict(sig["envelope"]), manifest, [registry_key])
        except EnvelopeFormatError:
            continue
        countersigned = countersigned or result.ok
    report.add("registry countersignature", countersigned,
               "the pinned registry key signed exactly this manifest" if countersigned
               else "no valid countersignature by the pinned registry key")


def verify(
    client: MirClient, reference: str, directory: Path, *, keys: list[Path], revoked_key_ids: list[str],
    workers: int | None = None, registry_key_pem: str | None = None, policy: bool = False,
) -> OnlineReport:
    report = OnlineReport(reference)
    version = client.show_version(reference)
    report.reference = f"{version['artifact']}@{version['version']}"
    manifest = Manifest.from_dict({"files": version["files"]})
    report.manifest_digest = manifest.digest()
    report.add("manifest digest", manifest.digest() == version["manifest_digest"],
               f"recomputed {manifest.digest()}, registry says {version['manifest_digest']}")
    try:
        local = hash_directory(directory, workers=workers)
    except (TreeError, OSError) as exc:
        report.add("files", False, f"cannot hash {directory}: {exc}")
        local = None
    if local is not None:
        failures = compare_manifests(manifest, local)
        detail = "; ".join(str(f) for f in failures[:20]) + (" ..." if len(failures) > 20 else "")
        report.add("files", not failures,
                   detail if failures else f"{len(manifest.files)} files match the manifest (paths and digests)")
    try:
        pinned = pinned_registry_key(client, registry_key_pem)
    except TrustError as exc:
        report.add("registry key", False, str(exc))
        return report
    sigs = client.signatures(reference)
    # Revocations reported by the server can only make verification stricter, so they are safe to take.
    namespace = version["artifact"].split("/")[0]
    revoked = [*revoked_key_ids, *(k["key_id"] for k in client.list_keys(namespace) if k["revoked_at"])]
    _signature_checks(report, manifest, sigs, trusted_signer_keys(keys), revoked, pinned.public_key)
    if policy:
        observed = {f.path: f.digest for f in local.files} if local is not None else {}
        _policy_checks(client, report, f"{version['artifact']}@{version['version']}", observed, pinned.public_key)
    return report


def _policy_checks(
    client: MirClient, report: OnlineReport, reference: str, observed: dict[str, str], registry_key: PublicKey
) -> None:
    """Ask the registry's policy decision, and accept it only with a valid receipt signed by the pinned key."""
    answer = client.json("POST", "/v1/verify", json={"reference": reference, "observed": observed})
    try:
        envelope = Envelope.from_dict(answer["receipt"])
        signed = envelope.payload_type == RECEIPT_TYPE and any(
            verify_message(registry_key, s.sig, envelope.pae()) for s in envelope.signatures
        )
        receipt = json.loads(envelope.payload)
    except (EnvelopeFormatError, KeyError, ValueError):
        signed, receipt = False, {}
    genuine = signed and receipt.get("decision") == answer["decision"] and receipt.get("observed_digests") == dict(
        sorted(observed.items())
    )
    report.receipt = answer["receipt"] if genuine else None
    report.add("policy receipt", genuine, "decision signed by the pinned registry key" if genuine
               else "the policy decision is not backed by a valid receipt from the pinned registry key")
    for check in answer["checks"]:
        report.add(f"policy: {check['check']}", bool(check["ok"]), check["detail"])


def run(
    reference: str, directory: Path, *, keys: list[Path], revoked_key_ids: list[str], workers: int | None = None,
    policy: bool = False,
) -> int:
    """The CLI entry point: print one line per check; 0 only if every check holds."""
    from rich.console import Console

    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    try:
        with MirClient() as client:
            report = verify(client, reference, directory, keys=keys, revoked_key_ids=revoked_key_ids, workers=workers,
                            policy=policy)
    except MirError as exc:
        err.print(f"[red]error:[/red] {exc.message} [dim]({exc.code})[/dim]")
        return 1
    for check in report.checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        out.print(f"{mark} {check.name}: {check.detail}")
    if report.ok:
        out.print(f"[green]verified[/green] {directory} is exactly {report.reference}")
        return 0
    err.print(f"[red]verification of {directory} against {report.reference} failed[/red]")
    return 1
