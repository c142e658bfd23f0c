"""Sharded SHA-256: the same ranges and digests as model-signing, in parallel."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import model_signing
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_signing._serialization.file_shard import _endpoints

from signing.sharding import (
    ShardFormatError,
    hash_directory_sharded,
    parse_shard_name,
    shard_ranges,
    sharded_algorithm,
)


@given(size=st.integers(0, 10_000), shard_size=st.integers(1, 3000))
def test_ranges_match_model_signing(size: int, shard_size: int) -> None:
    ours = shard_ranges(size, shard_size)
    if size == 0:
        assert ours == []  # model-signing emits no shard for an empty file either
        return
    ends = list(_endpoints(shard_size, size))
    assert ours == list(zip([0, *ends[:-1]], ends, strict=True))


def test_shard_digests_match_model_signing(model_tree: Path) -> None:
    (model_tree / "weights.bin").write_bytes(os.urandom(10_001))
    theirs = (
        model_signing.hashing.Config()
        .use_shard_serialization(shard_size=1000)
        .set_ignored_paths(paths=[], ignore_git_paths=True)
        .hash(model_tree)
    )
    their_resources = [
        (rd.identifier, rd.digest.algorithm, rd.digest.digest_hex) for rd in theirs.resource_descriptors()
    ]
    ours = hash_directory_sharded(model_tree, 1000, workers=4)
    assert [(s.name, sharded_algorithm(1000), s.digest) for s in ours.shards] == their_resources
    assert ours.file_sizes["empty.txt"] == 0


def test_parallel_equals_serial(model_tree: Path) -> None:
    assert hash_directory_sharded(model_tree, 777, workers=1) == hash_directory_sharded(model_tree, 777, workers=6)


def test_each_shard_is_the_sha256_of_its_range(tmp_path: Path) -> None:
    data = os.urandom(2500)
    (tmp_path / "f").write_bytes(data)
    shards = hash_directory_sharded(tmp_path, 1000).shards
    assert [(s.start, s.end) for s in shards] == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert [s.digest for s in shards] == [hashlib.sha256(data[s.start : s.end]).hexdigest() for s in shards]


def test_colon_in_a_path_cannot_be_sharded(tmp_path: Path) -> None:
    (tmp_path / "weights:v2").write_bytes(b"x")
    with pytest.raises(ShardFormatError, match="contains ':'"):
        hash_directory_sharded(tmp_path, 10)


def test_bad_shard_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        shard_ranges(10, 0)


def test_parse_shard_name() -> None:
    assert parse_shard_name("dir/w.bin:0:1000") == ("dir/w.bin", 0, 1000)
    for bad in ["w.bin", "w.bin:1", "w.bin:01:5", "w.bin:5:5", "w.bin:-1:5", "../w:0:1", "w.bin:0:+5", "a:b:0:1"]:
        with pytest.raises(ShardFormatError):
            parse_shard_name(bad)


@given(st.text(max_size=60))
def test_parse_shard_name_never_crashes(name: str) -> None:
    try:
        path, start, end = parse_shard_name(name)
    except ShardFormatError:
        return
    assert f"{path}:{start}:{end}" == name
