"""Verification: signatures against trusted (and revoked) keys, then files against what was signed.

Ordinary verification failures never raise: they come back as a list of
:class:`Failure` (kind, path, message) in a :class:`VerificationResult`, which is
``ok`` only if a trusted, non-revoked key signed and nothing else failed (fail
closed). Only input that cannot be parsed at all raises (BundleFormatError,
EnvelopeFormatError).

Beyond what model-signing checks, we close these gaps:

* The subject digest covers file *contents* only, not names, so we always
  compare the full signed (path, digest) list: a renamed file is reported as
  renamed even when the subject digest is unchanged.
* Files the signer excluded (``ignore_paths`` inside the signed statement) are
  not silently skipped: unless the caller opts in, a file on disk that is not in
  the signed list is an ``extra`` failure, whatever the statement says.
* A sharded statement cannot record empty files; with our size extension it
  can, and without it an empty file on disk counts as ``extra``.
* The DSSE key id and the bundle's key hint are unauthenticated; trust comes only
  from a signature that verifies with a caller-supplied key, and a revoked key
  fails whether it is named by the bundle or proven by its signature.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from signing.bundle import Bundle, parse_bundle
from signing.dsse import INTOTO_PAYLOAD_TYPE, Envelope
from signing.hashing import HashingError, hash_tree_files
from signing.intoto import Statement, StatementError, parse_statement
from signing.keys import PublicKey, key_hint, key_id, verify_message
from signing.manifest import Manifest
from signing.sharding import ShardFormatError, hash_tree_sharded
from signing.tree import (
    DEFAULT_IGNORE_PATHS,
    TreeError,
    TreeFile,
    is_ignored,
    list_files,
    normalize_ignore_paths,
)


class FailureKind(StrEnum):
    """What went wrong; stable strings that the CLI and API print."""

    BAD_SIGNATURE = "bad_signature"
    UNTRUSTED_KEY = "untrusted_key"
    REVOKED_KEY = "revoked_key"
    INVALID_STATEMENT = "invalid_statement"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    MODIFIED = "modified"
    MISSING = "missing"
    EXTRA = "extra"
    RENAMED = "renamed"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class Failure:
    """One precise reason verification failed; ``path`` is set when a file is to blame."""

    kind: FailureKind
    path: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.path}: {self.message}" if self.path else f"{self.kind.value}: {self.message}"


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """Everything verification found. ``files_checked`` is 0 when the signature already failed."""

    failures: tuple[Failure, ...]
    signer_key_ids: tuple[str, ...] = ()
    statement: Statement | None = None
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and bool(self.signer_key_ids) and self.statement is not None


def _normalize_key_id(value: str) -> str:
    value = value.strip().lower()
    return value.removeprefix("sha256:")


def check_signatures(
    envelope: Envelope,
    trusted_public_keys: Iterable[PublicKey],
    revoked_key_ids: Iterable[str] = (),
    *,
    hint: str | None = None,
) -> tuple[list[str], list[Failure]]:
    """(key ids of trusted, unrevoked keys whose signature verifies; failures).

    ``revoked_key_ids`` may hold our key ids or model-signing key hints.
    """
    revoked = {_normalize_key_id(r) for r in revoked_key_ids}
    trusted = [(k, key_id(k), key_hint(k)) for k in trusted_public_keys]
    claimed = {s.keyid.lower() for s in envelope.signatures if s.keyid}
    if hint:
        claimed.add(hint.lower())
    failures: list[Failure] = []
    reported: set[str] = set()
    for name in sorted(claimed & revoked):
        reported.add(name)
        failures.append(Failure(FailureKind.REVOKED_KEY, None, f"the bundle names key {name}, which is revoked"))
    message = envelope.pae()
    signers: list[str] = []
    for key, kid, khint in trusted:
        if not any(verify_message(key, s.sig, message) for s in envelope.signatures):
            continue
        if kid in revoked or khint in revoked:
            if kid not in reported and khint not in reported:
                reported.add(kid)
                failures.append(Failure(FailureKind.REVOKED_KEY, None, f"signed by key {kid}, which is revoked"))
        else:
            signers.append(kid)
    if not trusted:
        failures.append(Failure(FailureKind.UNTRUSTED_KEY, None, "no trusted public keys were given"))
    elif not signers and not reported:
        named = [kid for _, kid, khint in trusted if kid in claimed or khint in claimed]
        if named:
            failures.append(
                Failure(
                    FailureKind.BAD_SIGNATURE,
                    None,
                    f"the signature does not verify with trusted key {named[0]}: payload or signature altered",
                )
            )
        else:
            by_kind = sorted(claimed, key=lambda name: (hint is not None and name == hint.lower(), name))
            names = ", ".join(_claimed_kind(name, hint) for name in by_kind) or "no key"
            keys = ", ".join(f"key id {kid} / hint {khint}" for _, kid, khint in trusted)
            failures.append(
                Failure(FailureKind.UNTRUSTED_KEY, None,
                        f"not signed by any trusted key (the bundle names {names}; trusted: {keys})")
            )
    return signers, failures


def _claimed_kind(name: str, hint: str | None) -> str:
    """Say which identifier a bundle used: model-signing writes a hint (hash of the PEM), mir a key id."""
    return f"hint {name}" if hint is not None and name == hint.lower() else f"key id {name}"


def verify_signed_statement(
    envelope: Envelope,
    trusted_public_keys: Iterable[PublicKey],
    revoked_key_ids: Iterable[str] = (),
    *,
    hint: str | None = None,
) -> VerificationResult:
    """Check the envelope's signatures and parse its statement; no files are looked at.

    The statement is only returned (and only parsed) when a trusted key signed it.
    """
    signers, failures = check_signatures(envelope, trusted_public_keys, revoked_key_ids, hint=hint)
    if failures or not signers:
        return VerificationResult(tuple(failures), tuple(signers))
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        failure = Failure(
            FailureKind.INVALID_STATEMENT,
            None,
            f"payloadType is {envelope.payload_type[:100]!r}, expected {INTOTO_PAYLOAD_TYPE!r}",
        )
        return VerificationResult((failure,), tuple(signers))
    try:
        statement = parse_statement(envelope.payload)
    except StatementError as exc:
        return VerificationResult((Failure(FailureKind(exc.kind), None, str(exc)),), tuple(signers))
    return VerificationResult((), tuple(signers), statement)


def diff_fingerprints(
    expected: Mapping[str, Hashable],
    actual: Mapping[str, Hashable],
    *,
    describe: Mapping[str, str] | None = None,
) -> list[Failure]:
    """Compare path -> content fingerprint maps: modified, renamed, missing, extra (sorted by path).

    A missing path whose exact content shows up under a new, unexpected path is
    reported once as ``renamed`` rather than as a missing plus an extra file.
    """
    failures: list[Failure] = []
    for path in sorted(expected.keys() & actual.keys()):
        if expected[path] != actual[path]:
            detail = (describe or {}).get(path, "content differs from what was signed")
            failures.append(Failure(FailureKind.MODIFIED, path, detail))
    extra_by_content: dict[Hashable, list[str]] = {}
    for path in sorted(actual.keys() - expected.keys()):
        extra_by_content.setdefault(actual[path], []).append(path)
    for path in sorted(expected.keys() - actual.keys()):
        candidates = extra_by_content.get(expected[path])
        if candidates:
            new_path = candidates.pop(0)
            failures.append(Failure(FailureKind.RENAMED, path, f"signed file is now at {new_path!r}"))
        else:
            failures.append(Failure(FailureKind.MISSING, path, "signed file is not present"))
    for paths in extra_by_content.values():
        for path in paths:
            failures.append(Failure(FailureKind.EXTRA, path, "file is not covered by the signature"))
    return sorted(failures, key=lambda f: (f.path or "", f.kind.value))


def compare_manifests(expected: Manifest, actual: Manifest) -> list[Failure]:
    """Differences between an expected manifest (signed, stored) and an actual one (hashed here)."""
    exp = {f.path: (f.digest, f.size) for f in expected.files}
    act = {f.path: (f.digest, f.size) for f in actual.files}
    describe = {
        p: f"expected {exp[p][0]} ({exp[p][1]} bytes), found {act[p][0]} ({act[p][1]} bytes)"
        for p in exp.keys() & act.keys()
    }
    return diff_fingerprints(exp, act, describe=describe)


def check_directory(
    root: str | os.PathLike[str],
    manifest: Manifest,
    *,
    workers: int | None = None,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
) -> list[Failure]:
    """Re-hash ``root`` and compare it with ``manifest`` (e.g. a registry version's manifest)."""
    algorithms = {f.digest.split(":", 1)[0] for f in manifest.files} or {"sha256"}
    if len(algorithms) != 1:
        return [Failure(FailureKind.UNSUPPORTED_ALGORITHM, None, "manifest mixes digest algorithms")]
    wanted = {f.path for f in manifest.files}
    ignore = [p for p in normalize_ignore_paths(ignore_paths) if not any(is_ignored(w, [p]) for w in wanted)]
    try:
        files = list_files(Path(root), ignore)
        actual = Manifest.from_entries(hash_tree_files(files, algorithms.pop(), workers))
    except (TreeError, HashingError) as exc:
        return [Failure(FailureKind.UNREADABLE, None, str(exc))]
    return compare_manifests(manifest, actual)


def _effective_ignore(statement: Statement, ignore_paths: Iterable[str], honor_signed_ignore_paths: bool) -> list[str]:
    """Caller's ignore list, minus entries that would hide signed files, plus signed ones if asked."""
    signed = statement.paths()
    entries = list(normalize_ignore_paths(ignore_paths))
    if honor_signed_ignore_paths:
        entries += [p for p in statement.serialization.ignore_paths if p not in entries]
    return [p for p in entries if not any(is_ignored(s, [p]) for s in signed)]


def check_statement_against_directory(
    statement: Statement,
    root: str | os.PathLike[str],
    *,
    workers: int | None = None,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
    honor_signed_ignore_paths: bool = False,
) -> tuple[list[Failure], int]:
    """Hash ``root`` the way the statement says and compare: (failures, number of files hashed)."""
    ignore = _effective_ignore(statement, ignore_paths, honor_signed_ignore_paths)
    try:
        files = list_files(Path(root), ignore)
        if statement.serialization.method == "files":
            failures = _compare_files(statement, files, workers)
        else:
            failures = _compare_shards(statement, files, workers)
    except (TreeError, HashingError, ShardFormatError) as exc:
        return [Failure(FailureKind.UNREADABLE, None, str(exc))], 0
    return failures, len(files)


def _compare_files(statement: Statement, files: list[TreeFile], workers: int | None) -> list[Failure]:
    entries = hash_tree_files(files, statement.serialization.hash_type, workers)
    actual: dict[str, Hashable] = {e.path: e.digest for e in entries}
    expected: dict[str, Hashable] = dict(statement.file_digests())
    describe = {p: f"expected {expected[p]}, found {actual[p]}" for p in expected.keys() & actual.keys()}
    return diff_fingerprints(expected, actual, describe=describe)


ShardList = tuple[tuple[int, int, str], ...]


def _compare_shards(statement: Statement, files: list[TreeFile], workers: int | None) -> list[Failure]:
    shard_size = statement.serialization.shard_size
    assert shard_size is not None
    digests = hash_tree_sharded(files, shard_size, workers)
    grouped: dict[str, list[tuple[int, int, str]]] = {f.path: [] for f in files}
    for shard in digests.shards:
        grouped[shard.path].append((shard.start, shard.end, shard.digest))
    actual: dict[str, ShardList] = {path: tuple(sorted(items)) for path, items in grouped.items()}
    expected: dict[str, ShardList] = {
        path: tuple(sorted((s, e, d) for (s, e), d in ranges.items()))
        for path, ranges in statement.shards_by_path().items()
    }
    for path, size in (statement.file_sizes or {}).items():
        if size == 0:
            expected[path] = ()
    failures = diff_fingerprints(expected, actual, describe=_shard_details(expected, actual))
    if statement.file_sizes is None:
        failures = [_explain_empty(f, actual) for f in failures]
    return failures


def _shard_details(expected: Mapping[str, ShardList], actual: Mapping[str, ShardList]) -> dict[str, str]:
    details = {}
    for path in expected.keys() & actual.keys():
        exp, act = set(expected[path]), set(actual[path])
        bad = sorted({(s, e) for s, e, _ in exp ^ act})
        ranges = ", ".join(f"[{s}:{e})" for s, e in bad[:5]) + (" ..." if len(bad) > 5 else "")
        details[path] = f"{len(bad)} shard(s) differ from what was signed: {ranges}"
    return details


def _explain_empty(failure: Failure, actual: Mapping[str, ShardList]) -> Failure:
    if failure.kind is FailureKind.EXTRA and failure.path is not None and actual.get(failure.path) == ():
        return Failure(
            FailureKind.EXTRA,
            failure.path,
            "empty file not covered by the signature (model-signing's shard format cannot record empty files)",
        )
    return failure


def verify_bundle(
    bundle: bytes | str | Bundle,
    root: str | os.PathLike[str],
    trusted_public_keys: Iterable[PublicKey],
    revoked_key_ids: Iterable[str] = (),
    *,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
    workers: int | None = None,
    honor_signed_ignore_paths: bool = False,
) -> VerificationResult:
    """Verify a Sigstore bundle (ours or model-signing's) against the directory ``root``.

    Raises BundleFormatError only if the bundle cannot be parsed; every other
    problem is a Failure in the result. Files are only hashed once a trusted key's
    signature has verified. Add the bundle's own path to ``ignore_paths`` when it
    lives inside ``root``.
    """
    parsed = bundle if isinstance(bundle, Bundle) else parse_bundle(bundle)
    result = verify_signed_statement(parsed.envelope, trusted_public_keys, revoked_key_ids, hint=parsed.key_hint)
    if result.statement is None:
        return result
    failures, count = check_statement_against_directory(
        result.statement,
        root,
        workers=workers,
        ignore_paths=ignore_paths,
        honor_signed_ignore_paths=honor_signed_ignore_paths,
    )
    return VerificationResult(tuple(failures), result.signer_key_ids, result.statement, count)


def verify_envelope_for_manifest(
    envelope: Envelope | bytes | str,
    manifest: Manifest,
    trusted_public_keys: Iterable[PublicKey],
    revoked_key_ids: Iterable[str] = (),
) -> VerificationResult:
    """Check that a DSSE envelope is a trusted signature over exactly ``manifest``.

    For the registry: the statement must be a ``files`` statement with the
    manifest's algorithm, listing exactly the manifest's paths with its digests
    (and, when the statement carries sizes, its sizes). Comparing the whole list,
    not the subject digest, is what makes renamed files fail.
    Raises EnvelopeFormatError for an unparseable envelope.
    """
    parsed = envelope if isinstance(envelope, Envelope) else Envelope.from_json(envelope)
    result = verify_signed_statement(parsed, trusted_public_keys, revoked_key_ids)
    statement = result.statement
    if statement is None:
        return result
    failures: list[Failure] = []
    algorithms = {f.digest.split(":", 1)[0] for f in manifest.files}
    if statement.serialization.method != "files":
        failures.append(
            Failure(
                FailureKind.UNSUPPORTED_ALGORITHM,
                None,
                "a sharded statement cannot be checked against a manifest of whole-file digests",
            )
        )
    elif algorithms and algorithms != {statement.serialization.hash_type}:
        failures.append(
            Failure(
                FailureKind.UNSUPPORTED_ALGORITHM,
                None,
                f"statement digests use {statement.serialization.hash_type}, "
                f"the manifest uses {', '.join(sorted(algorithms))}",
            )
        )
    else:
        expected: dict[str, Hashable] = dict(statement.file_digests())
        actual: dict[str, Hashable] = {f.path: f.digest for f in manifest.files}
        failures = diff_fingerprints(expected, actual)
        if statement.file_sizes is not None:
            for entry in manifest.files:
                signed_size = statement.file_sizes.get(entry.path)
                if signed_size is not None and signed_size != entry.size:
                    failures.append(
                        Failure(
                            FailureKind.MODIFIED, entry.path, f"signed size {signed_size}, manifest says {entry.size}"
                        )
                    )
    return VerificationResult(tuple(failures), result.signer_key_ids, statement, len(manifest.files))
