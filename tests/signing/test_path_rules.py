"""Manifest path rules for characters that hide or reorder text, and for names that differ only in case."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing.manifest import FileEntry, InvalidManifestError, Manifest
from signing.paths import BIDI_CONTROLS, InvalidPathError, check_case_collisions, validate_relative_path

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize("code", [*range(0x80, 0xA0), 0x2028, 0x2029, *sorted(map(ord, BIDI_CONTROLS))])
def test_c1_line_separators_and_bidi_controls_are_refused(code: int) -> None:
    with pytest.raises(InvalidPathError, match=f"U\\+{code:04X}"):
        validate_relative_path(f"dir/evil{chr(code)}gpj.exe")


@pytest.mark.parametrize("path", ["café/model.bin", "日本語/重み.safetensors", "emoji-👍🏽.txt", "a\u200db"])
def test_ordinary_unicode_is_accepted(path: str) -> None:
    assert validate_relative_path(path) == path


def test_nfd_spellings_are_refused_not_rewritten() -> None:
    nfd = unicodedata.normalize("NFD", "café.txt")
    with pytest.raises(InvalidPathError, match="NFC"):
        validate_relative_path(nfd)


@pytest.mark.parametrize(
    "paths",
    [["A.txt", "a.txt"], ["dir/X", "DIR/x"], ["Straße", "STRASSE"], ["ǅ", "ǆ"], ["M", "m/weights.bin"],
     ["sub/Config.json", "SUB/config.JSON"]],
)
def test_case_collisions_are_refused(paths: list[str]) -> None:
    with pytest.raises(InvalidPathError, match="case"):
        check_case_collisions(paths)
    with pytest.raises(InvalidManifestError, match="case"):
        Manifest.from_entries(FileEntry(p, 1, DIGEST) for p in paths).check_portable()


def test_case_rule_is_the_registrys_not_model_signings() -> None:
    """Manifests of other tools (model-signing on Linux) may hold both spellings and must still parse."""
    manifest = Manifest.from_entries([FileEntry("README.md", 1, DIGEST), FileEntry("readme.md", 1, DIGEST)])
    assert [f.path for f in manifest.files] == ["README.md", "readme.md"]


def test_distinct_names_pass() -> None:
    check_case_collisions(["a/b.txt", "a/c.txt", "ab", "a.b", "Ω", "o"])


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8),
                max_size=6, unique=True))
def test_case_check_agrees_with_folding(paths: list[str]) -> None:
    folded = [unicodedata.normalize("NFC", p.casefold()) for p in paths]
    try:
        check_case_collisions(paths)
    except InvalidPathError:
        return
    assert len(set(folded)) == len(folded)
