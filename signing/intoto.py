"""in-toto Statement v1 with the OpenSSF model-signing predicate (``signature/v1.0``).

Shape (what model-signing 1.x writes and reads)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": <model name>, "digest": {"sha256": <root>}}],
     "predicateType": "https://model_signing/signature/v1.0",
     "predicate": {
        "serialization": {"method": "files"|"shards", "hash_type": "sha256"|"blake3",
                          "allow_symlinks": bool, "ignore_paths": [...], "shard_size": int},
        "resources": [{"name": <path or path:start:end>, "algorithm": ..., "digest": <hex>}, ...],
        "mir": {"file_sizes": {<path>: <size>, ...}}}}

``<root>`` is SHA-256 over the concatenated raw resource digests in listed
order. It does *not* cover the resource names, so the subject digest alone
cannot tell two trees with the same contents under different names apart; the
names are only bound by the signature over the whole predicate. Our verifiers
therefore always compare the full (name, digest) list, never just the subject.
The ``mir`` member is our extension (model-signing ignores unknown predicate
members): it adds every file's size, which also records empty files, which a
sharded serialization otherwise drops.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signing.hashing import ALGORITHMS
from signing.manifest import Manifest
from signing.paths import InvalidPathError, validate_relative_path
from signing.sharding import (
    SHARDED_HASH_TYPE,
    ShardedDigests,
    ShardFormatError,
    parse_shard_name,
    sharded_algorithm,
    sort_key,
)
from signing.tree import DEFAULT_IGNORE_PATHS, normalize_ignore_paths

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
COMPAT_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"
EXTENSION_KEY = "mir"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_SHARD_SIZE = 1 << 50


class StatementError(ValueError):
    """A statement we cannot accept. ``kind`` is ``invalid_statement`` or ``unsupported_algorithm``."""

    def __init__(self, message: str, kind: str = "invalid_statement") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Resource:
    """One predicate resource: a file (``path``) or shard (``path:start:end``) and its hex digest."""

    name: str
    algorithm: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest}


@dataclass(frozen=True, slots=True)
class Serialization:
    """How the resources were computed; verifiers recompute the directory the same way."""

    method: str
    hash_type: str
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    shard_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "method": self.method,
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
        }
        if self.shard_size is not None:
            result["shard_size"] = self.shard_size
        if self.ignore_paths:
            result["ignore_paths"] = list(self.ignore_paths)
        return result

    def resource_algorithm(self) -> str:
        if self.method == "shards":
            assert self.shard_size is not None
            return sharded_algorithm(self.shard_size)
        return self.hash_type


@dataclass(frozen=True, slots=True)
class Statement:
    """A parsed, internally consistent model-signing statement."""

    model_name: str
    subject_digest: str
    serialization: Serialization
    resources: tuple[Resource, ...]
    file_sizes: dict[str, int] | None = None

    def file_digests(self) -> dict[str, str]:
        """Path -> ``<algorithm>:<hex>`` for a ``files`` statement (the manifest's digest form)."""
        if self.serialization.method != "files":
            raise ValueError("only a 'files' statement has whole-file digests")
        return {r.name: f"{self.serialization.hash_type}:{r.digest}" for r in self.resources}

    def shards_by_path(self) -> dict[str, dict[tuple[int, int], str]]:
        """Path -> {(start, end): hex} for a ``shards`` statement."""
        result: dict[str, dict[tuple[int, int], str]] = {}
        for resource in self.resources:
            path, start, end = parse_shard_name(resource.name)
            result.setdefault(path, {})[(start, end)] = resource.digest
        return result

    def paths(self) -> set[str]:
        """Every file path the statement covers (with the ``mir`` sizes: empty files too)."""
        files_mode = self.serialization.method == "files"
        names = {r.name for r in self.resources} if files_mode else set(self.shards_by_path())
        if self.file_sizes is not None:
            names |= set(self.file_sizes)
        return names

    def to_manifest(self) -> Manifest:
        """The mir manifest the statement describes; needs a ``files`` statement with sizes."""
        if self.file_sizes is None:
            raise ValueError("the statement carries no file sizes (not made by mir)")
        digests = self.file_digests()
        return Manifest.from_dict(
            {"files": [{"path": p, "size": self.file_sizes[p], "digest": d} for p, d in digests.items()]}
        )


def root_digest(resources: Iterable[Resource]) -> str:
    """SHA-256 over the raw resource digests in the given order: model-signing's subject digest."""
    hasher = hashlib.sha256()
    for resource in resources:
        hasher.update(bytes.fromhex(resource.digest))
    return hasher.hexdigest()


def _build(
    model_name: str,
    serialization: Serialization,
    resources: list[Resource],
    file_sizes: Mapping[str, int],
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization.to_dict(),
            "resources": [r.to_dict() for r in resources],
            EXTENSION_KEY: {"file_sizes": dict(sorted(file_sizes.items()))},
        },
    }


