"""The read side of the Hub protocol: what ``hf_hub_download``, ``snapshot_download`` and ``from_pretrained`` call.

Routes (repo types: models at the root, datasets under ``/datasets``):

- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file, served directly (200/206),
  with ``X-Repo-Commit``, ``ETag`` = sha256 and the size; every byte checked on the way
  out (``registry.blob_serve``), a corrupt blob answered 500 ``BlobCorrupt``.
- ``GET /api/{type}s/{repo}[/revision/{rev}]``: repo info (``sha``, ``siblings``).
- ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``: paginated tree listing.
- ``POST /api/{type}s/{repo}/paths-info/{rev}``, ``GET /api/{type}s/{repo}/refs``.
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
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from registry.artifacts.integrity import Where
from registry.artifacts.models import Version, VersionFile
from registry.artifacts.serve import BlobUnavailable, ServedFile, serve_blob
from registry.artifacts.versions import COMMITTED, aliases_of
from registry.auth.tokens import Context
from registry.hf.access import (
    MAIN,
    HfPrincipal,
    RepoRef,
    public_base,
    repo_artifact,
    repo_ref,
    resolve_servable,
    split_raw_tail,
    version_commit,
)
from registry.hf.errors import HfError, HfRoute, bad_request, entry_not_found, hf_error_response
from registry.hf.ids import etag
from registry.hf.listing import RepoFile, paths_info, repo_info, tree_entries
from registry.hf.settings import hf_settings
from registry.web.headers import header_value

router = APIRouter(route_class=HfRoute, tags=["huggingface"])
_TRUE = frozenset({"1", "true", "yes", "on"})
_MAX_PATHS_INFO = 10_000


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
        version = resolve_servable(s, ref, repo_artifact(s, ref), revision, principal.can_read).version
        commit = version_commit(ref, version)
        files = _files(version)
    entries = tree_entries(files, path, _flag(recursive))
    if entries is None:
        raise entry_not_found(ref.repo, path, commit, f"{path!r} is not a folder of {ref.repo}@{version.version}")
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
            version = resolve_servable(s, ref, repo_artifact(s, ref), revision, principal.can_read).version
            return version_commit(ref, version), _files(version)

    commit, files = await run_in_threadpool(lookup)
    return JSONResponse(paths_info(files, paths), headers={"X-Repo-Commit": commit})


@router.get("/api/{plural}/{namespace}/{name}/refs")
def list_refs(plural: str, namespace: str, name: str, ctx: Context, principal: HfPrincipal) -> dict[str, Any]:
    """Aliases as branches (``main`` = ``@latest`` unless an alias ``main`` exists), versions as tags."""
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
    if "main" not in aliases and "latest" in aliases:
        aliases = {"main": aliases["latest"], **aliases}
    branches = [
        {"name": alias, "ref": f"refs/heads/{alias}", "targetCommit": version_commit(ref, versions[target])}
        for alias, target in aliases.items()
        if target in versions
    ]
    tags = [
        {"name": name_, "ref": f"refs/tags/{name_}", "targetCommit": version_commit(ref, v)}
        for name_, v in versions.items()
    ]
    return {"branches": branches, "converts": [], "tags": tags, "pullRequests": []}


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
