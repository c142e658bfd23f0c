"""Names, references, manifest paths and digests: the parsers every request goes through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.core.names import InvalidNameError, parse_ref, validate_alias, validate_version
from signing.digests import InvalidDigestError, validate_digest
from signing.manifest import FileEntry, InvalidManifestError, Manifest
from signing.paths import InvalidPathError, check_path_set, validate_relative_path

GOOD = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "path",
    ["../etc/passwd", "a/../../b", "/abs", "a\\b", "a\x00b", "", ".", "a//b", "a/", "./a", "C:/x", "a/./b",
     "e\u0301", "x" * 300, "line\nbreak"],
)
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidPathError):
        validate_relative_path(path)


@pytest.mark.parametrize("path", ["model.safetensors", "sub/dir/file.bin", "ünïcödé/データ.txt", ".hidden", "a..b"])
def test_ordinary_paths_are_accepted(path: str) -> None:
    assert validate_relative_path(path) == path


def test_duplicate_and_file_dir_clash() -> None:
    with pytest.raises(InvalidPathError, match="duplicate"):
        check_path_set(["a", "a"])
    with pytest.raises(InvalidPathError, match="listed as a file"):
        check_path_set(["a", "a/b"])


@given(st.text(max_size=80))
def test_path_validation_never_crashes_and_never_accepts_traversal(path: str) -> None:
    try:
        ok = validate_relative_path(path)
    except InvalidPathError:
        return
    parts = ok.split("/")
    assert ".." not in parts and "" not in parts and not ok.startswith("/") and "\\" not in ok and "\x00" not in ok


@pytest.mark.parametrize(
    "digest", ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "md5:" + "a" * 32, "sha256" + "a" * 64, "", None, 5]
)
def test_bad_digests(digest: object) -> None:
    with pytest.raises(InvalidDigestError):
        validate_digest(digest)


def test_manifest_digest_is_order_independent_and_sensitive_to_content() -> None:
    a = Manifest.from_entries([FileEntry("b", 1, GOOD), FileEntry("a", 2, GOOD)])
    b = Manifest.from_entries([FileEntry("a", 2, GOOD), FileEntry("b", 1, GOOD)])
    c = Manifest.from_entries([FileEntry("a", 2, GOOD), FileEntry("b", 2, GOOD)])
    assert a.digest() == b.digest() != c.digest()


@pytest.mark.parametrize(
    "files",
    [
        [{"path": "a", "size": -1, "digest": GOOD}],
        [{"path": "a", "size": True, "digest": GOOD}],
        [{"path": "a", "size": 1, "digest": GOOD, "extra": 1}],
        [{"path": "a", "size": 1, "digest": GOOD}, {"path": "a", "size": 1, "digest": GOOD}],
        [{"path": "../a", "size": 1, "digest": GOOD}],
        "nope",
    ],
)
def test_bad_manifests(files: object) -> None:
    with pytest.raises(InvalidManifestError):
        Manifest.from_dict({"files": files})


@pytest.mark.parametrize("text", ["acme", "acme/", "/x", "a/b/c", "acme/bert@", "acme/be rt", "ac..me/x", "-a/b"])
def test_bad_references(text: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_ref(text)


def test_references() -> None:
    assert parse_ref("acme/bert").ref is None
    ref = parse_ref("acme/bert@1.2.0+build.1")
    assert (ref.namespace, ref.name, ref.ref) == ("acme", "bert", "1.2.0+build.1")
    with pytest.raises(InvalidNameError):
        parse_ref("acme/bert", require_ref=True)
    with pytest.raises(InvalidNameError):
        validate_alias("Prod")
    with pytest.raises(InvalidNameError):
        validate_version("1..2")
