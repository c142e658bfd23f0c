"""Enforcing the access-rule table (:mod:`registry.auth.rules`) before any handler runs.

An app-wide dependency looks the route's rule up, authenticates the caller and checks the scope against the
namespace in the path, answering in the shape the route's clients understand: ``/v1`` JSON errors, or the
Hub's ``X-Error-Code`` for the HF routes, where a repo the caller may not read is "not found", like on the Hub.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from registry.auth.rules import RULES, Need
from registry.auth.tokens import Principal, authenticate, extract_bearer
from registry.core.context import RegistryContext, get_context
from registry.core.errors import ApiError
from registry.hf.errors import INVALID_CREDENTIALS, REPO_NOT_FOUND, HfError, HfRoute, repo_not_found
from registry.ui.errors import UiRoute
from registry.ui.security import session_principal


def _is_hf(request: Request) -> bool:
    return isinstance(request.scope.get("route"), HfRoute)


def _authenticate(request: Request, ctx: RegistryContext) -> Principal:
    hf = _is_hf(request)
    try:
        token = extract_bearer(request)
    except ApiError as exc:
        if hf:
            raise HfError(401, "Unauthorized", INVALID_CREDENTIALS, detail=exc.message) from exc
        raise
    if token is None and isinstance(request.scope.get("route"), UiRoute):
        return session_principal(request, ctx)  # the web interface: the session cookie's token
    if token is None:
        if hf:
            raise HfError(
                401, REPO_NOT_FOUND, "authentication required: set HF_TOKEN (or pass token=) to a mir API token"
            )
        raise ApiError(
            401, "unauthorized", "authentication required: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="mir"'},
        )
    try:
        return authenticate(ctx, token)
    except ApiError as exc:
        if hf:
            raise HfError(401, "Unauthorized", INVALID_CREDENTIALS, detail=exc.message) from exc
        raise


def _deny(request: Request, principal: Principal, need: Need, namespace: str) -> Exception:
    if _is_hf(request):
        repo = f"{namespace}/{request.path_params.get('name', '')}"
        if need is Need.READ:
            # Like the Hub: a repo you may not read is indistinguishable from one that does not exist.
            return repo_not_found(repo, f"or token {principal.name!r} may not read namespace {namespace!r}")
        return HfError(403, "Forbidden", f"token {principal.name!r} may not write to namespace {namespace!r}")
    try:
        {Need.READ: principal.require_read, Need.WRITE: principal.require_write,
         Need.TRUST: principal.require_trust}[need](namespace)
    except ApiError as exc:
        return exc
    return ApiError(403, "forbidden", f"token {principal.name!r} may not do this")


def _allowed(principal: Principal, need: Need, namespace: str) -> bool:
    if need is Need.READ:
        return principal.can_read(namespace)
    if need is Need.WRITE:
        return principal.can_write(namespace)
    return principal.can_trust(namespace)


def enforce_route_rule(request: Request, ctx: Annotated[RegistryContext, Depends(get_context)]) -> None:
    """The app-wide dependency: look up the route's rule and check the caller against it (fail closed)."""
    route = request.scope.get("route")
    need = RULES.get((request.method, route.path)) if isinstance(route, APIRoute) else None
    if need is None:
        raise ApiError(500, "route_without_rule", "this route declares no access rule; refusing to serve it")
    if need in (Need.PUBLIC, Need.SIGNED_URL):
        return
    principal = _authenticate(request, ctx)
    request.state.principal = principal
    if need is Need.TOKEN:
        return
    if need is Need.ADMIN:
        principal.require_admin()
        return
    if need is Need.METRICS:
        if not principal.can_scrape_metrics:
            raise ApiError(403, "forbidden", "reading metrics needs the metrics scope (or admin)")
        return
    namespace = request.path_params.get("namespace")
    if not isinstance(namespace, str) or not _allowed(principal, need, namespace):
        raise _deny(request, principal, need, str(namespace))
