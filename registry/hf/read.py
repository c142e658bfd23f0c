"""The read side of the Hub protocol: what ``hf_hub_download``, ``snapshot_download`` and ``from_pretrained`` call.

Routes (repo types: models at the root, datasets under ``/datasets``):

- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file, served directly (200/206),
  with ``X-Repo-Commit``, ``ETag`` = sha256 and the size; every byte checked on the way
  out (``registry.blob_serve``), a corrupt blob answered 500 ``BlobCorrupt``.
- ``GET /api/{type}s/{repo}[/revision/{rev}]``: repo info (``sha``, ``siblings``).
- ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``: paginated tree listing.
- ``POST /api/{type}s/{repo}/paths-info/{rev}``, ``GET /api/{type}s/{repo}/refs``.
- ``GET /api/{type}s/{repo}/commits/{rev}``: versions as commits; ``GET /api/models`` and
  ``GET /api/datasets``: the repos the token may read. Both paginated with an absolute ``Link``.
- A repo with no version yet answers ``main`` as an empty state (:func:`registry.hf.access.empty_head`).
- ``GET /api/whoami-v2`` and ``GET /api/agent-harnesses`` (asked by every hub 2.x process).

Revisions come from the raw URL path (see :func:`registry.hf.access.split_raw_tail`).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import and_, func, or_, select
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from registry.artifacts.integrity import Where
from registry.artifacts.models import Alias, Artifact, Version, VersionFile
from registry.artifacts.serve import BlobUnavailable, ServedFile, serve_blob
from registry.artifacts.versions import COMMITTED, aliases_of
from registry.auth.tokens import Context
from registry.hf.access import (
    MAIN,
    HfPrincipal,
    RepoRef,
    empty_head,
    public_base,
    repo_artifact,
    repo_ref,
    resolve_servable,
    split_raw_tail,
    version_commit,
)
from registry.hf.errors import HfError, HfRoute, bad_request, entry_not_found, hf_error_response
from registry.hf.ids import etag
from registry.hf.listing import RepoFile, commit_entry, paths_info, repo_info, repo_list_entry, tree_entries
from registry.hf.settings import hf_settings
from registry.web.headers import header_value

router = APIRouter(route_class=HfRoute, tags=["huggingface"])
_TRUE = frozenset({"1", "true", "yes", "on"})
_MAX_PATHS_INFO = 10_000
_MAX_PAGE = 1000
_MAX_SEARCH = 200


class _PrefixedType(Convertor[str]):
    """The repo-type word that prefixes non-model repos in file URLs (``/datasets/ns/name/resolve/...``)."""

    regex = "datasets|spaces|kernels"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("mir_hf_type", _PrefixedType())


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def _warning(message: str | None) -> dict[str, str]:
    """``X-HF-Warning: topic; message``: the client logs it once per topic (used for quarantined ancestors)."""
    if message is None:
        return {}
    return {"X-HF-Warning": f"mir-quarantine; {header_value(message)}", "X-Mir-Quarantine": "affected"}


def _files(version: Version) -> list[RepoFile]:
    return [RepoFile.from_digest(f.path, f.size, f.digest) for f in version.files]


# -- files ----------------------------------------------------------------------------------------------


def _serve_file(request: Request, ctx: Any, principal: Any, ref: RepoRef, fixed: int) -> Response:
    revision, path = split_raw_tail(request, fixed)
    with ctx.transaction() as s:
        artifact = repo_artifact(s, ref)
        empty = empty_head(s, ref, artifact, revision)
        if empty is not None:
            raise entry_not_found(ref.repo, path, empty, f"{ref.repo} holds no version yet, so no {path!r}")
        served = resolve_servable(s, ref, artifact, revision, principal.can_read)
        commit = version_commit(ref, served.version)
        entry = s.get(VersionFile, (served.version.id, path)) if path else None
        if entry is None:
            raise entry_not_found(ref.repo, path, commit)
        digest, size = entry.digest, entry.size
        where = Where(ref.namespace, ref.name, served.version.version)
    headers = {
        "X-Repo-Commit": commit,
        "ETag": etag(digest),
        "X-Linked-Etag": etag(digest),
        "X-Linked-Size": str(size),
        "X-Mir-Digest": digest,
        "Cache-Control": "private, max-age=0, must-revalidate",
        **_warning(served.warning),
    }
    head = request.method == "HEAD"

    def refuse(exc: BlobUnavailable) -> Response:
        code = {"blob_corrupt": "BlobCorrupt", "blob_missing": "BlobMissing"}.get(exc.code, exc.code)
        return hf_error_response(HfError(exc.status, code, exc.message), head=head)

    return serve_blob(ctx, request, ServedFile(digest, size, path, where), headers, refuse)


@router.get("/{prefix:mir_hf_type}/{namespace}/{name}/resolve/{rest:path}", operation_id="hf_resolve_prefixed")
@router.head("/{prefix:mir_hf_type}/{namespace}/{name}/resolve/{rest:path}", operation_id="hf_head_prefixed")
def resolve_prefixed(
    prefix: str, namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal
) -> Response:
    """A file of a dataset repo (``/datasets/ns/name/resolve/{rev}/{path}``); Range requests answer 206."""
    return _serve_file(request, ctx, principal, repo_ref(prefix, namespace, name), fixed=4)


@router.get("/{namespace}/{name}/resolve/{rest:path}", operation_id="hf_resolve_model")
@router.head("/{namespace}/{name}/resolve/{rest:path}", operation_id="hf_head_model")
def resolve_model(
    namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal
) -> Response:
    """A file of a model repo (``/ns/name/resolve/{rev}/{path}``); Range requests answer 206."""
    return _serve_file(request, ctx, principal, repo_ref("models", namespace, name), fixed=3)


# -- repo info, tree, paths-info, refs -------------------------------------------------------------------


def _info(ctx: Any, principal: Any, ref: RepoRef, revision: str) -> JSONResponse:
    with ctx.transaction() as s:
        artifact = repo_artifact(s, ref)
        empty = empty_head(s, ref, artifact, revision)
        if empty is not None:
            return JSONResponse(repo_info(
                repo=ref.repo, kind=ref.kind, commit=empty, files=[], version=None, manifest_digest=None,
                aliases=[], created_at=artifact.created_at, last_modified=artifact.created_at,
            ))
        served = resolve_servable(s, ref, artifact, revision, principal.can_read)
        version = served.version
        aliases = [a for a, v in aliases_of(s, artifact).items() if v == version.version]
        info = repo_info(
            repo=ref.repo,
            kind=ref.kind,
            commit=version_commit(ref, version),
            files=_files(version),
            version=version.version,
            manifest_digest=version.manifest_digest,
            aliases=aliases,
            created_at=artifact.created_at,
            last_modified=version.committed_at,
        )
    return JSONResponse(info, headers=_warning(served.warning))


@router.get("/api/{plural}/{namespace}/{name}")
def repo_info_main(plural: str, namespace: str, name: str, ctx: Context, principal: HfPrincipal) -> JSONResponse:
    """Repo info at the default revision ``main`` (``@latest`` unless an alias ``main`` exists)."""
    ref = repo_ref(plural, namespace, name)
    return _info(ctx, principal, ref, MAIN)


@router.get("/api/{plural}/{namespace}/{name}/revision/{rest:path}")
def repo_info_revision(
    plural: str, namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal
) -> JSONResponse:
    """Repo info at a revision: a version, an alias, ``main`` or a commit id."""
    ref = repo_ref(plural, namespace, name)
    revision, _ = split_raw_tail(request, 5)
    return _info(ctx, principal, ref, revision)


@router.get("/api/{plural}/{namespace}/{name}/tree/{rest:path}")
def list_tree(
    plural: str,
    namespace: str,
    name: str,
    rest: str,
    request: Request,
    ctx: Context,
    principal: HfPrincipal,
    recursive: str | None = None,
    expand: str | None = None,
    cursor: str | None = None,
) -> Response:
    """Folder listing, paginated with an absolute ``Link: <...>; rel="next"`` pinned to the commit id."""
    ref = repo_ref(plural, namespace, name)
    revision, path = split_raw_tail(request, 5)
    if cursor is not None and not re.fullmatch(r"[0-9]{1,12}", cursor):
        raise bad_request(f"invalid cursor {cursor[:40]!r}")
    start = int(cursor or 0)
    with ctx.transaction() as s:
        artifact = repo_artifact(s, ref)
        empty = empty_head(s, ref, artifact, revision)
        if empty is not None:
            commit, files, label = empty, [], f"{ref.repo} (no version yet)"
        else:
            version = resolve_servable(s, ref, artifact, revision, principal.can_read).version
            commit, files, label = version_commit(ref, version), _files(version), f"{ref.repo}@{version.version}"
    entries = tree_entries(files, path, _flag(recursive))
    if entries is None:
        raise entry_not_found(ref.repo, path, commit, f"{path!r} is not a folder of {label}")
    size = max(1, hf_settings().tree_page_size)
    page = entries[start : start + size]
    headers: dict[str, str] = {"X-Repo-Commit": commit}
    if start + size < len(entries):
        query = urlencode({"recursive": str(_flag(recursive)).lower(), "expand": str(_flag(expand)).lower(),
                           "cursor": start + size})
        suffix = f"/{quote(path, safe='')}" if path else ""
        url = f"{public_base(request, ctx)}/api/{ref.api_plural}/{ref.repo}/tree/{commit}{suffix}?{query}"
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(page, headers=headers)


async def _requested_paths(request: Request) -> list[str]:
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise bad_request("paths-info body is not valid JSON") from exc
        raw = data.get("paths") if isinstance(data, dict) else None
        paths = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    else:
        try:
            paths = parse_qs(body.decode("utf-8", errors="strict")).get("paths", [])
        except UnicodeDecodeError as exc:
            raise bad_request("paths-info body is not UTF-8") from exc
    if not all(isinstance(p, str) for p in paths) or len(paths) > _MAX_PATHS_INFO:
        raise bad_request(f"'paths' must be at most {_MAX_PATHS_INFO} strings")
    return paths


@router.post("/api/{plural}/{namespace}/{name}/paths-info/{rest:path}")
async def post_paths_info(
    plural: str, namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal
) -> Response:
    """Entries for the given paths (form ``paths=a&paths=b``), used by copy operations and HfFileSystem."""
    ref = repo_ref(plural, namespace, name)
    revision, _ = split_raw_tail(request, 5)
    paths = await _requested_paths(request)

    def lookup() -> tuple[str, list[RepoFile]]:
        with ctx.transaction() as s:
            artifact = repo_artifact(s, ref)
            empty = empty_head(s, ref, artifact, revision)
            if empty is not None:
                return empty, []
            version = resolve_servable(s, ref, artifact, revision, principal.can_read).version
            return version_commit(ref, version), _files(version)

    commit, files = await run_in_threadpool(lookup)
    return JSONResponse(paths_info(files, paths), headers={"X-Repo-Commit": commit})


@router.get("/api/{plural}/{namespace}/{name}/refs")
def list_refs(plural: str, namespace: str, name: str, ctx: Context, principal: HfPrincipal) -> dict[str, Any]:
    """Aliases as branches (``main`` = ``@latest`` unless an alias ``main`` exists); tags and versions as tags."""
    ref = repo_ref(plural, namespace, name)
    with ctx.transaction() as s:
        artifact = repo_artifact(s, ref)
        versions = {
            v.version: v
            for v in s.scalars(
                select(Version).where(Version.artifact_id == artifact.id, Version.state == COMMITTED)
                .order_by(Version.id)
            )
        }
        aliases = aliases_of(s, artifact)
        tagged = set(s.scalars(select(Alias.name).where(Alias.artifact_id == artifact.id, Alias.tag.is_(True))))
    if "main" not in aliases and "latest" in aliases:
        aliases = {"main": aliases["latest"], **aliases}
    branches = [
        {"name": alias, "ref": f"refs/heads/{alias}", "targetCommit": version_commit(ref, versions[target])}
        for alias, target in aliases.items()
        if target in versions and alias not in tagged
    ]
    tags = [
        {"name": alias, "ref": f"refs/tags/{alias}", "targetCommit": version_commit(ref, versions[target])}
        for alias, target in aliases.items()
        if target in versions and alias in tagged
    ] + [
        {"name": name_, "ref": f"refs/tags/{name_}", "targetCommit": version_commit(ref, v)}
        for name_, v in versions.items()
    ]
    return {"branches": branches, "converts": [], "tags": tags, "pullRequests": []}


# -- commits and repo lists ------------------------------------------------------------------------------


def _page(limit: str | None, cursor: str | None) -> tuple[int, int]:
    """``(size, start)`` of a listing page: ``limit=`` (1-1000, default ``MIR_HF_LIST_PAGE_SIZE``), ``cursor=``."""
    if limit is not None and not (re.fullmatch(r"[0-9]{1,4}", limit) and 1 <= int(limit) <= _MAX_PAGE):
        raise bad_request(f"'limit' must be a whole number from 1 to {_MAX_PAGE}")
    if cursor is not None and not re.fullmatch(r"[0-9]{1,12}", cursor):
        raise bad_request(f"invalid cursor {cursor[:40]!r}")
    default = max(1, min(hf_settings().list_page_size, _MAX_PAGE))
    return (int(limit) if limit is not None else default), int(cursor or 0)


def _next_link(url: str, request: Request, cursor: int) -> dict[str, str]:
    """The ``Link`` header of the next page: the same query with the cursor advanced, as an absolute URL."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", str(cursor))]
    return {"Link": f'<{url}?{urlencode(query)}>; rel="next"'}


