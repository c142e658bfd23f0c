"""``load_verified``: the gate an inference job calls instead of ``safetensors.torch.load_file``.

It decides with local trust only (the registry key pinned or given, and the
signer keys this machine trusts): the verification bundle — fetched from the
registry, or given when the registry is unreachable — must pass every check
(manifest, countersignature, registry attestation and policy, signers, audit
inclusion), be about the version asked for, answer this request (a nonce the
registry echoes in the signed attestation) and be no older than the policy's
``bundle_max_age`` (or the caller's ``max_bundle_age``). Then every file is read once, hashed, and only the bytes that
hashed correctly become tensors (``registry.client.verified_read``). torch is an
optional extra and is imported only when loading.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from registry.client.bundles import BundleError, Subject, check_bundle
from registry.client.http import MirClient, MirError
from registry.client.offline import pinned_key_for_configured_registry
from registry.client.pins import TrustError, pinned_registry_key, trusted_signer_keys
from registry.client.private_copy import make_private_copy, remove_copy
from registry.client.read_errors import LoaderError, VerifiedLoadError
from registry.client.verified_read import read_verified, read_verified_safetensors
from registry.core.names import InvalidNameError, parse_ref
from signing.keys import PublicKey, load_public_key

__all__ = [
    "LoaderError", "PolicyRefusedError", "VerifiedLoadError", "VerifiedPretrained", "from_pretrained_verified",
    "load_verified", "verified_expectations",
]


class PolicyRefusedError(LoaderError):
    """The version is not allowed: a signature, attestation, policy or audit check failed."""

    def __init__(self, reference: str, failures: list[str]) -> None:
        super().__init__(f"{reference} refused: " + "; ".join(failures))
        self.reference = reference
        self.failures = failures


def _bundle_and_key(
    source: str | os.PathLike[str] | Mapping[str, Any], registry_key: PublicKey | None, url: str | None,
    token: str | None,
) -> tuple[dict[str, Any], PublicKey | None, Subject | None]:
    """The bundle, the registry key to check it with, and (when fetched now) what it must be about."""
    if isinstance(source, Mapping):
        return dict(source), registry_key, None
    path = Path(source)
    if path.is_file():
        try:
            return json.loads(path.read_text()), registry_key, None
        except (OSError, ValueError) as exc:
            raise LoaderError(f"{path}: cannot read verification bundle: {exc}") from exc
    try:
        ref = parse_ref(str(source))
    except InvalidNameError as exc:
        raise LoaderError(f"{source!r} is neither a bundle file nor a namespace/name@ref: {exc}") from exc
    subject = Subject(ref.repo, ref.ref or "latest", secrets.token_urlsafe(24))
    try:
        with MirClient(url, token) as client:
            if registry_key is None:
                registry_key = pinned_registry_key(client).public_key
            bundle = client.json("GET", f"/v1/artifacts/{ref.repo}/versions/{subject.ref}/bundle",
                                 params={"nonce": subject.nonce})
    except TrustError as exc:
        raise PolicyRefusedError(str(source), [str(exc)]) from exc
    except MirError as exc:
        hint = " (pass a verification bundle to load offline)" if exc.code == "unreachable" else ""
        raise LoaderError(f"cannot verify {source}: {exc.message}{hint}") from exc
    return bundle, registry_key, subject


def load_verified(
    ref_or_bundle: str | os.PathLike[str] | Mapping[str, Any],
    local_dir: str | os.PathLike[str],
    device: str = "cuda",
    *,
    keys: Iterable[str | os.PathLike[str]] = (),
    registry_key: str | os.PathLike[str] | PublicKey | None = None,
    algorithm: str = "auto",
    dtype: Any = None,
    workers: int | None = None,
    url: str | None = None,
    token: str | None = None,
    max_bundle_age: timedelta | float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Verify, then load every tensor of the version in ``local_dir`` onto ``device``.

    ``ref_or_bundle`` is ``namespace/name@ref`` (the bundle is fetched from the registry) or a verification
    bundle (path or parsed JSON, for when the registry is unreachable). ``keys`` are trusted signer public keys
    (PEM paths; the local trust store is added). ``registry_key`` defaults to ``MIR_REGISTRY_KEY`` or the key
    pinned for the registry. ``algorithm`` picks which digests the bytes are checked against: the manifest's
    SHA-256, the registry-attested BLAKE3 (about twice as fast to compute), or ``auto`` (the default): BLAKE3 when
    the bundle attests it for every file, else SHA-256. ``max_bundle_age`` (a timedelta or seconds) overrides the
    attested policy's ``bundle_max_age``; ``now`` is the time the bundle's age is measured at. Raises
    :class:`PolicyRefusedError` or :class:`VerifiedLoadError` naming the file and the reason; never returns
    anything partial.
    """
    expected = verified_expectations(ref_or_bundle, keys=keys, registry_key=registry_key, algorithm=algorithm,
                                     url=url, token=token, max_bundle_age=max_bundle_age, now=now)
    # Files are classified by content: safetensors become tensors, JSON/text are only checked, and pickles are
    # refused even when listed. Which formats the version may contain was already decided by the attested policy.
    return read_verified_safetensors(local_dir, expected, device=device, dtype=dtype, workers=workers,
                                     allow_data_files=list(expected))


