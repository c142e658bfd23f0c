"""``GET .../versions/{ref}/synthetic``: how much of a version is, or learned from, synthetic data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from registry.api.refs import Name, Namespace, VersionRef, checked_repo, checked_version
from registry.artifacts.versions import get_artifact, resolve_ref
from registry.auth.tokens import Context, CurrentPrincipal
from registry.synthetic.report import with_policy

router = APIRouter(prefix="/v1/artifacts", tags=["synthetic"])


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