@router.get("/api/{plural}/{namespace}/{name}/commits/{rest:path}")
def list_commits(
    plural: str,
    namespace: str,
    name: str,
    rest: str,
    request: Request,
    ctx: Context,
    principal: HfPrincipal,
    limit: str | None = None,
    cursor: str | None = None,
) -> Response:
    """``HfApi.list_repo_commits``: the committed versions up to the revision's, newest first.

    A version is a commit. The history of a revision is every version of the repo committed no later than
    the one it names (mir versions form one line per artifact), paginated with an absolute ``Link`` pinned to
    the revision's commit id so later pushes never shift a page. A repo with no version yet has no commits.
    """
    ref = repo_ref(plural, namespace, name)
    revision, path = split_raw_tail(request, 5)
    if path:
        raise bad_request("listing the commits of one path is not supported here: list the whole revision")
    size, start = _page(limit, cursor)
    formatted = "formatted" in request.query_params.getlist("expand[]")
    with ctx.transaction() as s:
        artifact = repo_artifact(s, ref)
        if empty_head(s, ref, artifact, revision) is not None:
            return JSONResponse([])
        head = resolve_servable(s, ref, artifact, revision, principal.can_read).version
        head_commit = version_commit(ref, head)
        rows = s.scalars(
            select(Version)
            .where(
                Version.artifact_id == artifact.id,
                Version.state == COMMITTED,
                or_(Version.committed_at < head.committed_at,
                    and_(Version.committed_at == head.committed_at, Version.id <= head.id)),
            )
            .order_by(Version.committed_at.desc(), Version.id.desc())
            .offset(start)
            .limit(size + 1)
        ).all()
        page = [
            commit_entry(commit=version_commit(ref, v), author=v.created_by, date=v.committed_at,
                         description=v.description, version=v.version, manifest_digest=v.manifest_digest,
                         formatted=formatted)
            for v in rows[:size]
        ]
    headers = {"X-Repo-Commit": head_commit}
    if len(rows) > size:
        url = f"{public_base(request, ctx)}/api/{ref.api_plural}/{ref.repo}/commits/{head_commit}"
        headers.update(_next_link(url, request, start + size))
    return JSONResponse(page, headers=headers)


