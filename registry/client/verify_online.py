"""``mir verify NAME@REF DIR``: is DIR exactly the version, signed by a key *we* trust, accepted by the registry?

Everything is checked on this machine: local files are re-hashed and compared
with the manifest (paths and digests), the manifest's own digest is
recomputed, pusher signatures are verified against locally trusted keys (the
server's key list is not taken on faith), and the registry countersignature
against the pinned registry key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.client.http import MirClient, MirError
from registry.client.pins import TrustError, pinned_registry_key, trusted_signer_keys
from registry.client.receipts import Expected, ReceiptError, check_receipt
from registry.core.names import InvalidNameError, parse_ref
from registry.trust.signature_set import countersigned, has_pusher_signature, trusted_signers
from signing.hashing import hash_directory
from signing.keys import PublicKey
from signing.manifest import Manifest
from signing.tree import TreeError
from signing.verify import compare_manifests


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
    signers, problems = trusted_signers(sigs, manifest, signer_keys, revoked)
    if not signer_keys:
        report.add("signature", False, "no trusted signer keys on this machine: pass --key PUB.pem or add keys to "
                   "the trust store")
    elif signers:
        report.add("signature", True, f"signed by trusted key(s) {', '.join(sorted(signers))}")
    elif not has_pusher_signature(sigs):
        report.add("signature", False, "the version carries no signature")
    else:
        report.add("signature", False, "; ".join(problems) or "no trusted key signed it")
    ok = countersigned(sigs, manifest, registry_key)
    report.add("registry countersignature", ok,
               "the pinned registry key signed exactly this manifest" if ok
               else "no valid countersignature by the pinned registry key")


def verify(
    client: MirClient, reference: str, directory: Path, *, keys: list[Path], revoked_key_ids: list[str],
    workers: int | None = None, registry_key_pem: str | None = None, policy: bool = False,
    local: Manifest | None = None,
) -> OnlineReport:
    """Check ``directory`` (or ``local``, the manifest of bytes already hashed, e.g. while copying them)
    against the version, its signatures and, with ``policy``, the registry's signed decision."""
    report = OnlineReport(reference)
    version = client.show_version(reference)
    report.reference = f"{version['artifact']}@{version['version']}"
    manifest = Manifest.from_dict({"files": version["files"]})
    report.manifest_digest = manifest.digest()
    report.add("manifest digest", manifest.digest() == version["manifest_digest"],
               f"recomputed {manifest.digest()}, registry says {version['manifest_digest']}")
    if local is None:
        try:
            local = hash_directory(directory, workers=workers)
        except (TreeError, OSError) as exc:
            report.add("files", False, f"cannot hash {directory}: {exc}")
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
        expected = Expected(reference=reference, artifact=parse_ref(reference).repo, version=str(version["version"]),
                            manifest_digest=manifest.digest(), observed=observed, nonce=secrets.token_urlsafe(24))
        _policy_checks(client, report, expected, pinned.public_key)
    return report


def _policy_checks(client: MirClient, report: OnlineReport, expected: Expected, registry_key: PublicKey) -> None:
    """Ask the registry's policy decision and take it only from the receipt signed by the pinned key.

    The rest of the answer is unsigned (anything on the way could rewrite it), so it is not read at all.
    """
    answer = client.json("POST", "/v1/verify", json={"reference": expected.reference, "observed": expected.observed,
                                                     "nonce": expected.nonce})
    try:
        receipt = check_receipt(answer.get("receipt") if isinstance(answer, dict) else None, registry_key, expected)
    except ReceiptError as exc:
        report.add("policy receipt", False, str(exc))
        return
    report.receipt = answer["receipt"]
    report.reference = f"{receipt['artifact']}@{receipt['version']}"
    # check_receipt has made sure the signed decision is "allow" exactly when every signed check holds.
    report.add("policy receipt", True, f"decision {receipt['decision']!r} signed by the pinned registry key for "
               f"this request, valid until {receipt['expires_at']}")
    for check in receipt["checks"]:
        report.add(f"policy: {check['check']}", check["ok"], check["detail"])


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
    except InvalidNameError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    for check in report.checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        out.print(f"{mark} {check.name}: {check.detail}")
    if report.ok:
        out.print(f"[green]verified[/green] {directory} is exactly {report.reference}")
        return 0
    err.print(f"[red]verification of {directory} against {report.reference} failed[/red]")
    return 1
