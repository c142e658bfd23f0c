"""Whole-file hashing: plain digests, parallel = serial, safe tree walking, clear errors."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import blake3
import pytest

from signing.hashing import (
    HashingError,
    UnsupportedAlgorithmError,
    hash_directory,
    hash_file,
    hash_range,
    hash_tree_files,
)
from signing.tree import TreeError, list_files
from tests.signing.conftest import TREE_FILES


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 100_000])
def test_hash_file_is_the_plain_whole_file_digest(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    # A tiny chunk size forces many reads; the digest must not depend on it.
    assert hash_file(path, chunk_size=4096) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert hash_file(path, "blake3", chunk_size=4096) == "blake3:" + blake3.blake3(data).hexdigest()
    assert hash_file(path, "blake3", threads=4) == "blake3:" + blake3.blake3(data).hexdigest()


def test_hash_range_reads_only_the_range(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hash_range(path, 100, 5000, chunk_size=999) == (4900, hashlib.sha256(data[100:5000]).hexdigest())


def test_hash_range_refuses_a_short_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with pytest.raises(HashingError, match="ended 10 bytes early"):
        hash_range(path, 0, 20)


def test_unknown_algorithm_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(UnsupportedAlgorithmError, match="md5"):
        hash_file(tmp_path / "f", "md5")
    with pytest.raises(UnsupportedAlgorithmError):
        hash_directory(tmp_path, "sha512")


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(HashingError, match="missing"):
        hash_file(tmp_path / "missing")


def test_hash_directory_builds_the_manifest(model_tree: Path) -> None:
    manifest = hash_directory(model_tree)
    by_path = manifest.by_path()
    expected = {p: d for p, d in TREE_FILES.items() if not p.startswith(".git")}
    expected["weights.bin"] = (model_tree / "weights.bin").read_bytes()
    assert set(by_path) == set(expected)  # .git and .gitattributes left out by default
    for path, data in expected.items():
        assert by_path[path].digest == "sha256:" + hashlib.sha256(data).hexdigest()
        assert by_path[path].size == len(data)


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_parallel_equals_serial(model_tree: Path, algorithm: str) -> None:
    serial = hash_directory(model_tree, algorithm, workers=1)
    assert hash_directory(model_tree, algorithm, workers=8) == serial
    assert hash_directory(model_tree, algorithm, workers=3, chunk_size=1000) == serial


def test_ignore_paths_can_be_cleared(model_tree: Path) -> None:
    paths = {f.path for f in hash_directory(model_tree, ignore_paths=()).files}
    assert ".git/HEAD" in paths
    assert ".gitattributes" in paths


def test_symlink_inside_the_root_is_followed(model_tree: Path) -> None:
    os.symlink("config.json", model_tree / "link.json")
    entry = hash_directory(model_tree).by_path()["link.json"]
    assert entry.digest == hash_file(model_tree / "config.json")
    assert [f.via_symlink for f in list_files(model_tree) if f.path == "link.json"] == [True]


def test_symlink_leaving_the_root_is_refused(model_tree: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not publish")
    os.symlink(secret, model_tree / "escape")
    with pytest.raises(TreeError, match="outside the directory"):
        hash_directory(model_tree)


def test_relative_symlink_escape_is_refused(model_tree: Path) -> None:
    os.symlink("../../../../etc/hostname", model_tree / "a" / "escape")
    with pytest.raises(TreeError, match="outside the directory"):
        hash_directory(model_tree)


def test_directory_symlink_and_dangling_symlink_are_refused(model_tree: Path) -> None:
    os.symlink("tokenizer", model_tree / "dirlink")
    with pytest.raises(TreeError, match="other than a regular file"):
        hash_directory(model_tree)
    os.unlink(model_tree / "dirlink")
    os.symlink("nowhere", model_tree / "dangling")
    with pytest.raises(TreeError, match="dangling"):
        hash_directory(model_tree)


def test_special_files_are_refused(model_tree: Path) -> None:
    os.mkfifo(model_tree / "fifo")
    with pytest.raises(TreeError, match="FIFO"):
        hash_directory(model_tree)


def test_socket_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "s"))
        with pytest.raises(TreeError, match="socket"):
            list_files(root)
    finally:
        sock.close()


@pytest.mark.parametrize("name", ["back\\slash", "cafe\u0301", "tab\tname"])
def test_names_that_are_not_manifest_paths_are_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / name).write_bytes(b"x")
    with pytest.raises(TreeError, match="not allowed in a manifest"):
        hash_directory(root)


def test_undecodable_name_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), b"bad\xff"), "wb") as handle:
        handle.write(b"x")
    with pytest.raises(TreeError, match="not allowed in a manifest"):
        hash_directory(root)


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(TreeError, match="not a directory"):
        hash_directory(tmp_path / "f")
    with pytest.raises(TreeError, match="not a directory"):
        hash_directory(tmp_path / "missing")


def test_bad_ignore_path_is_refused(model_tree: Path) -> None:
    with pytest.raises(TreeError, match="bad ignore path"):
        hash_directory(model_tree, ignore_paths=["../x"])


def test_a_file_vanishing_mid_hash_is_a_clear_error(tmp_path: Path) -> None:
    for name in "abcdef":
        (tmp_path / name).write_bytes(name.encode() * 1000)
    files = list_files(tmp_path)
    (tmp_path / "d").unlink()
    with pytest.raises(HashingError, match=r"/d: cannot read"):
        hash_tree_files(files, workers=4)
    (tmp_path / "d").write_bytes(b"short")
    with pytest.raises(HashingError, match="ended"):
        hash_range(tmp_path / "d", 0, 1000)
