"""Pointing an alias at a version: the one service the ``/v1`` alias routes and the HF branch and tag routes call.

The move itself (committed targets only, reserved and taken names, tags that never move, the alias event and
the audit entry) is :func:`registry.artifacts.versions.move_alias`; this adds the rule that needs lineage: an
alias may not be pointed at a quarantined version unless an admin overrides it, and the override is audited.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.artifacts.models import AliasEvent, Artifact, Version
from registry.artifacts.versions import move_alias
from registry.audit import log as audit
from registry.auth.tokens import Principal
from registry.core.errors import ApiError
from registry.lineage import quarantine


def point_alias(
    session: Session,
    artifact: Artifact,
    alias: str,
    target: Version,
    *,
    principal: Principal,
    reason: str | None = None,
    override_quarantine: bool = False,
    tag: bool = False,
) -> AliasEvent | None:
    """Point ``alias`` (a tag when ``tag``) at the committed ``target``, refusing a quarantined one."""
    held = quarantine.quarantine_status(session, target, can_read=principal.can_read)
    if held is not None and held["status"] == "quarantined":
        label = f"{artifact.namespace}/{artifact.name}@{target.version}"
        if not override_quarantine:
            raise ApiError(403, "version_quarantined",
                           f"{quarantine.describe_status(held, label)}; an admin may override with "
                           "override_quarantine=true, which is audited")
        principal.require_admin()
        audit.record(session, action="version.quarantine_override", actor=principal.name,
                     namespace=artifact.namespace, name=artifact.name, version=target.version,
                     details={"operation": "alias", "alias": alias,
                              "quarantine_reason": held["sources"][0].get("reason")})
    return move_alias(session, artifact, alias, target, actor=principal.name, reason=reason, tag=tag)
