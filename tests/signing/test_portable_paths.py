"""The registry's portability rules for manifest paths (``Manifest.check_portable``): names Windows rewrites or
reserves, invisible format characters, and names that become one another (or a traversal) under NFKC.

They are the registry's rules, like the case rule: model-signing manifests that hold such paths still parse and
verify, only a registry push refuses them.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing.manifest import FileEntry, InvalidManifestError, Manifest
from signing.paths import InvalidPathError, check_portable_path, check_portable_paths, validate_relative_path

DIGEST = "sha256:" + "0" * 64
DEVICES = ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))]


def _portable(paths: list[str]) -> Manifest:
    return Manifest.from_entries(FileEntry(p, 1, DIGEST) for p in paths).check_portable()


@pytest.mark.parametrize("path", ["f.", "g ", "dir./x", "dir /x", "a/b...", "a/b. ", "x/ .", "weights.bin "])
def test_segments_ending_in_dot_or_space_are_refused(path: str) -> None:
    with pytest.raises(InvalidPathError, match="end"):
        check_portable_path(path)
    with pytest.raises(InvalidManifestError):
        _portable([path])


def test_trailing_dot_beside_the_plain_name_is_refused() -> None:
    with pytest.raises(InvalidManifestError):
        _portable(["f", "f."])
    with pytest.raises(InvalidManifestError):
        _portable(["g", "g "])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spell", [str, str.lower, str.title])
@pytest.mark.parametrize("form", ["{}", "{}.txt", "sub/{}", "{}.tar.gz/x", "{} .txt"])
def test_windows_device_names_are_refused(device: str, spell: object, form: str) -> None:
    path = form.format(spell(device))  # type: ignore[operator]
    with pytest.raises(InvalidPathError, match="device"):
        check_portable_path(path)


@pytest.mark.parametrize("path", ["CONFIG.json", "console/x", "aux_loss.py", "nul1", "com10", "lpt0.txt",
                                  "COM", "auxiliary.bin", "my.con", "null.txt", "prn-1/readme"])
def test_names_that_only_look_like_devices_pass(path: str) -> None:
    check_portable_path(path)


@pytest.mark.parametrize(
    "path",
    ["a\u200db", "\ufeffa", "a\u200bb", "a\u00adb", "a\u2060b", "x/\u200c", "tag\U000e0041", "a\u180eb",
     "a\ufff9b"],
)
def test_format_characters_are_refused(path: str) -> None:
    assert unicodedata.category(next(c for c in path if not c.isascii())) == "Cf"
    with pytest.raises(InvalidPathError, match="format character"):
        check_portable_path(path)


@pytest.mark.parametrize(
    "path",
    ["a\uff0fb", "\uff0e\uff0e/x", "x/\uff0e\uff0e", "\uff0e", "a/\u2025", "\u2024\u2024/etc", "a\uff3cb",
     "a\ufe52", "\uff0e\uff0e"],
)
def test_compatibility_forms_of_separators_and_dots_are_refused(path: str) -> None:
    """Full-width solidus, reverse solidus and dots: NFKC turns them into '/', '\\' or '.'/'..' segments."""
    validate_relative_path(path)  # a legal path as written
    with pytest.raises(InvalidPathError, match="NFKC"):
        check_portable_path(path)


@pytest.mark.parametrize(
    "paths",
    [["a.txt", "\uff41.txt"], ["file", "\ufb01le"], ["dir/x", "\uff24\uff29\uff32/x"], ["M", "\uff4d/weights.bin"],
     ["x2", "x\u00b2"], ["A", "\uff41"]],
)
def test_nfkc_collisions_are_refused(paths: list[str]) -> None:
    with pytest.raises(InvalidManifestError, match=r"NFKC|case"):  # case folding alone already maps 'ﬁ' to 'fi'
        _portable(paths)


@pytest.mark.parametrize("path", ["café/model.bin", "日本語/重み.safetensors", "emoji-👍🏽.txt", "v1.0/w.bin",
                                  ".gitattributes", "a b/c d.txt", "..x/y", "x/.hidden"])
def test_ordinary_paths_stay_portable(path: str) -> None:
    check_portable_path(path)
    _portable([path])


def test_these_rules_are_the_registrys_not_model_signings() -> None:
    """A model-signing manifest (from a tool on Linux) may hold such names and still parses and verifies."""
    paths = ["CON.txt", "f.", "a\u200db", "\uff41.txt", "a.txt"]
    manifest = Manifest.from_entries(FileEntry(p, 1, DIGEST) for p in paths)
    assert sorted(f.path for f in manifest.files) == sorted(paths)
    with pytest.raises(InvalidManifestError):
        manifest.check_portable()


_SEGMENT_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


@given(st.lists(st.text(alphabet=_SEGMENT_CHARS, min_size=1, max_size=6), min_size=1, max_size=3))
def test_a_portable_path_never_becomes_a_traversal_or_a_different_split(segments: list[str]) -> None:
    path = "/".join(segments)
    try:
        validate_relative_path(path)
        check_portable_path(path)
    except InvalidPathError:
        return
    folded = unicodedata.normalize("NFKC", path)
    assert folded.split("/") == [unicodedata.normalize("NFKC", s) for s in path.split("/")]
    for segment in folded.split("/"):
        assert segment not in ("", ".", "..") and "\\" not in segment
        assert not segment.endswith((".", " "))
        assert not any(unicodedata.category(c) == "Cf" for c in segment)


@given(st.lists(st.text(alphabet=st.sampled_from("aA\uff42\uff22\ufb01fi.\u2024/x\u00b22"), min_size=1, max_size=5),
                min_size=1, max_size=5, unique=True))
def test_portable_path_sets_are_distinct_after_nfkc_and_case_folding(paths: list[str]) -> None:
    try:
        check_portable_paths(paths)
    except InvalidPathError:
        return
    keys = [unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", p).casefold()) for p in paths]
    assert len(set(keys)) == len(keys)
