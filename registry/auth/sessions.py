"""Web interface sessions: a browser signs in with an API token and then acts as that token.

The cookie carries a random 256-bit secret; only its SHA-256 is stored (a database leak yields no usable
session). Every request re-reads the token, so the session sees exactly what the token may see, and revoking or
expiring the token ends its sessions. The CSRF token of a session is an HMAC keyed by the stored hash: the
server can recompute it on any replica, a page from another site cannot read it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from registry.auth.models import ApiToken, UiSession
from registry.auth.tokens import Principal, principal_of
from registry.core.errors import ApiError
from registry.core.tables import utcnow

SESSION_PREFIX = "mirs_"  # a public prefix, not a secret
SESSION_LIFETIME = timedelta(hours=8)
_MAX_COOKIE = 100


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(session: Session, principal: Principal, lifetime: timedelta = SESSION_LIFETIME) -> tuple[str, int]:
    """Store a new session for ``principal``'s token; returns the cookie value (never stored) and its max age in
    seconds, which never outlives the token."""
    token = session.get(ApiToken, principal.token_id)
    assert token is not None
    now = utcnow()
    expires = now + lifetime
    if token.expires_at is not None and token.expires_at < expires:
        expires = token.expires_at
    # Ended and expired sessions are useless: clear them as new ones start, so the table stays small.
    session.execute(delete(UiSession).where(or_(UiSession.expires_at <= now, UiSession.ended_at.is_not(None))))
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    session.add(UiSession(secret_hash=_hash(secret), token_id=token.id, created_at=now, expires_at=expires))
    session.flush()
    return secret, max(1, int((expires - now).total_seconds()))


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


def _live_row(session: Session, cookie: str) -> UiSession:
    if not cookie.startswith(SESSION_PREFIX) or len(cookie) > _MAX_COOKIE:
        raise _unauthorized("sign in to continue")
    digest = _hash(cookie)
    row = session.scalar(select(UiSession).where(UiSession.secret_hash == digest))
    if row is None or not hmac.compare_digest(row.secret_hash, digest) or row.ended_at is not None:
        raise _unauthorized("sign in to continue")
    if row.expires_at <= utcnow():
        raise _unauthorized("your session has expired: sign in again")
    return row


def resolve_session(session: Session, cookie: str) -> tuple[Principal, str]:
    """The principal of a live session and the session's CSRF token; 401 for unknown, ended or expired ones."""
    row = _live_row(session, cookie)
    token = session.get(ApiToken, row.token_id)
    if token is None:
        raise _unauthorized("sign in to continue")
    return principal_of(token), csrf_token(row.secret_hash)


def end_session(session: Session, cookie: str) -> bool:
    """Sign out: the session can never be used again. False when it was not live anyway."""
    try:
        row = _live_row(session, cookie)
    except ApiError:
        return False
    row.ended_at = utcnow()
    return True


def csrf_token(secret_hash: str) -> str:
    return hmac.new(bytes.fromhex(secret_hash), b"mir-ui-csrf", hashlib.sha256).hexdigest()
