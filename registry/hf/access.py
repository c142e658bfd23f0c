"""Who may see which repo, and which version an HF revision names.

HF repo ids are ``namespace/name`` artifacts: a model repo is an artifact of
kind ``model``, a dataset repo one of kind ``dataset``. A revision is, in this
order: a full commit id (40 hex digits), a version name, an alias, ``main``
(the alias ``main`` if one exists, else ``@latest``), or an unambiguous
commit-id prefix of 7+ hex digits. A name never shadows a commit: a full
commit id is looked up as one before any name (and new versions and aliases
may not take 40-hex names at all), and a shorter hex revision that is both a
name and a prefix of another version's commit id is refused as ambiguous
rather than silently read as the name. ``/v1`` references resolve full commit
ids the same way (:func:`registry.artifacts.versions.find_exact_version`). A
repo with no committed version yet has an empty ``main`` (:func:`empty_head`).
Only committed versions that
:func:`serving_decision` accepts are served (a quarantined one is not);
anything else answers RevisionNotFound, one of the two errors that stop a
client from silently using a stale cached copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.artifacts.commit_ids import commit_matches, empty_commit_id, find_by_commit
from registry.artifacts.models import Artifact, Version
from registry.artifacts.versions import COMMITTED, LATEST, find_alias, find_artifact, find_version
from registry.auth.tokens import Principal, authenticate
from registry.core.context import RegistryContext, get_context
from registry.core.errors import ApiError
from registry.core.names import InvalidNameError, validate_segment
from registry.hf.errors import INVALID_CREDENTIALS, REPO_NOT_FOUND, HfError, bad_request, repo_not_found
from registry.hf.errors import revision_not_found as _revision_not_found
from registry.hf.ids import SHORT_COMMIT_ID, commit_id, is_commit_id
from registry.lineage.graph import CanRead
from registry.lineage.quarantine import describe_status, quarantine_status

MAIN = "main"
# URL words for repo types: /api/{plural}/... and /{prefix}/{repo}/resolve/...
KIND_BY_PLURAL = {"models": "model", "datasets": "dataset"}
UNSERVED_PLURALS = frozenset({"spaces", "kernels"})


@dataclass(frozen=True, slots=True)
class RepoRef:
    """An HF repo id mapped onto the registry: kind, namespace, name."""

    kind: str
    namespace: str
    name: str

    @property
    def repo(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def url_prefix(self) -> str:
        """How HF URLs spell the repo type before the id: nothing for models, ``datasets/`` for datasets."""
        return "" if self.kind == "model" else f"{self.kind}s/"

    @property
    def api_plural(self) -> str:
        return f"{self.kind}s"


def repo_ref(plural: str, namespace: str, name: str) -> RepoRef:
    """Validate the repo part of an HF URL; anything we do not serve is RepoNotFound, like HF itself."""
    repo = f"{namespace}/{name}"
    if plural in UNSERVED_PLURALS:
        raise repo_not_found(repo, f"this registry serves models and datasets, not {plural}")
    kind = KIND_BY_PLURAL.get(plural)
    if kind is None:
        raise repo_not_found(repo, f"unknown repo type {plural!r}")
    try:
        validate_segment(namespace, "namespace")
        validate_segment(name, "name")
    except InvalidNameError as exc:
        raise repo_not_found(repo, str(exc)) from exc
    return RepoRef(kind, namespace, name)


# -- authentication -----------------------------------------------------------------------------------


def hf_principal(request: Request, ctx: Annotated[RegistryContext, Depends(get_context)]) -> Principal:
    """The caller's mir token, sent by the client as ``Authorization: Bearer <HF_TOKEN>``.

    No token: 401 with RepoNotFound (what HF answers for a private repo, so the
    client says "make sure you are authenticated"). A wrong, revoked or expired
    token: 401 with the exact message the client reports as a credentials problem.
    """
    checked = getattr(request.state, "principal", None)
    if isinstance(checked, Principal):
        return checked
    header = request.headers.get("authorization")
    if not header:
        raise HfError(
            401, REPO_NOT_FOUND, "authentication required: set HF_TOKEN (or pass token=) to a mir API token"
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HfError(401, "Unauthorized", INVALID_CREDENTIALS, detail="expected 'Authorization: Bearer <token>'")
    try:
        return authenticate(ctx, value.strip())
    except ApiError as exc:
        raise HfError(401, "Unauthorized", INVALID_CREDENTIALS, detail=exc.message) from exc


HfPrincipal = Annotated[Principal, Depends(hf_principal)]


def require_read(principal: Principal, ref: RepoRef) -> None:
    if not principal.can_read(ref.namespace):
        raise repo_not_found(ref.repo, f"or token {principal.name!r} may not read namespace {ref.namespace!r}")


def require_write(principal: Principal, ref: RepoRef) -> None:
    if not principal.can_write(ref.namespace):
        raise HfError(403, "Forbidden", f"token {principal.name!r} may not write to namespace {ref.namespace!r}")


def public_base(request: Request, ctx: RegistryContext) -> str:
    """The URL clients reach us at: ``MIR_PUBLIC_URL`` behind a proxy, else what this request used."""
    return str(ctx.settings.public_url or request.base_url).rstrip("/")


# -- repos and revisions -------------------------------------------------------------------------------


def repo_artifact(session: Session, ref: RepoRef) -> Artifact:
    artifact = find_artifact(session, ref.namespace, ref.name)
    if artifact is None:
        raise repo_not_found(ref.repo)
    if artifact.kind != ref.kind:
        raise repo_not_found(ref.repo, f"it is a {artifact.kind}, not a {ref.kind} repo")
    return artifact


def version_commit(ref: RepoRef, version: Version) -> str:
    return commit_id(ref.repo, version.version, version.manifest_digest)


def _committed(version: Version | None) -> Version | None:
    return version if version is not None and version.state == COMMITTED else None


def _by_name(session: Session, artifact: Artifact, revision: str) -> Version | None:
    """The committed version a version name or an alias names."""
    version = _committed(find_version(session, artifact, revision))
    if version is not None:
        return version
    alias = find_alias(session, artifact, revision)
    return _committed(alias.version) if alias is not None else None


def find_revision(session: Session, ref: RepoRef, artifact: Artifact, revision: str) -> Version | None:
    """The committed version an HF revision names, or None (see the module docstring for the order).

    Raises RevisionNotFound for a short hex revision that is both a name and a commit-id prefix of another
    version: either reading could be what the caller meant, and guessing would serve the wrong bytes.
    """
    if is_commit_id(revision):
        by_commit = find_by_commit(session, artifact, revision)
        if by_commit is not None:
            return by_commit
    named = _by_name(session, artifact, revision)
    if is_commit_id(revision) or not SHORT_COMMIT_ID.fullmatch(revision):
        if named is None and revision == MAIN:
            latest = find_alias(session, artifact, LATEST)
            return _committed(latest.version) if latest is not None else None
        return named
    matches = commit_matches(session, artifact, revision)
    if named is not None:
        if any(vid != named.id for vid in matches):
            raise _revision_not_found(
                ref.repo, revision,
                f"ambiguous: {revision!r} is a version or alias name and also the start of another version's "
                "commit id; name the version you mean by its full 40-hex commit id",
            )
        return named
    return session.get(Version, matches[0]) if len(matches) == 1 else None


def has_committed_version(session: Session, artifact: Artifact) -> bool:
    found = session.scalar(
        select(Version.id).where(Version.artifact_id == artifact.id, Version.state == COMMITTED).limit(1)
    )
    return found is not None


def empty_head(session: Session, ref: RepoRef, artifact: Artifact, revision: str) -> str | None:
    """The repo's empty commit id when ``revision`` is ``main`` (or that id) and the repo holds no version yet.

    A repo made by ``create_repo`` has nothing to serve until its first commit. The Hub answers such a repo's
    info with no files, so here ``main`` names an empty state with a commit id derived from the repo alone:
    repo info lists no files, the tree is empty, and a file is EntryNotFound (never a missing revision, which
    would break ``model_info`` and ``upload_folder`` of an empty folder).
    """
    empty = empty_commit_id(ref.repo)
    if revision not in (MAIN, empty) or has_committed_version(session, artifact):
        return None
    return empty


@dataclass(frozen=True, slots=True)
class Servable:
    """A version that may be served, and a warning to pass on when an ancestor is quarantined."""

    version: Version
    warning: str | None = None


def serving_decision(session: Session, version: Version, can_read: CanRead) -> tuple[str | None, str | None]:
    """``(refusal, warning)`` for a committed version: the single place the read side asks about quarantine.

    A quarantined version is refused (the client then raises instead of using its
    cache); one that merely descends from a quarantined version is served with a
    warning, as ``/v1`` downloads are.
    """
    status = quarantine_status(session, version, can_read=can_read)
    if status is None:
        return None, None
    label = f"{version.artifact.namespace}/{version.artifact.name}@{version.version}"
    message = describe_status(status, label)
    return (message, None) if status["status"] == "quarantined" else (None, message)


def resolve_servable(
    session: Session, ref: RepoRef, artifact: Artifact, revision: str, can_read: CanRead
) -> Servable:
    """The version to serve for ``revision``: RevisionNotFound if it does not exist or must not be served."""
    version = find_revision(session, ref, artifact, revision)
    if version is None:
        raise _revision_not_found(ref.repo, revision)
    refusal, warning = serving_decision(session, version, can_read)
    if refusal is not None:
        raise _revision_not_found(ref.repo, revision, f"not served: {refusal}")
    return Servable(version, warning)


# -- raw paths -----------------------------------------------------------------------------------------


def split_raw_tail(request: Request, fixed_segments: int) -> tuple[str, str]:
    """``(revision, path)`` from the percent-encoded URL path after its first ``fixed_segments`` segments.

    The client sends the revision with ``quote(rev, safe="")``, so ``refs/pr/1``
    arrives as one segment ``refs%2Fpr%2F1``; routing on the decoded path would
    split it. The file path keeps its ``/`` and each segment is decoded alone.
    """
    raw = request.scope.get("raw_path") or request.url.path.encode("utf-8")
    text = raw.decode("latin-1").split("?", 1)[0]
    root = request.scope.get("root_path") or ""
    if root and text.startswith(root):
        text = text[len(root) :]
    segments = text.split("/")[1:]
    tail = segments[fixed_segments:]
    try:
        revision = unquote(tail[0], errors="strict") if tail else ""
        path = "/".join(unquote(segment, errors="strict") for segment in tail[1:]).strip("/")
    except UnicodeDecodeError as exc:
        raise bad_request("the URL path is not valid UTF-8 once percent-decoded") from exc
    if not revision:
        raise bad_request("the URL names no revision")
    return revision, path
