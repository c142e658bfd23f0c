"""``GET .../versions/{ref}/synthetic``: how much of a version is, or learned from, synthetic data (issue 6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session

from registry import policy, synthetic
from registry.api.refs import Name, Namespace, VersionRef, checked_repo, checked_version
from registry.auth import Context, CurrentPrincipal
from registry.lineage_graph import CanRead
from registry.models import Version
from registry.synthetic_check import CHECK, check_limits
from registry.versions import get_artifact, resolve_ref

router = APIRouter(prefix="/v1/artifacts", tags=["synthetic"])


def with_policy(session: Session, version: Version, can_read: CanRead) -> dict[str, Any]:
    """The synthetic summary (names the caller may not read hidden) plus the namespace policy's limits and
    whether this version meets them."""
    data = synthetic.summary(session, version, can_read)
    body, _ = policy.policy_for(session, version.artifact.namespace)
    result = check_limits(data, max_fraction=body.max_synthetic_fraction, max_depth=body.max_recursion_depth)
    data["limits"] = {"max_synthetic_fraction": body.max_synthetic_fraction,
                      "max_recursion_depth": body.max_recursion_depth}
    data["policy"] = [] if result is None else [{"check": CHECK, "ok": result[0], "detail": result[1]}]
    return data


@router.get("/{namespace}/{name}/versions/{ref}/synthetic")
def version_synthetic(
    namespace: Namespace, name: Name, ref: VersionRef, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Lineage-declared synthetic share (histogram by recursion depth, unknown share, human records kept),
    the fingerprint match of a dataset's records against known synthetic datasets, and the policy limits."""
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        version = resolve_ref(s, get_artifact(s, namespace, name), checked_version(ref))
        data = with_policy(s, version, principal.can_read)
        data["artifact"], data["version"] = f"{namespace}/{name}", version.version
        return data
