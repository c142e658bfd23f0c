"""The read pages: browse, artifact, version, lineage (with its graph data) and the audit log; sign in and out.

Each route's access rule is in :data:`registry.auth.rules.RULES`, checked before the handler runs, exactly as
for the API; handlers pass the principal's ``can_read`` to every domain function.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from registry.audit import log as audit
from registry.auth.sessions import end_session, start_session
from registry.auth.tokens import CurrentPrincipal, authenticate
from registry.core.errors import ApiError
from registry.core.names import SEGMENT_MAX, InvalidNameError, validate_segment
from registry.lineage.graph import MAX_QUERY_DEPTH
from registry.ui import views
from registry.ui.errors import UiRoute, login_page
from registry.ui.paths import UI_VERSION, Name, Namespace, Ref
from registry.ui.render import render
from registry.ui.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Ctx,
    Form,
    check_csrf,
    check_login_csrf,
    clear_session_cookie,
    set_session_cookie,
)

router = APIRouter(route_class=UiRoute, include_in_schema=False)

DEFAULT_DEPTH = 3


@router.get("/")
def root() -> Response:
    """A browser at the registry's root lands on the web interface."""
    return RedirectResponse("/ui", status_code=302)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the web interface, never another site."""
    if not target or not (target == "/ui" or target.startswith(("/ui/", "/ui?"))) or "\\" in target:
        return "/ui"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in target):
        return "/ui"
    return target


@router.get("/ui/login")
def login_form(request: Request, next: str = Query("/ui", max_length=2000)) -> Response:
    return login_page(request, next_url=safe_next(next))


@router.post("/ui/login")
def login(request: Request, form: Form, ctx: Ctx) -> Response:
    """Sign in with an API token: the session acts as that token, with exactly its scopes."""
    check_login_csrf(request, form)
    next_url = safe_next(form.get("next"))
    token = form.get("token", "").strip()
    try:
        principal = authenticate(ctx, token)
    except ApiError as exc:
        return login_page(request, 401, f"sign-in refused: {exc.message}", next_url)
    with ctx.transaction() as s:
        cookie, max_age = start_session(s, principal)
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, request, cookie, max_age)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
    return response


@router.post("/ui/logout")
def logout(request: Request, form: Form, ctx: Ctx, principal: CurrentPrincipal) -> Response:
    check_csrf(request, form)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with ctx.transaction() as s:
            end_session(s, cookie)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session_cookie(response, request)
    return response


@router.get("/ui")
def browse(
    request: Request,
    ctx: Ctx,
    principal: CurrentPrincipal,
    q: str = Query("", max_length=200),
    kind: str = Query("", max_length=100),
    namespace: str = Query("", max_length=SEGMENT_MAX),
    after: int = Query(0, ge=0, le=2**31 - 1),
) -> Response:
    """Namespaces and artifacts the caller may read, with a search box and a kind filter."""
    if namespace:
        try:
            validate_segment(namespace, "namespace")
        except InvalidNameError as exc:
            raise ApiError(400, "invalid_name", str(exc)) from exc
        principal.require_read(namespace)
    with ctx.transaction() as s:
        data = views.browse(s, principal, search=q.strip(), kind=kind, namespace=namespace, after=after)
    return render(request, "browse.html", data=data, q=q, kind=kind, namespace=namespace, kinds=views.KINDS)


@router.get("/ui/artifacts/{namespace}/{name}")
def artifact_page(
    request: Request, namespace: Namespace, name: Name, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    with ctx.transaction() as s:
        data = views.artifact(s, namespace, name)
    return render(request, "artifact.html", a=data)


@router.get(UI_VERSION)
def version_page(
    request: Request, namespace: Namespace, name: Name, ref: Ref, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    signer = ctx.signer
    with ctx.transaction() as s:
        data = views.version(s, principal, views.resolve(s, namespace, name, ref), signer)
    return render(request, "version.html", v=data, requested=ref)


@router.get(UI_VERSION + "/lineage")
def lineage_page(
    request: Request,
    namespace: Namespace,
    name: Name,
    ref: Ref,
    ctx: Ctx,
    principal: CurrentPrincipal,
    depth: int = Query(DEFAULT_DEPTH, ge=1, le=MAX_QUERY_DEPTH),
) -> Response:
    """The graph (drawn by static/lineage.js from the JSON route below) and the impact list, which needs no
    script: everything downstream and the aliases on it."""
    with ctx.transaction() as s:
        row = views.resolve(s, namespace, name, ref)
        label = f"{namespace}/{name}@{row.version}"
        impact = views.impact(s, principal, row)
    return render(request, "lineage.html", ref=label, depth=depth, impact=impact, max_depth=MAX_QUERY_DEPTH)


@router.get(UI_VERSION + "/lineage.json")
def lineage_data(
    namespace: Namespace,
    name: Name,
    ref: Ref,
    ctx: Ctx,
    principal: CurrentPrincipal,
    depth: int = Query(DEFAULT_DEPTH, ge=1, le=MAX_QUERY_DEPTH),
) -> Response:
    with ctx.transaction() as s:
        data = views.graph(s, principal, views.resolve(s, namespace, name, ref), depth=depth)
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.get("/ui/audit")
def audit_page(
    request: Request,
    ctx: Ctx,
    principal: CurrentPrincipal,
    artifact: str = Query("", max_length=2 * SEGMENT_MAX + 1),
    action: str = Query("", max_length=100),
    actor: str = Query("", max_length=200),
    after: int = Query(-1, ge=-1, le=2**31 - 1),
) -> Response:
    """Entries filtered by artifact, action and actor, and the signed tree head with its verification state.
    As for the API, the whole log needs an admin or ``read:*`` token; one artifact's history needs read on it."""
    namespace = name = None
    whole_log = principal.is_admin or "read:*" in principal.scopes or "write:*" in principal.scopes
    if artifact:
        parts = artifact.split("/")
        try:
            if len(parts) != 2:
                raise InvalidNameError("artifact must be namespace/name")
            namespace, name = validate_segment(parts[0], "namespace"), validate_segment(parts[1], "name")
        except InvalidNameError as exc:
            raise ApiError(400, "invalid_name", str(exc)) from exc
        principal.require_read(namespace)
    signer = ctx.signer
    entries: dict[str, Any] | None = None
    with ctx.transaction() as s:
        audit.settle(s)  # every change committed before this page (by any process) is in the log it shows
        head = views.tree_head(s, signer, ctx.settings.log_id)
        if artifact or whole_log:
            entries = views.audit_entries(s, namespace=namespace, name=name, action=action or None,
                                          actor=actor or None, after=after)
    return render(request, "audit.html", head=head, entries=entries, artifact=artifact, action=action, actor=actor,
                  whole_log=whole_log)
