"""Admin actions of the web interface, each behind a confirmation step: quarantine a version (with a reason),
lift a quarantine, move an alias.

Each calls the domain function its API route calls (:mod:`registry.lineage.quarantine`,
:func:`registry.lineage.aliases.point_alias`), so it is checked and audited exactly like its API equivalent,
with the signed-in token as the actor. A form sent with the session cookie must carry its CSRF token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from registry.artifacts.models import Version
from registry.artifacts.versions import COMMITTED, aliases_of, find_exact_version, get_artifact
from registry.auth.tokens import CurrentPrincipal
from registry.core.errors import ApiError
from registry.core.names import InvalidNameError, validate_alias
from registry.lineage import quarantine
from registry.lineage.aliases import point_alias
from registry.ui import views
from registry.ui.errors import UiRoute
from registry.ui.paths import UI_VERSION, Name, Namespace, Ref
from registry.ui.render import render, version_url
from registry.ui.security import Ctx, Form, check_csrf

router = APIRouter(route_class=UiRoute, include_in_schema=False)
MAX_REASON = 2000


def _exact(s: Session, namespace: str, name: str, ref: str) -> Version:
    """Actions name a committed version exactly, never through an alias (as on the API)."""
    row = find_exact_version(s, get_artifact(s, namespace, name), ref)
    if row is None or row.state != COMMITTED:
        raise ApiError(404, "version_not_found", f"{namespace}/{name}@{ref} is not a committed version "
                       "(aliases move: name the exact version)")
    return row


def _reason(form: dict[str, str]) -> str:
    reason = form.get("reason", "").strip()
    if not reason:
        raise ApiError(400, "reason_required", "a reason is required")
    if len(reason) > MAX_REASON:
        raise ApiError(400, "reason_too_long", f"a reason has at most {MAX_REASON} characters")
    return reason


@router.get(UI_VERSION + "/quarantine")
def confirm_quarantine(
    request: Request, namespace: Namespace, name: Name, ref: Ref, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    """What quarantining would do (every descendant, every alias on them), and the form that does it."""
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        impact = views.impact(s, principal, row)
        status = quarantine.quarantine_status(s, row, can_read=principal.can_read)
    return render(request, "confirm_quarantine.html", ref=f"{namespace}/{name}@{row.version}", impact=impact,
                  status=status, lift=False)


@router.post(UI_VERSION + "/quarantine")
def do_quarantine(
    request: Request, namespace: Namespace, name: Name, ref: Ref, form: Form, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    check_csrf(request, form)
    reason = _reason(form)
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        quarantine.quarantine_version(s, row, reason=reason, actor=principal.name)
        label = f"{namespace}/{name}@{row.version}"
    return RedirectResponse(version_url(label), status_code=303)


@router.get(UI_VERSION + "/quarantine/lift")
def confirm_lift(
    request: Request, namespace: Namespace, name: Name, ref: Ref, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        impact = views.impact(s, principal, row)
        status = quarantine.quarantine_status(s, row, can_read=principal.can_read)
    return render(request, "confirm_quarantine.html", ref=f"{namespace}/{name}@{row.version}", impact=impact,
                  status=status, lift=True)


@router.post(UI_VERSION + "/quarantine/lift")
def do_lift(
    request: Request, namespace: Namespace, name: Name, ref: Ref, form: Form, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    check_csrf(request, form)
    reason = _reason(form)
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        quarantine.lift_quarantine(s, row, reason=reason, actor=principal.name)
        label = f"{namespace}/{name}@{row.version}"
    return RedirectResponse(version_url(label), status_code=303)


@router.get(UI_VERSION + "/alias")
def alias_form(
    request: Request, namespace: Namespace, name: Name, ref: Ref, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        current = aliases_of(s, row.artifact)
    return render(request, "alias.html", ref=f"{namespace}/{name}@{row.version}", version=row.version,
                  current=current, confirm=None, alias="", reason="")


@router.post(UI_VERSION + "/alias")
def move_alias(
    request: Request, namespace: Namespace, name: Name, ref: Ref, form: Form, ctx: Ctx, principal: CurrentPrincipal
) -> Response:
    """First post: the confirmation (where the alias points now, where it will point). Second: the move."""
    check_csrf(request, form)
    try:
        alias = validate_alias(form.get("alias", "").strip())
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc
    reason = form.get("reason", "").strip()[:MAX_REASON] or None
    label = f"{namespace}/{name}"
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        current = aliases_of(s, row.artifact)
        if form.get("confirm") != "yes":
            return render(request, "alias.html", ref=f"{label}@{row.version}", version=row.version, current=current,
                          confirm=current.get(alias, ""), alias=alias, reason=reason or "")
        point_alias(s, row.artifact, alias, row, principal=principal, reason=reason)
    return RedirectResponse(f"/ui/artifacts/{namespace}/{name}", status_code=303)
