"""HF branches and tags as registry aliases: ``create_branch``, ``create_tag``, ``delete_branch``, ``delete_tag``.

A branch is an alias; ``main`` is the default branch (the alias ``main`` if one exists, else ``@latest``) and
is neither created nor deleted here. A tag is an alias made with ``tag=True``: it never moves and is never
deleted, on this endpoint or on ``/v1`` (the rule lives in :func:`registry.artifacts.versions.move_alias`).
Versions are listed as tags too and are immutable already. Every creation and deletion goes through the
services the ``/v1`` alias routes use, so it gets the same name rules, quarantine gate, alias event and audit
entry. Names follow the alias rule (lowercase letters, digits, ``_`` and ``-``, starting with a letter), so a
tag like ``v1.0`` is refused with a message saying so.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry.artifacts.models import Artifact, Version
from registry.artifacts.versions import LATEST, find_alias, find_version, move_alias
from registry.auth.tokens import Principal
from registry.core.names import InvalidNameError, validate_new_alias
from registry.hf.access import MAIN, RepoRef, find_revision, version_commit
from registry.hf.errors import HfError, bad_request, revision_not_found
from registry.lineage.aliases import point_alias

REF_EXISTS = "RefExists"
_DEFAULT_BRANCHES = (MAIN, LATEST)


def _checked_name(name: str, what: str) -> str:
    try:
        return validate_new_alias(name)
    except InvalidNameError as exc:
        plural = "branches" if what == "branch" else "tags"
        raise bad_request(f"invalid {what} name: {plural} here are registry aliases: {exc}") from exc


def _exists(ref: RepoRef, what: str, name: str, why: str) -> HfError:
    kind = "heads" if what == "branch" else "tags"
    return HfError(409, REF_EXISTS, f"Reference already exists: refs/{kind}/{name} in {ref.repo} ({why})")


def _taken(session: Session, ref: RepoRef, artifact: Artifact, what: str, name: str) -> None:
    """409 when ``name`` is already a branch, a tag or a version of the repo."""
    alias = find_alias(session, artifact, name)
    if alias is not None:
        raise _exists(ref, what, name, "a tag" if alias.tag else "a branch")
    if name in _DEFAULT_BRANCHES:
        raise _exists(ref, what, name, "the default branch")
    if find_version(session, artifact, name) is not None:
        raise _exists(ref, what, name, "a version, which HF clients see as a tag")


def _target(session: Session, ref: RepoRef, artifact: Artifact, revision: str) -> Version:
    version = find_revision(session, ref, artifact, revision)
    if version is None:
        raise revision_not_found(ref.repo, revision)
    return version


def _answer(ref: RepoRef, what: str, name: str, version: Version) -> dict[str, Any]:
    kind = "heads" if what == "branch" else "tags"
    return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": version_commit(ref, version),
            "mir": {"alias": name, "version": version.version, "tag": what == "tag"}}


def create_branch(
    session: Session, ref: RepoRef, artifact: Artifact, branch: str, starting_point: str | None, principal: Principal
) -> dict[str, Any]:
    """A new alias ``branch`` at ``starting_point`` (default ``main``); 409 if the name is taken."""
    _taken(session, ref, artifact, "branch", branch)
    _checked_name(branch, "branch")
    target = _target(session, ref, artifact, starting_point or MAIN)
    if point_alias(session, artifact, branch, target, principal=principal, reason="hf create_branch") is None:
        raise _exists(ref, "branch", branch, "made by another request just now")  # it already pointed there
    return _answer(ref, "branch", branch, target)


def create_tag(
    session: Session, ref: RepoRef, artifact: Artifact, tag: str, revision: str, message: str | None,
    principal: Principal,
) -> dict[str, Any]:
    """A new tag (an alias that never moves) at ``revision``; 409 if the name is taken, as on the Hub."""
    _taken(session, ref, artifact, "tag", tag)
    _checked_name(tag, "tag")
    target = _target(session, ref, artifact, revision)
    point_alias(session, artifact, tag, target, principal=principal, reason=message or "hf create_tag", tag=True)
    return _answer(ref, "tag", tag, target)


def delete_branch(session: Session, ref: RepoRef, artifact: Artifact, branch: str, actor: str) -> None:
    """Remove the alias ``branch``; the default branch and tags stay (409), an unknown one is RevisionNotFound."""
    if branch in _DEFAULT_BRANCHES:
        raise HfError(409, "ProtectedBranch", f"{branch!r} is the default branch of {ref.repo} and is not deleted")
    if find_alias(session, artifact, branch) is None:
        raise revision_not_found(ref.repo, branch, "no such branch")
    move_alias(session, artifact, branch, None, actor=actor, reason="hf delete_branch")


def delete_tag(session: Session, ref: RepoRef, artifact: Artifact, tag: str, actor: str) -> None:
    """Tags and versions never go away: 409 for either; an unknown tag (or a branch) is RevisionNotFound."""
    alias = find_alias(session, artifact, tag)
    if alias is not None and alias.tag:
        move_alias(session, artifact, tag, None, actor=actor, reason="hf delete_tag")  # refused: alias_immutable
        return
    if alias is None and find_version(session, artifact, tag) is not None:
        raise HfError(409, "VersionImmutable", f"{ref.repo}@{tag} is a version; versions are immutable")
    raise revision_not_found(ref.repo, tag, "no such tag")
