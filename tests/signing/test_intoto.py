"""in-toto statements: same subject digest as model-signing, strict parsing of everything else."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import model_signing
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from model_signing._signing.signing import Payload

from signing.hashing import hash_directory
from signing.intoto import (
    PREDICATE_TYPE,
    StatementError,
    parse_statement,
    root_digest,
    statement_from_manifest,
    statement_from_shards,
    statement_to_json,
)
from signing.manifest import Manifest
from signing.sharding import hash_directory_sharded


def their_statement(model_tree: Path, **shards: int) -> dict[str, Any]:
    config = model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=True)
    if shards:
        config = config.use_shard_serialization(**shards)
    payload = Payload(config.hash(model_tree))
    return json.loads(json_format.MessageToJson(payload.statement.pb))


def test_files_statement_matches_model_signing(model_tree: Path) -> None:
    ours = statement_from_manifest(hash_directory(model_tree), model_name=model_tree.name)
    theirs = their_statement(model_tree)
    assert ours["subject"] == theirs["subject"]  # same root digest, same resource order
    assert ours["predicate"]["resources"] == theirs["predicate"]["resources"]
    assert ours["predicateType"] == theirs["predicateType"] == PREDICATE_TYPE
    assert ours["predicate"]["serialization"]["method"] == "files"


def test_sharded_statement_matches_model_signing(model_tree: Path) -> None:
    ours = statement_from_shards(hash_directory_sharded(model_tree, 4096), model_name=model_tree.name)
    theirs = their_statement(model_tree, shard_size=4096)
    assert ours["subject"] == theirs["subject"]
    assert ours["predicate"]["resources"] == theirs["predicate"]["resources"]
    assert ours["predicate"]["serialization"]["shard_size"] == 4096  # an int; theirs is written as 4096.0
    parsed = parse_statement(json.dumps(theirs).encode())
    assert parsed.serialization.shard_size == 4096


def test_parse_round_trip(model_tree: Path) -> None:
    manifest = hash_directory(model_tree)
    statement = parse_statement(statement_to_json(statement_from_manifest(manifest)))
    assert statement.to_manifest() == manifest
    assert statement.paths() == {f.path for f in manifest.files}
    sharded = parse_statement(statement_to_json(statement_from_shards(hash_directory_sharded(model_tree, 100))))
    assert "empty.txt" in sharded.paths()  # our size extension records the empty file


def test_subject_digest_ignores_names(model_tree: Path) -> None:
    """The gap in the format: renaming a file (keeping the order) keeps the subject digest."""
    before = statement_from_manifest(hash_directory(model_tree))
    (model_tree / "config.json").rename(model_tree / "config.json.bak")
    after = statement_from_manifest(hash_directory(model_tree))
    assert before["subject"] == after["subject"]
    assert before["predicate"]["resources"] != after["predicate"]["resources"]


def test_empty_or_mixed_manifest_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="empty"):
        statement_from_manifest(Manifest.from_entries([]))
    mixed = Manifest.from_dict(
        {
            "files": [
                {"path": "a", "size": 0, "digest": "sha256:" + "0" * 64},
                {"path": "b", "size": 0, "digest": "blake3:" + "0" * 64},
            ]
        }
    )
    with pytest.raises(ValueError, match="mixes"):
        statement_from_manifest(mixed)


BASE: dict[str, Any] = statement_from_manifest(
    Manifest.from_dict(
        {
            "files": [
                {"path": "a.txt", "size": 1, "digest": "sha256:" + "1" * 64},
                {"path": "b.txt", "size": 2, "digest": "sha256:" + "2" * 64},
            ]
        }
    )
)


def mutated(change: Any) -> bytes:
    statement = copy.deepcopy(BASE)
    change(statement)
    return json.dumps(statement).encode()


def _fix_root(s: dict[str, Any]) -> None:
    from signing.intoto import Resource

    resources = [Resource(r["name"], r["algorithm"], r["digest"]) for r in s["predicate"]["resources"]]
    s["subject"][0]["digest"]["sha256"] = root_digest(resources)


def _set(path: list[Any], value: Any, fix: bool = False) -> Any:
    def change(s: dict[str, Any]) -> None:
        target = s
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        if fix:
            _fix_root(s)

    return change


INVALID = {
    "type": _set(["_type"], "https://in-toto.io/Statement/v0.1"),
    "predicate type": _set(["predicateType"], "https://slsa.dev/provenance/v1"),
    "compat predicate": _set(["predicateType"], "https://model_signing/Digests/v0.1"),
    "two subjects": lambda s: s["subject"].append(s["subject"][0]),
    "no subject digest": _set(["subject", 0, "digest"], {}),
    "subject mismatch": _set(["subject", 0, "digest", "sha256"], "0" * 64),
    "no resources": _set(["predicate", "resources"], [], fix=True),
    "resource not object": _set(["predicate", "resources", 0], "a.txt"),
    "upper-case digest": _set(["predicate", "resources", 0, "digest"], "A" * 64, fix=True),
    "short digest": _set(["predicate", "resources", 0, "digest"], "1" * 63),
    "traversal": _set(["predicate", "resources", 0, "name"], "../a.txt", fix=True),
    "absolute": _set(["predicate", "resources", 0, "name"], "/etc/passwd", fix=True),
    "duplicate": _set(["predicate", "resources", 1, "name"], "a.txt", fix=True),
    "sizes disagree": _set(["predicate", "mir", "file_sizes"], {"a.txt": 1}),
    "negative size": _set(["predicate", "mir", "file_sizes", "a.txt"], -1),
    "bool allow_symlinks": _set(["predicate", "serialization", "allow_symlinks"], "false"),
    "no method": _set(["predicate", "serialization", "method"], KeyError),
    "ignore not list": _set(["predicate", "serialization", "ignore_paths"], ".git"),
}

UNSUPPORTED = {
    "md5 hash type": lambda s: (
        s["predicate"]["serialization"].update(hash_type="md5"),
        [r.update(algorithm="md5") for r in s["predicate"]["resources"]],
    ),
    "resource algorithm": _set(["predicate", "resources", 1, "algorithm"], "sha512"),
    "method": _set(["predicate", "serialization", "method"], "tensors"),
    "blake3 shards": lambda s: s["predicate"]["serialization"].update(
        method="shards", hash_type="blake3", shard_size=1
    ),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_statements(name: str) -> None:
    with pytest.raises(StatementError) as info:
        parse_statement(mutated(INVALID[name]))
    assert info.value.kind == "invalid_statement"


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_algorithms(name: str) -> None:
    with pytest.raises(StatementError) as info:
        parse_statement(mutated(UNSUPPORTED[name]))
    assert info.value.kind == "unsupported_algorithm"


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b"not json", b'{"a": 1, "a": 2}', b'{"_type": NaN}', b"[" * 100_000],
)
def test_non_statements(payload: bytes) -> None:
    with pytest.raises(StatementError):
        parse_statement(payload)


@pytest.mark.parametrize("shard_size", [0, -5, 2.5, True, float("inf"), "4"])
def test_bad_shard_sizes(shard_size: object) -> None:
    def change(s: dict[str, Any]) -> None:
        s["predicate"]["serialization"].update(method="shards", shard_size=shard_size)

    with pytest.raises(StatementError):
        parse_statement(mutated(change))


def test_shards_must_cover_the_signed_size() -> None:
    digests_ok = {"a.txt:0:1": "1" * 64, "b.txt:0:2": "2" * 64}

    def sharded(names: dict[str, str], sizes: dict[str, int]) -> bytes:
        def change(s: dict[str, Any]) -> None:
            s["predicate"]["serialization"].update(method="shards", shard_size=2)
            s["predicate"]["resources"] = [
                {"name": n, "algorithm": "sha256-sharded-2", "digest": d} for n, d in names.items()
            ]
            s["predicate"]["mir"]["file_sizes"] = sizes
            _fix_root(s)

        return mutated(change)

    assert parse_statement(sharded(digests_ok, {"a.txt": 1, "b.txt": 2, "e": 0})).paths() == {"a.txt", "b.txt", "e"}
    with pytest.raises(StatementError, match="do not cover"):
        parse_statement(sharded(digests_ok, {"a.txt": 3, "b.txt": 2}))
    with pytest.raises(StatementError, match="no shards"):
        parse_statement(sharded(digests_ok, {"a.txt": 1, "b.txt": 2, "c": 5}))
    with pytest.raises(StatementError, match="no size"):
        parse_statement(sharded(digests_ok, {"a.txt": 1}))


@settings(max_examples=150)
@given(st.binary(max_size=300))
def test_parse_arbitrary_bytes_only_raises_statement_errors(data: bytes) -> None:
    with pytest.raises(StatementError):
        parse_statement(data)