def verified_expectations(
    ref_or_bundle: str | os.PathLike[str] | Mapping[str, Any],
    *,
    keys: Iterable[str | os.PathLike[str]] = (),
    registry_key: str | os.PathLike[str] | PublicKey | None = None,
    algorithm: str = "auto",
    url: str | None = None,
    token: str | None = None,
    max_bundle_age: timedelta | float | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Every path of the version and the digest its bytes must have, once the bundle passed every check.

    The one trust decision behind :func:`load_verified` and ``from_pretrained_verified``: raises
    :class:`PolicyRefusedError` or :class:`LoaderError`.
    """
    if algorithm not in ("auto", "sha256", "blake3"):
        raise LoaderError(f"unknown digest algorithm {algorithm!r}: use auto, sha256 or blake3")
    key: PublicKey | None
    if isinstance(registry_key, str | os.PathLike):
        key = load_public_key(registry_key)
    elif registry_key is None and os.environ.get("MIR_REGISTRY_KEY"):
        key = load_public_key(os.environ["MIR_REGISTRY_KEY"])
    else:
        key = registry_key
    offline = isinstance(ref_or_bundle, Mapping) or Path(ref_or_bundle).is_file()
    if key is None and offline:
        key = pinned_key_for_configured_registry()
    bundle, key, subject = _bundle_and_key(ref_or_bundle, key, url, token)
    if isinstance(max_bundle_age, int | float):
        max_bundle_age = timedelta(seconds=max_bundle_age)
    try:
        report = check_bundle(bundle, registry_key=key, signer_keys=trusted_signer_keys([Path(k) for k in keys]),
                              max_bundle_age=max_bundle_age, now=now, subject=subject)
    except BundleError as exc:
        raise LoaderError(str(exc)) from exc
    if not report.ok or report.manifest is None:
        raise PolicyRefusedError(report.reference, report.failures() or ["the bundle has no manifest"])
    if algorithm == "auto":  # BLAKE3 (hashes about twice as fast) when the registry attested it for every file
        algorithm = "blake3" if all(f.path in report.blake3 for f in report.manifest.files) else "sha256"
    if algorithm == "sha256":
        return {f.path: f.digest for f in report.manifest.files}
    missing = [f.path for f in report.manifest.files if f.path not in report.blake3]
    if missing:
        raise PolicyRefusedError(report.reference, [f"no registry-attested BLAKE3 digest for {missing[0]}"])
    return {f.path: report.blake3[f.path] for f in report.manifest.files}


@dataclass
class VerifiedPretrained:
    """A transformers model built from verified bytes only, and its tokenizer when the version has one."""

    model: Any
    tokenizer: Any | None
    reference: str


def from_pretrained_verified(
    model_cls: Any,
    ref_or_bundle: str | os.PathLike[str] | Mapping[str, Any],
    local_dir: str | os.PathLike[str],
    *,
    device: str = "cpu",
    dtype: Any = None,
    tokenizer: bool = True,
    keys: Iterable[str | os.PathLike[str]] = (),
    registry_key: str | os.PathLike[str] | PublicKey | None = None,
    algorithm: str = "auto",
    workers: int | None = None,
    url: str | None = None,
    token: str | None = None,
    max_bundle_age: timedelta | float | None = None,
) -> VerifiedPretrained:
    """``model_cls.from_pretrained(local_dir)`` without the gap between checking the files and reading them.

    The bundle decides as for :func:`load_verified`. The weights become tensors only from bytes that hashed
    correctly (safetensors only: a pickle is refused even when listed). Config, generation config and tokenizer
    files are hashed while they are copied into a private, sealed directory, and transformers reads them from
    there; the model is built with ``from_pretrained(None, config=..., state_dict=...)``, so transformers never
    opens ``local_dir``. Raises :class:`PolicyRefusedError`, :class:`VerifiedLoadError` or :class:`LoaderError`.
    """
    expected = verified_expectations(ref_or_bundle, keys=keys, registry_key=registry_key, algorithm=algorithm,
                                     url=url, token=token, max_bundle_age=max_bundle_age)
    read = read_verified(local_dir, expected, device="cpu", dtype=dtype, workers=workers,
                         allow_data_files=list(expected))
    if not read.tensors:
        raise VerifiedLoadError(str(local_dir), "the version holds no safetensors weights", code="no_weights")
    others = [path for path, kind in read.files.items() if kind != "safetensors"]
    algorithm = next(iter(expected.values())).split(":", 1)[0]  # what "auto" chose
    copy = make_private_copy(Path(local_dir), only=others, algorithm=algorithm, workers=workers)
    try:
        for entry in copy.manifest.files:
            if entry.digest != expected[entry.path]:
                raise VerifiedLoadError(entry.path, "changed after it was checked: its bytes no longer match the "
                                        "manifest", code="digest_mismatch")
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        config = AutoConfig.from_pretrained(copy.root, local_files_only=True)
        model = model_cls.from_pretrained(None, config=config, state_dict=read.tensors, dtype=dtype)
        if (copy.root / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(copy.root, local_files_only=True)
        tok = None
        if tokenizer and any(Path(p).name.startswith("tokenizer") or Path(p).name == "vocab.txt" for p in others):
            tok = AutoTokenizer.from_pretrained(copy.root, local_files_only=True)
    finally:
        remove_copy(copy.root)
    model.eval()
    if device != "cpu":
        model.to(device)
    reference = str(ref_or_bundle) if not isinstance(ref_or_bundle, Mapping) else str(ref_or_bundle.get("artifact"))
    return VerifiedPretrained(model=model, tokenizer=tok, reference=reference)