def statement_from_manifest(
    manifest: Manifest,
    *,
    model_name: str = "model",
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
    allow_symlinks: bool = False,
) -> dict[str, Any]:
    """The statement (as a JSON-ready dict) for a manifest of whole-file digests."""
    if not manifest.files:
        raise ValueError("cannot sign an empty manifest (no files)")
    algorithms = {f.digest.split(":", 1)[0] for f in manifest.files}
    if len(algorithms) != 1:
        raise ValueError(f"manifest mixes digest algorithms ({', '.join(sorted(algorithms))}); sign one at a time")
    algorithm = algorithms.pop()
    entries = sorted(manifest.files, key=lambda f: sort_key(f.path))
    resources = [Resource(f.path, algorithm, f.digest.split(":", 1)[1]) for f in entries]
    serialization = Serialization("files", algorithm, allow_symlinks, normalize_ignore_paths(ignore_paths))
    return _build(model_name, serialization, resources, {f.path: f.size for f in manifest.files})


def statement_from_shards(
    digests: ShardedDigests,
    *,
    model_name: str = "model",
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
    allow_symlinks: bool = False,
) -> dict[str, Any]:
    """The statement for a sharded hashing of a directory."""
    if not digests.file_sizes:
        raise ValueError("cannot sign an empty directory (no files)")
    algorithm = sharded_algorithm(digests.shard_size)
    ordered = sorted(digests.shards, key=lambda s: sort_key(s.path, s.start, s.end))
    resources = [Resource(s.name, algorithm, s.digest) for s in ordered]
    serialization = Serialization(
        "shards", SHARDED_HASH_TYPE, allow_symlinks, normalize_ignore_paths(ignore_paths), digests.shard_size
    )
    return _build(model_name, serialization, resources, digests.file_sizes)


