"""The deploy gate: policy per namespace, ``POST /v1/verify`` with a signed receipt, verification bundles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from registry.api.refs import Name, Namespace, VersionRef, checked_repo, checked_version
from registry.artifacts import integrity as blob_integrity
from registry.artifacts.versions import get_artifact, resolve_ref
from registry.auth.tokens import Context, CurrentPrincipal
from registry.core.errors import ApiError
from registry.core.names import InvalidNameError, parse_ref
from registry.core.schemas import NONCE_PATTERN, VerifyRequest
from registry.gate import attestation, decisions
from registry.policy import documents as policy
from registry.web.metrics import VERIFY_DECISIONS
from signing.digests import InvalidDigestError, validate_digest
from signing.paths import InvalidPathError, validate_relative_path

router = APIRouter(prefix="/v1", tags=["verify"])
MAX_OBSERVED = 100_000


@router.get("/namespaces/{namespace}/policy")
def get_policy(namespace: Namespace, ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    namespace, _ = checked_repo(namespace, "x")
    with ctx.transaction() as s:
        body, is_default = policy.policy_for(s, namespace)
        return {"namespace": namespace, "policy": body.model_dump(), "default": is_default,
                "policy_digest": policy.policy_digest(body)}


@router.put("/namespaces/{namespace}/policy")
def put_policy(
    namespace: Namespace, ctx: Context, principal: CurrentPrincipal, body: dict[str, Any] = Body(...)  # noqa: B008
) -> dict[str, Any]:
    """Set a namespace's policy (admin only; audited). Unknown fields are refused."""
    namespace, _ = checked_repo(namespace, "x")
    parsed = policy.parse_policy(body)
    with ctx.transaction() as s:
        policy.set_policy(s, namespace, parsed, principal.name)
        return {"namespace": namespace, "policy": parsed.model_dump(), "default": False,
                "policy_digest": policy.policy_digest(parsed)}


@router.post("/verify")
def verify(body: VerifyRequest, ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    """Evaluate policy for a version (and the digests a job observed); answer with reasons and a signed receipt."""
    try:
        ref = parse_ref(body.reference)
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc
    principal.require_read(ref.namespace)
    observed = None
    if body.observed is not None:
        if len(body.observed) > MAX_OBSERVED:
            raise ApiError(413, "too_many_files", f"at most {MAX_OBSERVED} observed files")
        try:
            observed = {validate_relative_path(p): validate_digest(d) for p, d in body.observed.items()}
        except (InvalidPathError, InvalidDigestError) as exc:
            raise ApiError(400, "invalid_observed", str(exc)) from exc
    signer = ctx.signer
    with ctx.transaction() as s:
        version = resolve_ref(s, get_artifact(s, ref.namespace, ref.name), ref.ref)
        decision = decisions.evaluate(s, version, observed, can_read=principal.can_read)
        VERIFY_DECISIONS.labels(decision.result.decision).inc()
        signed = attestation.receipt(signer, decision, observed, reference=body.reference, nonce=body.nonce)
        return {**decisions.decision_to_dict(decision), "receipt": signed}


@router.get("/artifacts/{namespace}/{name}/versions/{ref}/bundle")
def verification_bundle(
    namespace: Namespace, name: Name, ref: VersionRef, ctx: Context, principal: CurrentPrincipal,
    nonce: Annotated[str | None, Query(min_length=16, max_length=128, pattern=NONCE_PATTERN,
                                       description="echoed inside the signed attestation")] = None,
) -> dict[str, Any]:
    """Manifest, signatures, registry attestation and audit inclusion proof: fetch once, verify offline.

    Refused (409 ``blob_corrupt``) while any stored file of the version is marked corrupt or is missing.
    """
    namespace, name = checked_repo(namespace, name)
    signer = ctx.signer
    with ctx.transaction() as s:
        ref = checked_version(ref)
        version = resolve_ref(s, get_artifact(s, namespace, name), ref)
        # Storage integrity, checked (and a missing file marked) in this transaction so the mark is kept.
        bad = blob_integrity.corrupt_files(s, version, ctx.blobs)
        label = f"{namespace}/{name}@{version.version}"
        if not bad:
            return attestation.bundle(s, signer, version, ctx.settings.log_id, can_read=principal.can_read,
                                      requested_ref=ref, nonce=nonce)
    raise ApiError(409, "blob_corrupt", f"no bundle for {label}: the stored bytes of {', '.join(bad[:10])} are "
                   "corrupt or missing; an operator must repair them (mir fsck)")
