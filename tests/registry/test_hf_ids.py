"""Unit tests of the HF layer's pure parts: ids, signed URLs, commit parsing, listings, cache records."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from huggingface_hub.utils import sha as hf_sha
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from registry.client.hf_import import HfImportError, read_tree_listing
from registry.core.names import validate_version
from registry.hf import commits, ids, uploads
from registry.hf.access import split_raw_tail
from registry.hf.errors import HfError, hf_error_response
from registry.hf.listing import RepoFile, paths_info, tree_entries
from signing.manifest import FileEntry

SHA = hashlib.sha256(b"weights").hexdigest()


# -- ids ----------------------------------------------------------------------------------------------


def test_git_blob_sha1_matches_git_and_the_hub_client() -> None:
    assert ids.git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert ids.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    git = subprocess.run(["git", "hash-object", "--stdin"], input=b"weights", capture_output=True, check=True)
    assert ids.git_blob_sha1(b"weights") == git.stdout.decode().strip()


@given(st.binary(max_size=2048))
def test_git_blob_sha1_agrees_with_huggingface_hub(data: bytes) -> None:
    assert ids.git_blob_sha1(data) == hf_sha.git_hash(data)


def test_lfs_pointer_is_the_exact_git_lfs_text() -> None:
    pointer = ids.lfs_pointer(SHA, 1234)
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{SHA}\nsize 1234\n".encode()
    assert ids.pointer_size(SHA, 1234) == len(pointer)
    assert ids.pointer_oid(SHA, 1234) == ids.git_blob_sha1(pointer)
    with pytest.raises(ValueError, match="not a sha256"):
        ids.lfs_pointer("ABC", 1)
    with pytest.raises(ValueError, match="negative"):
        ids.lfs_pointer(SHA, -1)


def test_commit_ids_are_stable_40_hex_and_bind_every_input() -> None:
    base = ids.commit_id("acme/bert", "1.0", f"sha256:{SHA}")
    assert re.fullmatch(r"[0-9a-f]{40}", base) and ids.is_commit_id(base)
    assert base == ids.commit_id("acme/bert", "1.0", f"sha256:{SHA}")
    others = {
        ids.commit_id("acme/bert2", "1.0", f"sha256:{SHA}"),
        ids.commit_id("acme/bert", "1.1", f"sha256:{SHA}"),
        ids.commit_id("acme/bert", "1.0", "sha256:" + "0" * 64),
        ids.commit_id("acme/bert1", ".0", f"sha256:{SHA}"),  # no ambiguity from concatenation
    }
    assert base not in others and len(others) == 4
    assert not ids.is_commit_id(base.upper()) and not ids.is_commit_id(base[:39])


def test_etag_and_sha256_hex_refuse_other_digests() -> None:
    assert ids.etag(f"sha256:{SHA}") == f'"{SHA}"'
    for bad in (f"blake3:{SHA}", SHA, "sha256:xyz"):
        with pytest.raises(ValueError, match="not a sha256 digest"):
            ids.sha256_hex(bad)


def test_directory_oid_ignores_order() -> None:
    items = [("a/x", "1" * 40), ("a/y", "2" * 40)]
    assert ids.directory_oid(items) == ids.directory_oid(reversed(items))
    assert ids.directory_oid(items) != ids.directory_oid(items[:1])


# -- listings -----------------------------------------------------------------------------------------

FILES = [
    RepoFile("config.json", 10, SHA),
    RepoFile("sub/a.txt", 3, SHA),
    RepoFile("sub/deep/b.txt", 4, SHA),
]


def test_tree_entries_recursive_and_not() -> None:
    assert [e["path"] for e in tree_entries(FILES, "", False) or []] == ["config.json", "sub"]
    assert [e["path"] for e in tree_entries(FILES, "", True) or []] == [
        "config.json", "sub", "sub/a.txt", "sub/deep", "sub/deep/b.txt",
    ]
    assert [e["path"] for e in tree_entries(FILES, "sub", False) or []] == ["sub/a.txt", "sub/deep"]
    assert tree_entries(FILES, "nope", True) is None
    assert tree_entries(FILES, "config.json", True) is None  # a file is not a folder
    entry = FILES[0].tree_entry()
    assert entry["lfs"] == {"oid": SHA, "size": 10, "pointerSize": ids.pointer_size(SHA, 10)}
    assert entry["oid"] == ids.pointer_oid(SHA, 10) and "xetHash" not in entry
    sibling = FILES[0].sibling()
    assert sibling["blobId"] == entry["oid"] and sibling["lfs"]["sha256"] == SHA


def test_paths_info_keeps_known_paths_only() -> None:
    got = paths_info(FILES, ["sub/", "config.json", "missing", "config.json"])
    assert [(e["type"], e["path"]) for e in got] == [("directory", "sub"), ("file", "config.json")]


# -- signed upload URLs -------------------------------------------------------------------------------

SECRET = b"s" * 32


def test_signed_upload_urls_round_trip_and_refuse_changes() -> None:
    url = uploads.signed_upload_url("http://r", SECRET, SHA, 7, "acme", token_id=3, now=1000, ttl=60)
    query = dict(part.split("=") for part in url.split("?")[1].split("&"))
    args = (SHA, query["size"], query["ns"], query["exp"], query["sig"])
    assert query["tok"] == "3"
    assert uploads.check_upload_signature(SECRET, *args, token="3", now=1059) == 7
    with pytest.raises(uploads.UploadSignatureError, match="expired"):
        uploads.check_upload_signature(SECRET, *args, token="3", now=1061)
    with pytest.raises(uploads.UploadSignatureError, match="does not match"):
        uploads.check_upload_signature(b"x" * 32, *args, token="3", now=1000)
    with pytest.raises(uploads.UploadSignatureError, match="does not match"):
        uploads.check_upload_signature(SECRET, *args, token="4", now=1000)  # another token's URL
    tampered = [
        (hashlib.sha256(b"x").hexdigest(), *args[1:]),
        (SHA, "8", *args[2:]),
        (SHA, args[1], "other", *args[3:]),
        (SHA, *args[1:3], str(int(args[3]) + 1), args[4]),
        (*args[:4], "0" * 64),
    ]
    for bad in tampered:
        with pytest.raises(uploads.UploadSignatureError):
            uploads.check_upload_signature(SECRET, *bad, token="3", now=1000)
    for malformed in [("zz", *args[1:]), (SHA, "-1", *args[2:]), (SHA, args[1], args[2], "soon", args[4])]:
        with pytest.raises(uploads.UploadSignatureError, match="malformed"):
            uploads.check_upload_signature(SECRET, *malformed, token="3", now=1000)
    with pytest.raises(uploads.UploadSignatureError, match="malformed"):
        uploads.check_upload_signature(SECRET, *args, token="", now=1000)


@settings(max_examples=200)
@given(st.text(max_size=80), st.text(max_size=30), st.text(max_size=30), st.text(max_size=100))
def test_signature_check_never_crashes(size: str, namespace: str, expires: str, signature: str) -> None:
    with contextlib.suppress(uploads.UploadSignatureError):
        uploads.check_upload_signature(SECRET, SHA, size, namespace, expires, signature, token="1", now=0)


# -- commit bodies ------------------------------------------------------------------------------------


def _ndjson(*items: object) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def test_parse_commit_reads_every_operation() -> None:
    body = _ndjson(
        {"key": "header", "value": {"summary": "s", "description": "d", "parentCommit": "a" * 40}},
        {"key": "file", "value": {"path": "a.txt", "content": base64.b64encode(b"hi").decode(), "encoding": "base64"}},
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": SHA, "size": 7}},
        {"key": "lfsFile", "value": {"path": "copy.bin", "algo": "sha256", "oid": SHA}},
        {"key": "deletedFile", "value": {"path": "old.txt"}},
        {"key": "deletedFolder", "value": {"path": "logs/"}},
    )
    parsed = commits.parse_commit(body)
    assert (parsed.summary, parsed.description, parsed.parent_commit) == ("s", "d", "a" * 40)
    assert [(o.key, o.path) for o in parsed.operations] == [
        ("file", "a.txt"), ("lfsFile", "w.bin"), ("lfsFile", "copy.bin"), ("deletedFile", "old.txt"),
        ("deletedFolder", "logs"),
    ]
    assert parsed.operations[0].content == b"hi"
    assert parsed.operations[0].digest == "sha256:" + hashlib.sha256(b"hi").hexdigest()
    assert parsed.operations[2].size is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]\n", "expected an object"),
        (_ndjson({"key": "file", "value": {"path": "a", "content": ""}}), "no header"),
        (_ndjson({"key": "header", "value": {}}, {"key": "header", "value": {}}), "second header"),
        (_ndjson({"key": "header", "value": {"parentCommit": "main"}}), "parentCommit"),
        (_ndjson({"key": "header", "value": {}}, {"key": "file", "value": {"path": "/etc/x", "content": ""}}),
         "absolute"),
        (_ndjson({"key": "header", "value": {}}, {"key": "file", "value": {"path": "a", "content": "@@"}}), "base64"),
        (_ndjson({"key": "header", "value": {}}, {"key": "file", "value": {"path": "a", "content": "",
                                                                          "encoding": "utf-8"}}), "encoding"),
        (_ndjson({"key": "header", "value": {}}, {"key": "lfsFile", "value": {"path": "a", "oid": "x"}}), "oid"),
        (_ndjson({"key": "header", "value": {}}, {"key": "lfsFile", "value": {"path": "a", "oid": SHA,
                                                                             "size": -1}}), "size"),
        (_ndjson({"key": "header", "value": {}}, {"key": "lfsFile", "value": {"path": "a", "oid": SHA,
                                                                             "algo": "md5"}}), "sha256"),
        (_ndjson({"key": "header", "value": {}}, {"key": "copy", "value": {"path": "a"}}), "unknown operation"),
    ],
)
def test_parse_commit_refuses_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(commits.CommitFormatError, match=message):
        commits.parse_commit(body)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=400), st.lists(st.dictionaries(st.sampled_from(["key", "value", "path"]),
                                                                    st.one_of(st.text(max_size=10), st.integers(),
                                                                              st.dictionaries(st.text(max_size=8),
                                                                                              st.text(max_size=8))),
                                                                    max_size=3), max_size=4).map(
    lambda items: _ndjson(*items))))
def test_parse_commit_never_crashes(body: bytes) -> None:
    with contextlib.suppress(commits.CommitFormatError):
        commits.parse_commit(body)


def test_apply_operations_adds_overwrites_and_deletes() -> None:
    base = {p: FileEntry(p, 1, f"sha256:{SHA}") for p in ("a.txt", "logs/1", "logs/2", "keep/x")}
    ops = commits.parse_commit(
        _ndjson(
            {"key": "header", "value": {}},
            {"key": "file", "value": {"path": "a.txt", "content": base64.b64encode(b"new").decode()}},
            {"key": "deletedFolder", "value": {"path": "logs"}},
            {"key": "lfsFile", "value": {"path": "w.bin", "oid": SHA}},
        )
    ).operations
    result = {e.path: e for e in commits.apply_operations(base, ops, lambda d: 99 if d == f"sha256:{SHA}" else None)}
    assert sorted(result) == ["a.txt", "keep/x", "w.bin"]
    assert result["a.txt"].size == 3 and result["w.bin"].size == 99
    missing = commits.parse_commit(_ndjson({"key": "header", "value": {}},
                                           {"key": "deletedFile", "value": {"path": "nope"}})).operations
    with pytest.raises(HfError, match="A file with this name doesn't exist") as exc:
        commits.apply_operations(base, missing, lambda d: None)
    assert exc.value.code == "EntryNotFound" and exc.value.status == 404
    unknown_lfs = commits.parse_commit(_ndjson({"key": "header", "value": {}},
                                               {"key": "lfsFile", "value": {"path": "w", "oid": "0" * 64}})).operations
    with pytest.raises(HfError, match="has not been uploaded"):
        commits.apply_operations(base, unknown_lfs, lambda d: None)


def test_auto_version_names_are_valid_sortable_and_unique() -> None:
    now = datetime(2026, 1, 22, 10, 15, 30, tzinfo=UTC)
    name = commits.auto_version_name(now, f"sha256:{SHA}", lambda n: False)
    assert name == f"hf-20260122.101530-{SHA[:8]}" and validate_version(name) == name
    taken = {name, f"{name}-2"}
    assert commits.auto_version_name(now, f"sha256:{SHA}", taken.__contains__) == f"{name}-3"


# -- raw paths and error responses --------------------------------------------------------------------


def _request(raw_path: bytes) -> Request:
    return Request({"type": "http", "method": "GET", "path": raw_path.decode(), "raw_path": raw_path,
                    "root_path": "", "query_string": b"", "headers": []})


def test_split_raw_tail_keeps_encoded_revisions_whole() -> None:
    assert split_raw_tail(_request(b"/acme/bert/resolve/refs%2Fpr%2F1/sub/a%20b.txt"), 3) == (
        "refs/pr/1", "sub/a b.txt",
    )
    assert split_raw_tail(_request(b"/api/models/acme/bert/tree/main"), 5) == ("main", "")
    assert split_raw_tail(_request(b"/api/models/acme/bert/tree/main/sub%2Fdeep/"), 5) == ("main", "sub/deep")
    for bad in (b"/acme/bert/resolve/", b"/acme/bert/resolve/%ff/x"):
        with pytest.raises(HfError) as exc:
            split_raw_tail(_request(bad), 3)
        assert exc.value.status == 400


def test_error_headers_are_latin1_safe_and_always_coded() -> None:
    error = HfError(404, "EntryNotFound", "fichier «é»\nnot found", headers={"X-Repo-Commit": "a"})
    response = hf_error_response(error)
    assert response.headers["x-error-code"] == "EntryNotFound"
    assert response.headers["x-error-message"] == "fichier \\xab\\xe9\\xbb not found"
    assert json.loads(bytes(response.body))["error"] == "fichier «é»\nnot found"
    assert hf_error_response(HfError(401, "Unauthorized", "x"), head=True).body == b""


# -- cache tree listings ------------------------------------------------------------------------------


def test_read_tree_listing(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    assert read_tree_listing(path) is None
    path.write_text(json.dumps({"format_version": 1, "files": {
        "w.bin": {"size": 5, "blob_id": "1" * 40, "lfs_sha256": SHA, "lfs_size": 5},
        "c.json": {"size": 2, "blob_id": "2" * 40},
    }}))
    listing = read_tree_listing(path)
    assert listing is not None
    assert listing["w.bin"].sha256 == SHA and listing["w.bin"].git_sha1 is None
    assert listing["c.json"].git_sha1 == "2" * 40 and listing["c.json"].size == 2
    for bad, message in [
        ("{", "not valid JSON"),
        (json.dumps({"format_version": 2, "files": {}}), "format_version 1"),
        (json.dumps({"format_version": 1, "files": {"a": {"size": -1, "blob_id": "1" * 40}}}), "valid size"),
        (json.dumps({"format_version": 1, "files": {"a": {"size": 1}}}), "neither"),
        (json.dumps({"format_version": 1, "files": {"a": {"size": 1, "lfs_sha256": "x"}}}), "malformed lfs_sha256"),
    ]:
        path.write_text(bad)
        with pytest.raises(HfImportError, match=message):
            read_tree_listing(path)


@settings(max_examples=200)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=70)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner,
                                                                                          max_size=3)), max_leaves=12))
def test_read_tree_listing_never_crashes(tmp_path_factory: pytest.TempPathFactory, data: object) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "t.json"
    wrapped = {"format_version": 1, "files": data} if isinstance(data, dict) else data
    path.write_text(json.dumps(wrapped))
    with contextlib.suppress(HfImportError):
        read_tree_listing(path)


def test_preupload_keeps_commits_small(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from registry.core.blobstore import LocalBlobStore

    files = [SimpleNamespace(path=p, size=s) for p, s in (("a", 8), ("b", 8), ("big", 50), ("empty", 0), ("c", 6))]
    modes = uploads.preupload_modes(LocalBlobStore(tmp_path), None, files, regular_max=10, inline_budget=15)
    assert [(m["path"], m["uploadMode"]) for m in modes] == [
        ("a", "regular"), ("b", "lfs"), ("big", "lfs"), ("empty", "regular"), ("c", "regular"),
    ]
    assert all(m["shouldIgnore"] is False and m["oid"] is None for m in modes)
    with pytest.raises(ValueError, match="absolute"):
        uploads.preupload_modes(LocalBlobStore(tmp_path), None, [SimpleNamespace(path="/x", size=1)], 10, 10)