def statement_to_json(statement: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the exact payload bytes we sign."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StatementError(f"duplicate JSON key {key[:100]!r} in statement")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise StatementError(f"statement contains non-standard JSON number {name}")


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise StatementError(f"{where} has no {key!r}")
    value = obj[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise StatementError(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _parse_serialization(raw: object) -> Serialization:
    if not isinstance(raw, Mapping):
        raise StatementError("predicate.serialization must be an object")
    method = _get(raw, "method", str, "serialization")
    hash_type = _get(raw, "hash_type", str, "serialization")
    allow_symlinks = _get(raw, "allow_symlinks", bool, "serialization")
    if method not in ("files", "shards"):
        raise StatementError(f"unsupported serialization method {method[:100]!r}", "unsupported_algorithm")
    allowed = ALGORITHMS if method == "files" else (SHARDED_HASH_TYPE,)
    if hash_type not in allowed:
        raise StatementError(
            f"unsupported hash algorithm {hash_type[:100]!r} for method {method!r} (supported: {', '.join(allowed)})",
            "unsupported_algorithm",
        )
    ignore_raw = raw.get("ignore_paths", [])
    if not isinstance(ignore_raw, list) or not all(isinstance(p, str) for p in ignore_raw):
        raise StatementError("serialization.ignore_paths must be a list of strings")
    ignore = tuple(sorted({p.rstrip("/") for p in ignore_raw if p.rstrip("/")}))
    shard_size = None
    if method == "shards":
        # model-signing writes the shard size through a protobuf Struct, i.e. as a float ("4.0").
        value = _get(raw, "shard_size", (int, float), "serialization")
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                raise StatementError(f"serialization.shard_size {value!r} is not an integer")
            value = int(value)
        if not 0 < value <= MAX_SHARD_SIZE:
            raise StatementError(f"serialization.shard_size {value} out of range")
        shard_size = value
    return Serialization(method, hash_type, allow_symlinks, ignore, shard_size)


def _parse_resources(raw: object, serialization: Serialization) -> tuple[Resource, ...]:
    if not isinstance(raw, list) or not raw:
        raise StatementError("predicate.resources must be a non-empty list")
    expected_algorithm = serialization.resource_algorithm()
    resources = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"resource #{index}"
        if not isinstance(item, Mapping):
            raise StatementError(f"{where} must be an object")
        name = _get(item, "name", str, where)
        algorithm = _get(item, "algorithm", str, where)
        digest = _get(item, "digest", str, where)
        if algorithm != expected_algorithm:
            raise StatementError(
                f"{where} ({name[:200]!r}) uses algorithm {algorithm[:100]!r}, expected {expected_algorithm!r}",
                "unsupported_algorithm",
            )
        if not _HEX64.match(digest):
            raise StatementError(f"{where} ({name[:200]!r}) digest is not 64 lowercase hex digits")
        try:
            if serialization.method == "files":
                validate_relative_path(name)
            else:
                parse_shard_name(name)
        except (InvalidPathError, ShardFormatError) as exc:
            raise StatementError(f"{where}: bad name: {exc}") from exc
        if name in seen:
            raise StatementError(f"{where}: duplicate resource {name[:200]!r}")
        seen.add(name)
        resources.append(Resource(name, algorithm, digest))
    return tuple(resources)


def _parse_sizes(predicate: Mapping[str, Any]) -> dict[str, int] | None:
    ext = predicate.get(EXTENSION_KEY)
    if ext is None:
        return None
    if not isinstance(ext, Mapping) or not isinstance(ext.get("file_sizes"), Mapping):
        raise StatementError(f"predicate.{EXTENSION_KEY} must be an object with a 'file_sizes' object")
    sizes: dict[str, int] = {}
    for path, size in ext["file_sizes"].items():
        try:
            validate_relative_path(path)
        except InvalidPathError as exc:
            raise StatementError(f"predicate.{EXTENSION_KEY}.file_sizes: {exc}") from exc
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SHARD_SIZE:
            raise StatementError(f"predicate.{EXTENSION_KEY}.file_sizes[{path[:200]!r}] is not a valid size")
        sizes[path] = size
    return sizes


def _check_sizes(statement: Statement) -> None:
    """With sizes present, the resources must be exactly what those sizes imply."""
    sizes = statement.file_sizes
    if sizes is None:
        return
    if statement.serialization.method == "files":
        if set(sizes) != {r.name for r in statement.resources}:
            raise StatementError("predicate file sizes and resources name different files")
        return
    shard_size = statement.serialization.shard_size
    assert shard_size is not None
    shards = statement.shards_by_path()
    for path, ranges in shards.items():
        if path not in sizes:
            raise StatementError(f"shards of {path[:200]!r} but no size for it")
        size = sizes[path]
        expected = [(s, min(s + shard_size, size)) for s in range(0, size, shard_size)]
        if sorted(ranges) != expected:
            raise StatementError(f"shards of {path[:200]!r} do not cover its {size} bytes in {shard_size}-byte steps")
    for path, size in sizes.items():
        if size > 0 and path not in shards:
            raise StatementError(f"{path[:200]!r} has {size} bytes but no shards")


def parse_statement(payload: bytes) -> Statement:
    """Parse and check a statement payload; raises StatementError (with ``kind``) on any problem.

    Checked: statement and predicate types, exactly one subject, serialization
    parameters, every resource's name/algorithm/digest, duplicates, that the
    subject digest is the root digest of the resources as listed, and (when
    present) that our file sizes agree with the resources.
    """
    try:
        data = json.loads(payload, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except StatementError:
        raise
    except (ValueError, RecursionError) as exc:
        raise StatementError(f"statement is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StatementError("statement must be a JSON object")
    if data.get("_type") != STATEMENT_TYPE:
        raise StatementError(f"statement _type is {str(data.get('_type'))[:100]!r}, expected {STATEMENT_TYPE!r}")
    predicate_type = data.get("predicateType")
    if predicate_type == COMPAT_PREDICATE_TYPE:
        raise StatementError(
            "statement uses the pre-1.0 model-signing predicate (Digests/v0.1), which does not bind "
            "the file list; re-sign with a current signer"
        )
    if predicate_type != PREDICATE_TYPE:
        raise StatementError(f"predicateType is {str(predicate_type)[:100]!r}, expected {PREDICATE_TYPE!r}")
    subjects = data.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], Mapping):
        raise StatementError("statement must have exactly one subject")
    model_name = _get(subjects[0], "name", str, "subject")
    subject_digest = _get(subjects[0], "digest", Mapping, "subject").get("sha256")
    if not isinstance(subject_digest, str) or not _HEX64.match(subject_digest):
        raise StatementError("subject digest must have a 'sha256' of 64 lowercase hex digits")
    predicate = data.get("predicate")
    if not isinstance(predicate, Mapping):
        raise StatementError("statement predicate must be an object")
    serialization = _parse_serialization(predicate.get("serialization"))
    resources = _parse_resources(predicate.get("resources"), serialization)
    if root_digest(resources) != subject_digest:
        raise StatementError("subject digest does not match the digests of the listed resources")
    statement = Statement(model_name, subject_digest, serialization, resources, _parse_sizes(predicate))
    _check_sizes(statement)
    return statement