_UNMATCHED_FILTERS = ("filter", "pipeline_tag", "apps", "inference", "inference_provider", "num_parameters",
                      "trained_dataset", "benchmark")


def _list_repos(request: Request, ctx: Any, principal: Any, kind: str) -> Response:
    """The repos of one kind the token may read, by creation: ``search`` (every term a substring of the id,
    ignoring case), ``author`` (the namespace) and ``limit``; keyset pages with an absolute ``Link``.

    Repos here carry no tags, task or library metadata, so a filter on those (``filter=``, ``pipeline_tag=``,
    ``gated=true``, ...) matches nothing. Only readable namespaces are ever queried, so neither the entries
    nor the cursor (the id of the page's last readable repo) say anything about other namespaces.
    """
    params = request.query_params
    size, after = _page(params.get("limit"), params.get("cursor"))
    terms = [t for t in params.getlist("search") if t]
    if any(len(t) > _MAX_SEARCH for t in terms):
        raise bad_request(f"a search term may be at most {_MAX_SEARCH} characters")
    author = params.get("author") or None
    if any(params.getlist(key) for key in _UNMATCHED_FILTERS) or _flag(params.get("gated")):
        return JSONResponse([])
    query = select(Artifact).where(Artifact.kind == kind, Artifact.id > after).order_by(Artifact.id)
    readable = principal.readable_namespaces()
    if readable is not None:
        query = query.where(Artifact.namespace.in_(sorted(readable)))
    if author is not None:
        query = query.where(Artifact.namespace == author)
    for term in terms:
        full_id = func.lower(Artifact.namespace.concat("/").concat(Artifact.name))
        query = query.where(full_id.contains(term.lower(), autoescape=True))
    with ctx.transaction() as s:
        rows = [a for a in s.scalars(query.limit(size + 1)).all() if principal.can_read(a.namespace)]
        page = rows[:size]
        modified = dict(s.execute(
            select(Version.artifact_id, func.max(Version.committed_at))
            .where(Version.artifact_id.in_([a.id for a in page]), Version.state == COMMITTED)
            .group_by(Version.artifact_id)
        ).tuples().all()) if page else {}
        entries = [
            repo_list_entry(repo=f"{a.namespace}/{a.name}", kind=kind, created_at=a.created_at,
                            last_modified=modified.get(a.id))
            for a in page
        ]
    headers: dict[str, str] = {}
    if len(rows) > size:
        headers = _next_link(f"{public_base(request, ctx)}/api/{kind}s", request, page[-1].id)
    return JSONResponse(entries, headers=headers)


