"""The deploy gate: policy per namespace, ``POST /v1/verify`` with a signed receipt, verification bundles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from registry import attestation, policy
from registry.api.refs import checked_repo, checked_version
from registry.auth import Context, CurrentPrincipal
from registry.errors import ApiError
from registry.names import InvalidNameError, parse_ref
from registry.schemas import VerifyRequest
from registry.versions import get_artifact, resolve_ref
from signing.digests import InvalidDigestError, validate_digest
from signing.paths import InvalidPathError, validate_relative_path

router = APIRouter(prefix="/v1", tags=["verify"])
MAX_OBSERVED = 100_000


@router.get("/namespaces/{namespace}/policy")
def get_policy(namespace: str, ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    namespace, _ = checked_repo(namespace, "x")
    principal.require_read(namespace)
    with ctx.transaction() as s:
        body, is_default = policy.policy_for(s, namespace)
        return {"namespace": namespace, "policy": body.model_dump(), "default": is_default,
                "policy_digest": policy.policy_digest(body)}


@router.put("/namespaces/{namespace}/policy")
def put_policy(
    namespace: str, ctx: Context, principal: CurrentPrincipal, body: dict[str, Any] = Body(...)  # noqa: B008
) -> dict[str, Any]:
    """Set a namespace's policy (admin only; audited). Unknown fields are refused."""
    namespace, _ = checked_repo(namespace, "x")
    principal.require_admin()
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
        decision = policy.evaluate(s, version, observed)
        return {**policy.decision_to_dict(decision), "receipt": attestation.receipt(signer, decision, observed)}


@router.get("/artifacts/{namespace}/{name}/versions/{ref}/bundle")
def verification_bundle(
    namespace: str, name: str, ref: str, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Manifest, signatures, registry attestation and audit inclusion proof: fetch once, verify offline."""
    namespace, name = checked_repo(namespace, name)
    principal.require_read(namespace)
    signer = ctx.signer
    with ctx.transaction() as s:
        version = resolve_ref(s, get_artifact(s, namespace, name), checked_version(ref))
        return attestation.bundle(s, signer, version, ctx.settings.log_id)
