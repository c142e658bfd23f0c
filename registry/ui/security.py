"""What keeps the web interface safe in a browser: response headers (a strict Content-Security-Policy), the
session cookie, CSRF checks on every form, and bounded form parsing.

Sessions live in :mod:`registry.auth.sessions`; this module is their HTTP side. A request that authenticates
with a bearer token (scripts, tests) carries no ambient credential, so it needs no CSRF token; a request that
rides on the session cookie must send the session's CSRF token in the form, and a foreign ``Origin`` is refused.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request, Response

from registry.auth.sessions import resolve_session
from registry.auth.tokens import Principal
from registry.core.context import RegistryContext, get_context
from registry.core.errors import ApiError

SESSION_COOKIE = "mir_session"
LOGIN_CSRF_COOKIE = "mir_login_csrf"
COOKIE_PATH = "/ui"
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 20

# One policy for every page, /docs included (Swagger UI runs under it: styles it sets go through the CSSOM).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def add_security_headers(response: Response) -> None:
    """Every web interface response: the policy, no sniffing, no framing; pages are never cached."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.media_type == "text/html" or response.headers.get("content-type", "").startswith("text/html"):
        response.headers.setdefault("Cache-Control", "no-store")


def is_https(request: Request) -> bool:
    """Served over HTTPS: the request's own scheme (uvicorn's proxy headers), or a configured https base URL
    (a TLS-terminating proxy in front), so the cookie is then Secure."""
    if request.url.scheme == "https":
        return True
    ctx = getattr(request.app.state, "ctx", None)
    base = getattr(getattr(ctx, "settings", None), "base_url", "")
    return isinstance(base, str) and base.startswith("https://")


def set_session_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=is_https(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=is_https(request))


def session_principal(request: Request, ctx: RegistryContext) -> Principal:
    """The principal of the session cookie (401 without a live one); remembers the session's CSRF token."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise ApiError(401, "unauthorized", "sign in to continue")
    with ctx.transaction() as s:
        principal, csrf = resolve_session(s, cookie)
    request.state.ui_csrf = csrf
    return principal


def page_csrf(request: Request) -> str:
    """The CSRF token forms on this page must carry ("" for bearer-authenticated requests, which need none)."""
    value = getattr(request.state, "ui_csrf", None)
    return value if isinstance(value, str) else ""


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Refuse a form sent with the session cookie unless it carries the session's CSRF token from our origin."""
    expected = getattr(request.state, "ui_csrf", None)
    if expected is None:
        return  # authenticated by a bearer token: nothing ambient for another site to ride on
    if not _same_origin(request) or not hmac.compare_digest(form.get("csrf", ""), expected):
        raise ApiError(400, "csrf_failed", "this form has expired or came from another site: reload the page")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def check_login_csrf(request: Request, form: dict[str, str]) -> None:
    """Sign-in has no session yet: the form's token must equal the one in its SameSite=Strict cookie."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not _same_origin(request) or not hmac.compare_digest(form.get("csrf", ""), cookie):
        raise ApiError(400, "csrf_failed", "the sign-in form has expired or came from another site: reload the page")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value of each field), bounded in size."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ApiError(400, "invalid_form", "expected a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, "form_too_large", f"forms are limited to {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_form", "the form could not be read") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in value or "\x00" in key:
            raise ApiError(400, "invalid_form", "form fields may not contain NUL characters")
        form.setdefault(key, value)
    return form


Form = Annotated[dict[str, str], Depends(read_form)]
Ctx = Annotated[RegistryContext, Depends(get_context)]
