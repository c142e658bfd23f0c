"""Which version an HF revision names, and which names a new version or alias may take.

A full commit id is looked up as a commit before any name, so even a version row that predates the naming rule
and carries another version's commit id as its name cannot shadow it; a short hex revision that is both a name
and another version's commit-id prefix is refused as ambiguous.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from registry.artifacts.models import Artifact, Version
from registry.artifacts.versions import COMMITTED, get_or_create_artifact, move_alias, open_version
from registry.core.errors import ApiError
from registry.core.names import (
    InvalidNameError,
    ReservedNameError,
    validate_alias,
    validate_new_alias,
    validate_new_version,
    validate_version,
)
from registry.hf.access import RepoRef, find_revision, version_commit
from registry.hf.errors import HfError
from signing.manifest import FileEntry, Manifest
from tests.support.service import Reg

REF = RepoRef("model", "acme", "m")


def _version(s: Session, reg: Reg, art: Artifact, name: str, content: str) -> Version:
    manifest = Manifest.from_entries([FileEntry("w.txt", len(content), "sha256:" + content * 64)])
    version, _ = open_version(s, reg.blobs, art, name, manifest, actor="admin")
    version.state = COMMITTED
    s.flush()
    return version


def test_full_commit_id_wins_over_a_legacy_version_of_that_name(reg: Reg) -> None:
    with reg.session() as s:
        art = get_or_create_artifact(s, "acme", "m", "model", "admin")
        victim = _version(s, reg, art, "1", "a")
        legacy = _version(s, reg, art, "2", "b")
        victim_commit = version_commit(REF, victim)
        legacy.version = victim_commit  # a row written before 40-hex names were refused
        s.flush()
        assert find_revision(s, REF, art, victim_commit) is victim
        # A 40-hex name that is no commit id still finds its (legacy) version.
        legacy.version = "c" * 40
        s.flush()
        assert find_revision(s, REF, art, "c" * 40) is legacy


def test_short_hex_name_that_is_a_commit_prefix_is_ambiguous(reg: Reg) -> None:
    with reg.session() as s:
        art = get_or_create_artifact(s, "acme", "m", "model", "admin")
        victim = _version(s, reg, art, "1", "a")
        prefix = version_commit(REF, victim)[:7]
        squatter = _version(s, reg, art, prefix, "b")
        with pytest.raises(HfError) as refused:
            find_revision(s, REF, art, prefix)
        assert refused.value.code == "RevisionNotFound" and "ambiguous" in refused.value.message
        assert find_revision(s, REF, art, version_commit(REF, victim)[:8]) is victim
        # A hex name that is no other version's commit prefix resolves as the name (commit ids are deterministic).
        plain = _version(s, reg, art, "1234567", "c")
        assert not any(version_commit(REF, v).startswith("1234567") for v in (victim, squatter, plain))
        assert find_revision(s, REF, art, "1234567") is plain


def test_open_and_alias_refuse_reserved_names(reg: Reg) -> None:
    with reg.session() as s:
        art = get_or_create_artifact(s, "acme", "m", "model", "admin")
        target = _version(s, reg, art, "1", "a")
        for name in ("latest", "main", "0" * 40, "ABCDEF" + "0" * 34):
            with pytest.raises(ApiError) as refused:
                _version(s, reg, art, name, "b")
            assert (refused.value.status, refused.value.code) == (400, "reserved_name")
        with pytest.raises(ApiError) as refused:
            move_alias(s, art, "a" * 40, target, actor="admin")
        assert refused.value.code == "reserved_name"
        assert move_alias(s, art, "main", target, actor="admin") is not None


_HEXISH = st.text(alphabet="0123456789abcdefABCDEFgz.-", min_size=1, max_size=45)
_RESERVED = re.compile(r"[0-9A-Fa-f]{40}|latest|main")


def _accepts(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except InvalidNameError:
        return False
    return True


@given(st.one_of(_HEXISH, st.sampled_from(["latest", "main", "Latest", "20240101", "1234567", "f" * 40])))
def test_new_version_names_are_the_naming_rule_minus_the_reserved(value: str) -> None:
    expected = _accepts(validate_version, value) and _RESERVED.fullmatch(value) is None
    assert _accepts(validate_new_version, value) == expected
    if _accepts(validate_version, value) and not expected:
        with pytest.raises(ReservedNameError):
            validate_new_version(value)


@given(st.one_of(_HEXISH, st.sampled_from(["a" * 40, "main", "latest", "b" * 39])))
def test_new_alias_names_are_the_naming_rule_minus_commit_shapes(value: str) -> None:
    expected = _accepts(validate_alias, value) and re.fullmatch(r"[0-9a-f]{40}", value) is None
    assert _accepts(validate_new_alias, value) == expected


def test_ordinary_versions_stay_valid() -> None:
    for name in ("20240101", "1234567", "1.0", "v2", "a" * 39, "a" * 41, "latest-1", "main.2"):
        assert validate_new_version(name) == name
