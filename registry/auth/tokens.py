"""API tokens and scopes.

A token is ``mir_<43 url-safe chars>`` (256 random bits). Only its SHA-256 is
stored: a high-entropy secret needs no slow password hash, and lookups stay a
single indexed equality. Scopes: ``admin``, ``read:<namespace>``,
``write:<namespace>``, ``trust:<namespace>`` (``*`` for every namespace).
Write implies read. Trust (deciding whose signatures the namespace accepts:
keys and policy) implies read but not write, and write does not imply trust:
a pusher must not be able to make its own key trusted. Only admins create
tokens, so only an admin can grant trust.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from registry.auth.models import ApiToken
from registry.core.context import RegistryContext, get_context
from registry.core.errors import ApiError
from registry.core.tables import utcnow

TOKEN_PREFIX = "mir_"  # noqa: S105 - a public prefix, not a secret
_SCOPE = re.compile(r"^(admin|metrics|(read|write|trust):(\*|[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?))$")
LAST_USED_GRANULARITY = timedelta(minutes=1)


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_scopes(scopes: list[str]) -> list[str]:
    if not scopes:
        raise ApiError(400, "invalid_scope", "a token needs at least one scope")
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise ApiError(
                400, "invalid_scope",
                f"invalid scope {scope!r}: use admin, metrics, read:<namespace>, write:<namespace> or "
                "trust:<namespace>",
            )
    return sorted(set(scopes))


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may do."""

    token_id: int
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def can_scrape_metrics(self) -> bool:
        """``metrics``: a token for Prometheus that reads counters and nothing else."""
        return self.is_admin or "metrics" in self.scopes

    def can_write(self, namespace: str) -> bool:
        return self.is_admin or bool({f"write:{namespace}", "write:*"} & self.scopes)

    def can_trust(self, namespace: str) -> bool:
        """May decide whom the namespace trusts: its signing keys and its policy."""
        return self.is_admin or bool({f"trust:{namespace}", "trust:*"} & self.scopes)

    def can_read(self, namespace: str) -> bool:
        return (
            self.can_write(namespace)
            or self.can_trust(namespace)
            or bool({f"read:{namespace}", "read:*"} & self.scopes)
        )

    def readable_namespaces(self) -> frozenset[str] | None:
        """Every namespace :meth:`can_read` allows, or None when that is all of them (admin, a ``*`` scope):
        what lets a listing filter in SQL rather than read rows only to hide them."""
        names = {rest for kind, _, rest in (scope.partition(":") for scope in self.scopes)
                 if kind in ("read", "write", "trust")}
        if self.is_admin or "*" in names:
            return None
        return frozenset(names)

    def require_read(self, namespace: str) -> None:
        if not self.can_read(namespace):
            raise ApiError(403, "forbidden", f"token {self.name!r} may not read namespace {namespace!r}")

    def require_write(self, namespace: str) -> None:
        if not self.can_write(namespace):
            raise ApiError(403, "forbidden", f"token {self.name!r} may not write to namespace {namespace!r}")

    def require_trust(self, namespace: str) -> None:
        if not self.can_trust(namespace):
            raise ApiError(
                403, "forbidden",
                f"token {self.name!r} may not change whom namespace {namespace!r} trusts (needs trust:{namespace})",
            )

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ApiError(403, "forbidden", f"token {self.name!r} is not an admin token")


def create_token(
    session: Session, name: str, scopes: list[str], *, created_by: str | None, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Store a new token and return it with its secret (which is never stored)."""
    secret = generate_token()
    row = ApiToken(
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 4],
        scopes=validate_scopes(scopes),
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


def count_tokens(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ApiToken)) or 0


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="mir"'})


def extract_bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized("Authorization header must be 'Bearer <token>'")
    return value.strip()


_TOKEN_BY_HASH = select(ApiToken).where(ApiToken.token_hash == bindparam("digest"))  # built once, for every request


def authenticate(ctx: RegistryContext, token: str) -> Principal:
    """Resolve a bearer token to a principal; unknown, revoked or expired tokens are refused."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise _unauthorized("invalid token")
    digest = hash_token(token)
    with ctx.lookup() as session:
        row = session.scalar(_TOKEN_BY_HASH, {"digest": digest})
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise _unauthorized("invalid token")
        principal = principal_of(row)
        if session.dirty:  # its use noted (once a minute): one UPDATE, which commits on its own
            session.commit()
        return principal


def principal_of(row: ApiToken) -> Principal:
    """The principal a stored token stands for, refused if revoked or expired; notes its use (by the minute).
    Shared by bearer tokens and web interface sessions, so both see exactly what the token may see."""
    if row.revoked_at is not None:
        raise _unauthorized("token has been revoked")
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        raise _unauthorized("token has expired")
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        row.last_used_at = now
    return Principal(token_id=row.id, name=row.name, scopes=frozenset(row.scopes))


def require_principal(request: Request, ctx: Annotated[RegistryContext, Depends(get_context)]) -> Principal:
    """FastAPI dependency: the caller must present a valid token (already checked by the route rule, if any)."""
    checked = getattr(request.state, "principal", None)
    if isinstance(checked, Principal):
        return checked
    token = extract_bearer(request)
    if token is None:
        raise _unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    return authenticate(ctx, token)


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
Context = Annotated[RegistryContext, Depends(get_context)]
