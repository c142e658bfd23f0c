"""The write side of the Hub protocol: ``create_repo``, ``upload_folder`` / ``create_commit`` (LFS "basic"),
and branches and tags (:mod:`registry.hf.branches`).

Sequence the client follows (with ``HF_HUB_DISABLE_XET=1``): create the repo,
validate README metadata, ``preupload`` (regular or LFS per file), LFS ``batch``
(signed upload URLs), ``PUT`` each LFS object, ``verify``, then the NDJSON
``commit``, which :mod:`registry.hf.commits` turns into a committed version.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from registry.artifacts.holdings import held_by
from registry.artifacts.uploads import receive_blob, record_received
from registry.artifacts.versions import find_artifact, get_or_create_artifact
from registry.auth.tokens import Context
from registry.core.blobstore import BlobDigestMismatch, BlobSizeMismatch, BlobTooLarge
from registry.core.errors import ApiError
from registry.core.names import InvalidNameError, validate_segment
from registry.hf import branches, commits
from registry.hf.access import (
    MAIN,
    HfPrincipal,
    RepoRef,
    public_base,
    repo_artifact,
    repo_ref,
    require_write,
    split_raw_tail,
)
from registry.hf.errors import HfError, HfRoute, bad_request
from registry.hf.settings import hf_settings, url_secret
from registry.hf.uploads import (
    UploadSignatureError,
    batch_objects,
    check_upload_signature,
    check_upload_token,
    preupload_modes,
)

router = APIRouter(route_class=HfRoute, tags=["huggingface"])
LFS_JSON = "application/vnd.git-lfs+json"
_MAX_BATCH = 1000
_TYPES = {None: "model", "model": "model", "dataset": "dataset"}


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateRepoRequest(_Loose):
    name: str = Field(max_length=200)
    organization: str | None = Field(default=None, max_length=200)
    type: str | None = None


class PreuploadFile(_Loose):
    path: str = Field(max_length=4096)
    size: StrictInt = Field(ge=0)
    sample: str | None = None


class PreuploadRequest(_Loose):
    files: list[PreuploadFile] = Field(max_length=_MAX_BATCH)
    gitIgnore: str | None = None


class VerifyRequest(_Loose):
    oid: str
    size: StrictInt = Field(ge=0)


def _repo_url(base: str, ref: RepoRef) -> str:
    return f"{base}/{ref.url_prefix}{ref.repo}"


def _create_pr(request: Request) -> None:
    if request.query_params.get("create_pr", "").lower() in ("1", "true"):
        raise bad_request("pull requests are not supported here: push to main, or to a new version name as revision")


# -- repos ----------------------------------------------------------------------------------------------


@router.post("/api/repos/create")
def create_repo(body: CreateRepoRequest, request: Request, ctx: Context, principal: HfPrincipal) -> JSONResponse:
    """``HfApi.create_repo``: an (empty) artifact of kind model or dataset. 409 (with ``url``) if it exists."""
    if body.type not in _TYPES:
        raise bad_request(f"repo type {body.type!r} is not served here: use model or dataset")
    if not body.organization:
        raise bad_request("repo ids here are namespace/name: pass repo_id='namespace/name'")
    try:
        namespace = validate_segment(body.organization, "namespace")
        name = validate_segment(body.name, "name")
    except InvalidNameError as exc:
        raise bad_request(str(exc)) from exc
    ref = RepoRef(_TYPES[body.type], namespace, name)
    require_write(principal, ref)
    url = _repo_url(public_base(request, ctx), ref)
    with ctx.transaction() as s:
        existing = find_artifact(s, namespace, name)
        if existing is not None:
            message = f"You already created this {existing.kind} repo" if existing.kind == ref.kind else (
                f"{ref.repo} exists as a {existing.kind}, not a {ref.kind}"
            )
            return JSONResponse({"error": message, "url": url}, status_code=409, headers={"X-Error-Code": "RepoExists"})
        get_or_create_artifact(s, namespace, name, ref.kind, principal.name)
    return JSONResponse({"url": url, "name": ref.repo, "id": ref.repo})


@router.post("/api/validate-yaml")
def validate_yaml() -> dict[str, Any]:
    """README metadata check the client runs before committing a README.md; the registry keeps README as-is."""
    return {"errors": [], "warnings": []}


# -- preupload and LFS ----------------------------------------------------------------------------------


@router.post("/api/{plural}/{namespace}/{name}/preupload/{rest:path}")
def preupload(
    plural: str,
    namespace: str,
    name: str,
    rest: str,
    body: PreuploadRequest,
    request: Request,
    ctx: Context,
    principal: HfPrincipal,
) -> dict[str, Any]:
    """Upload mode per file, plus the remote oid of unchanged files so the client can skip them."""
    ref = repo_ref(plural, namespace, name)
    _create_pr(request)
    revision, _ = split_raw_tail(request, 5)
    with ctx.transaction() as s:
        artifact = find_artifact(s, namespace, name)
        if artifact is not None and artifact.kind != ref.kind:
            raise HfError(404, "RepoNotFound", f"{ref.repo} is a {artifact.kind}, not a {ref.kind} repo")
        target = commits.plan_target(s, ref, artifact, revision)
        try:
            settings = hf_settings()
            files = preupload_modes(
                ctx.blobs, target.parent, body.files, settings.regular_max_bytes, settings.inline_budget_bytes
            )
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
    return {"files": files}


async def _lfs_batch(request: Request, ctx: Any, principal: Any, ref: RepoRef) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError as exc:
        raise bad_request("LFS batch body is not JSON") from exc
    if not isinstance(body, dict) or body.get("operation") != "upload":
        raise bad_request("only the LFS 'upload' operation is supported; download files through /resolve")
    objects = body.get("objects")
    if not isinstance(objects, list) or len(objects) > _MAX_BATCH:
        raise bad_request(f"'objects' must be a list of at most {_MAX_BATCH} objects")
    base = public_base(request, ctx)

    def plan() -> list[dict[str, Any]]:
        settings = hf_settings()
        with ctx.transaction() as s:
            return batch_objects(
                s, ctx.blobs, objects, base=base, secret=url_secret(ctx.settings.data_dir.resolve()),
                namespace=ref.namespace, can_read=principal.can_read, token_id=principal.token_id,
                ttl=settings.url_ttl_seconds,
                max_size=ctx.settings.max_blob_size, now=time.time(),
            )

    answer = await run_in_threadpool(plan)
    return JSONResponse(
        {"transfer": "basic", "objects": answer, "hash_algo": "sha256"}, headers={"Content-Type": LFS_JSON}
    )


XET_UNSUPPORTED = (
    "this registry stores files through Git LFS, not Xet: set HF_HUB_DISABLE_XET=1 before importing "
    "huggingface_hub (or uninstall hf_xet), and upload again"
)


XET_ADVICE_PATH = "/api/xet-is-not-supported-here/set-HF_HUB_DISABLE_XET=1-to-upload-through-git-lfs"


@router.get("/api/{plural}/{namespace}/{name}/xet-write-token/{rest:path}")
def xet_write_token(plural: str, namespace: str, name: str, rest: str, principal: HfPrincipal) -> Response:
    """huggingface_hub 1.x and later upload every LFS file through Xet when ``hf_xet`` is installed, with no
    fallback, and its Rust client reports only a failed request's status and URL. So the registry, which
    speaks LFS, redirects to a URL that spells the fix, and that URL answers 400 with the same words."""
    require_write(principal, repo_ref(plural, namespace, name))
    return RedirectResponse(XET_ADVICE_PATH, status_code=307)


@router.get(XET_ADVICE_PATH)
def xet_advice() -> None:
    raise HfError(400, "XetNotSupported", XET_UNSUPPORTED)


@router.post("/{prefix:mir_hf_type}/{namespace}/{name}.git/info/lfs/objects/batch")
async def lfs_batch_prefixed(
    prefix: str, namespace: str, name: str, request: Request, ctx: Context, principal: HfPrincipal
) -> JSONResponse:
    return await _lfs_batch(request, ctx, principal, repo_ref(prefix, namespace, name))


@router.post("/{namespace}/{name}.git/info/lfs/objects/batch")
async def lfs_batch_model(
    namespace: str, name: str, request: Request, ctx: Context, principal: HfPrincipal
) -> JSONResponse:
    """Git-LFS batch API (``basic`` transfer): signed upload URLs for objects the registry lacks."""
    return await _lfs_batch(request, ctx, principal, repo_ref("models", namespace, name))


@router.put("/api/mir-lfs/{oid}")
async def lfs_upload(
    oid: str, request: Request, ctx: Context, size: str = "", ns: str = "", exp: str = "", tok: str = "",
    sig: str = "",
) -> dict[str, Any]:
    """The signed upload URL: no Authorization header (the client sends none); the signature is the permission,
    as long as the token it was issued to stays valid."""

    def token_alive() -> None:
        with ctx.transaction() as s:
            check_upload_token(s, int(tok), ns)

    try:
        declared = check_upload_signature(
            url_secret(ctx.settings.data_dir.resolve()), oid, size, ns, exp, sig, token=tok, now=time.time()
        )
        await run_in_threadpool(token_alive)
    except UploadSignatureError as exc:
        raise HfError(403, "InvalidUploadUrl", str(exc)) from exc
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != declared:
        raise HfError(400, "SizeMismatch", f"body has {length} bytes, the LFS object {oid} is {declared} bytes")
    digest = f"sha256:{oid}"
    try:
        stored_blob = await receive_blob(ctx.blobs, digest, declared, request.stream())
    except BlobSizeMismatch as exc:
        raise HfError(413 if isinstance(exc, BlobTooLarge) else 400, "SizeMismatch", f"{oid}: {exc}") from exc
    except BlobDigestMismatch as exc:
        raise HfError(400, "DigestMismatch", f"refused: {exc}") from exc
    except ClientDisconnect as exc:
        raise HfError(400, "UploadIncomplete", "client disconnected before the body was complete") from exc

    def record() -> None:
        try:
            with ctx.transaction() as s:  # fresh bytes also replace a copy that was marked corrupt
                record_received(s, ctx.blobs, ns, {digest: (declared, stored_blob)}, f"lfs-upload:{ns}")
        except ApiError as exc:
            if exc.code != "upload_collected":
                raise
            raise HfError(503, "UploadCollected", f"{oid} was garbage-collected while it uploaded: send it again") \
                from exc

    await run_in_threadpool(record)
    return {"oid": oid, "size": declared}


@router.post("/api/mir-lfs/{oid}/verify")
def lfs_verify(oid: str, body: VerifyRequest, ctx: Context, principal: HfPrincipal, ns: str = "") -> dict[str, Any]:
    """The client's post-upload check: does the namespace the upload was for hold the object, with this size?

    Only the namespace's own holdings count, so the answer says nothing about other tenants' blobs.
    """
    if body.oid != oid:
        raise bad_request("oid in the body does not match the URL")
    try:
        namespace = validate_segment(ns, "namespace")
    except InvalidNameError as exc:
        raise bad_request(f"verify URL needs the namespace it uploads to (ns=): {exc}") from exc
    require_write(principal, RepoRef("model", namespace, "x"))
    with ctx.transaction() as s:
        if f"sha256:{oid}" not in held_by(s, ctx.blobs, namespace, {f"sha256:{oid}": body.size}):
            raise HfError(404, "LfsObjectNotFound", f"LFS object {oid} ({body.size} bytes) is not stored")
    return {"oid": oid, "size": body.size, "verified": True}


# -- branches and tags -----------------------------------------------------------------------------------


class BranchRequest(_Loose):
    startingPoint: str | None = Field(default=None, max_length=200)


class TagRequest(_Loose):
    tag: str = Field(max_length=200)
    message: str | None = Field(default=None, max_length=10_000)


def _one_segment(request: Request, what: str) -> str:
    """The branch, tag or revision after ``/api/{type}s/{repo}/{word}/``: one (percent-encoded) segment."""
    value, extra = split_raw_tail(request, 5)
    if extra:
        raise bad_request(f"the URL names more than one {what}: {value!r} then {extra[:80]!r}")
    return value


@router.post("/api/{plural}/{namespace}/{name}/branch/{rest:path}")
def create_branch(
    plural: str, namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal,
    body: BranchRequest | None = None,
) -> dict[str, Any]:
    """``HfApi.create_branch``: a new alias at ``startingPoint`` (default ``main``); audited like ``mir alias set``."""
    ref = repo_ref(plural, namespace, name)
    branch = _one_segment(request, "branch")
    with ctx.transaction() as s:
        return branches.create_branch(
            s, ref, repo_artifact(s, ref), branch, body.startingPoint if body else None, principal
        )


@router.delete("/api/{plural}/{namespace}/{name}/branch/{rest:path}")
def delete_branch(
    plural: str, namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal
) -> dict[str, Any]:
    """``HfApi.delete_branch``: remove an alias (never ``main``/``latest``, never a tag); audited."""
    ref = repo_ref(plural, namespace, name)
    branch = _one_segment(request, "branch")
    with ctx.transaction() as s:
        branches.delete_branch(s, ref, repo_artifact(s, ref), branch, principal.name)
    return {"deleted": branch}


@router.post("/api/{plural}/{namespace}/{name}/tag/{rest:path}")
def create_tag(
    plural: str, namespace: str, name: str, rest: str, body: TagRequest, request: Request, ctx: Context,
    principal: HfPrincipal,
) -> dict[str, Any]:
    """``HfApi.create_tag``: an alias that never moves, at the revision in the URL; 409 if the name exists."""
    ref = repo_ref(plural, namespace, name)
    revision = _one_segment(request, "revision")
    with ctx.transaction() as s:
        return branches.create_tag(s, ref, repo_artifact(s, ref), body.tag, revision, body.message, principal)


@router.delete("/api/{plural}/{namespace}/{name}/tag/{rest:path}")
def delete_tag(
    plural: str, namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal
) -> dict[str, Any]:
    """``HfApi.delete_tag``: refused (409), tags and versions are immutable; an unknown tag is RevisionNotFound."""
    ref = repo_ref(plural, namespace, name)
    tag = _one_segment(request, "tag")
    with ctx.transaction() as s:
        branches.delete_tag(s, ref, repo_artifact(s, ref), tag, principal.name)
    return {"deleted": tag}


# -- commit ---------------------------------------------------------------------------------------------


@router.post("/api/{plural}/{namespace}/{name}/commit/{rest:path}")
async def create_commit(
    plural: str, namespace: str, name: str, rest: str, request: Request, ctx: Context, principal: HfPrincipal
) -> dict[str, Any]:
    """NDJSON commit: apply the operations to ``main`` and commit the result as a new version."""
    ref = repo_ref(plural, namespace, name)
    _create_pr(request)
    revision, _ = split_raw_tail(request, 5)
    body = await request.body()
    base = public_base(request, ctx)

    def run() -> commits.CommitResult:
        try:
            parsed = commits.parse_commit(body, max_operations=ctx.settings.max_manifest_files)
        except commits.CommitFormatError as exc:
            raise bad_request(f"malformed commit: {exc}") from exc
        for op in parsed.operations:
            if op.content is not None and len(op.content) > ctx.settings.max_blob_size:
                raise HfError(413, "BlobTooLarge", f"{op.path} is larger than the registry's blob limit")
        commits.store_inline(ctx.blobs, parsed.operations)
        signer = ctx.signer  # loaded outside the transaction: loading may need its own
        with ctx.transaction() as s:
            return commits.commit(
                s, ctx.blobs, ctx.settings, ref, revision, parsed, actor=principal.name, signer=signer
            )

    result = await run_in_threadpool(run)
    return {
        "success": True,
        "commitOid": result.commit,
        "commitUrl": f"{_repo_url(base, ref)}/commit/{result.commit}",
        "pullRequestUrl": None,
        "mir": {"version": result.version, "created": result.created, "revision": revision or MAIN},
    }
