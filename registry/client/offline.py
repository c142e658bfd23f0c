"""``mir verify --offline --bundle FILE DIR`` for mir verification bundles (no server at all)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from registry.client.bundles import BundleError, BundleReport, Subject, check_bundle
from registry.client.config import load_credentials
from registry.client.pins import pinned_key_for, trusted_signer_keys
from signing.hashing import hash_directory
from signing.keys import KeyFormatError, PublicKey, load_public_key
from signing.manifest import Manifest
from signing.tree import TreeError
from signing.verify import compare_manifests

MAX_BUNDLE_BYTES = 64 << 20
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """``90``, ``45s``, ``30m``, ``12h``, ``7d``, ``2w`` as a duration; ValueError with a clear message otherwise."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(f"invalid age {text!r}: use seconds or a number with s, m, h, d or w (e.g. 7d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def pinned_key_for_configured_registry() -> PublicKey | None:
    """The registry key this machine pinned for ``MIR_URL`` (by an earlier online verify), if any."""
    return pinned_key_for(load_credentials().url)


def check_local(
    data: bytes, directory: Path | None, *, key_paths: list[Path], revoked: list[str], registry_key_path: Path | None,
    workers: int | None = None, max_bundle_age: timedelta | None = None, subject: Subject | None = None,
    local: Manifest | None = None,
) -> BundleReport:
    """Bundle checks plus, when a directory is given, the local files (or ``local``, the manifest of bytes
    already hashed) against the bundle's manifest."""
    env_key = os.environ.get("MIR_REGISTRY_KEY")
    if registry_key_path is None and env_key:
        registry_key_path = Path(env_key)
    registry_key = load_public_key(registry_key_path) if registry_key_path else pinned_key_for_configured_registry()
    report = check_bundle(data, registry_key=registry_key, signer_keys=trusted_signer_keys(key_paths),
                          revoked_key_ids=revoked, max_bundle_age=max_bundle_age, subject=subject)
    if directory is not None and report.manifest is not None:
        try:
            problems = compare_manifests(report.manifest, local or hash_directory(directory, workers=workers))
        except (TreeError, OSError) as exc:
            report.add("files", False, f"cannot hash {directory}: {exc}")
        else:
            report.add("files", not problems, "; ".join(str(p) for p in problems[:20]) if problems
                       else f"{len(report.manifest.files)} files match the manifest")
    return report


def run(
    bundle_path: Path, directory: Path, *, key_paths: list[Path], revoked: list[str], registry_key_path: Path | None,
    workers: int | None = None, max_bundle_age: str | None = None, subject: Subject | None = None,
    local: Manifest | None = None,
) -> int:
    """Print one line per check; 0 only if all hold, 1 if one fails, 2 if the bundle or an option is unusable."""
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    try:
        data = bundle_path.read_bytes()[: MAX_BUNDLE_BYTES + 1]
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleError("bundle file is too large")
        age = parse_age(max_bundle_age) if max_bundle_age is not None else None
        report = check_local(data, directory, key_paths=key_paths, revoked=revoked,
                             registry_key_path=registry_key_path, workers=workers, max_bundle_age=age,
                             subject=subject, local=local)
    except (BundleError, KeyFormatError, OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    for name, ok, detail in report.checks:
        out.print(f"{'[green]ok[/green]  ' if ok else '[red]FAIL[/red]'} {name}: {detail}")
    if report.ok:
        out.print(f"[green]verified offline[/green] {directory} is exactly {report.reference}, allowed by its policy")
        return 0
    err.print(f"[red]offline verification of {directory} against {report.reference} failed[/red]")
    return 1