@router.get("/api/models")
def list_models(request: Request, ctx: Context, principal: HfPrincipal) -> Response:
    """``HfApi.list_models``: the model repos this token may read."""
    return _list_repos(request, ctx, principal, "model")


@router.get("/api/datasets")
def list_datasets(request: Request, ctx: Context, principal: HfPrincipal) -> Response:
    """``HfApi.list_datasets``: the dataset repos this token may read."""
    return _list_repos(request, ctx, principal, "dataset")


# -- account and client housekeeping ---------------------------------------------------------------------


@router.get("/api/whoami-v2")
def whoami(principal: HfPrincipal) -> dict[str, Any]:
    """Who the token is (``HfApi().whoami()``); role ``write`` when any write scope is held."""
    writes = principal.is_admin or any(s.startswith("write:") for s in principal.scopes)
    return {
        "type": "user",
        "id": str(principal.token_id),
        "name": principal.name,
        "fullname": principal.name,
        "orgs": [],
        "auth": {"type": "access_token", "accessToken": {"displayName": principal.name,
                                                        "role": "write" if writes else "read"}},
        "mir": {"scopes": sorted(principal.scopes)},
    }


@router.get("/api/agent-harnesses")
def agent_harnesses() -> dict[str, Any]:
    """Asked once a day by every hub 2.x client; an empty answer keeps it quiet."""
    return {"standardEnvVars": [], "harnesses": {}}
