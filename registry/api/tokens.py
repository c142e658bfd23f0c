"""API tokens: create (secret shown once), list, revoke; and ``whoami``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from registry.api.refs import TokenId
from registry.api.responses import TokenCreated, TokenInfo, WhoAmI
from registry.audit import log as audit
from registry.auth.models import ApiToken
from registry.auth.tokens import Context, CurrentPrincipal, create_token
from registry.core.errors import ApiError
from registry.core.schemas import RevokeRequest, TokenRequest
from registry.core.tables import utcnow

router = APIRouter(prefix="/v1", tags=["tokens"])


def _token_dict(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "scopes": row.scopes,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revoked_reason": row.revoked_reason,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
    return {"name": principal.name, "token_id": principal.token_id, "scopes": sorted(principal.scopes)}


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token_route(body: TokenRequest, ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    with ctx.transaction() as s:
        row, secret = create_token(s, body.name, body.scopes, created_by=principal.name, expires_at=expires)
        audit.record(s, action="token.created", actor=principal.name,
                     details={"token_id": row.id, "name": row.name, "scopes": row.scopes,
                              "expires_at": row.expires_at.isoformat() if row.expires_at else None})
        return {**_token_dict(row), "token": secret}


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(ctx: Context, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    with ctx.transaction() as s:
        return [_token_dict(t) for t in s.scalars(select(ApiToken).order_by(ApiToken.id))]


@router.post("/tokens/{token_id}/revoke", response_model=TokenInfo)
def revoke_token(token_id: TokenId, body: RevokeRequest, ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    """Admins revoke any token; anyone may revoke their own."""
    if not principal.is_admin and principal.token_id != token_id:
        raise ApiError(403, "forbidden", "only admins may revoke other tokens")
    with ctx.transaction() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise ApiError(404, "token_not_found", f"no token with id {token_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            row.revoked_reason = body.reason
            audit.record(s, action="token.revoked", actor=principal.name,
                         details={"token_id": row.id, "name": row.name, "reason": body.reason})
        return _token_dict(row)
