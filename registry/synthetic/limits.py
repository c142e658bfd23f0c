"""A namespace's synthetic-data limits (its policy's ``max_synthetic_fraction`` and ``max_recursion_depth``),
checked when a version's scan finishes.

Apart from the contamination analysis so that what finishes a scan (and the API process, which imports it)
never imports the fingerprinting and detector libraries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry.artifacts.models import Version
from registry.artifacts.versions import record_version_event
from registry.policy.documents import policy_for
from registry.policy.synthetic_limits import check_limits
from registry.synthetic import provenance as synthetic


def flag_limits(session: Session, version: Version, actor: str) -> dict[str, Any] | None:
    """Audit ``synthetic.limit_exceeded`` when the version breaks its namespace's synthetic limits."""
    body, _ = policy_for(session, version.artifact.namespace)
    if body.max_synthetic_fraction is None and body.max_recursion_depth is None:
        return None
    own = version.artifact.namespace
    # Whoever may read the version reads its audit history: the reason names only what its own namespace holds
    # (registry-wide matching may find other tenants' generators; the verdict counts them, the text hides them).
    result = check_limits(synthetic.summary(session, version, lambda namespace: namespace == own),
                          max_fraction=body.max_synthetic_fraction, max_depth=body.max_recursion_depth)
    if result is None or result[0]:
        return None
    details = {"reason": result[1], "max_synthetic_fraction": body.max_synthetic_fraction,
               "max_recursion_depth": body.max_recursion_depth, "manifest_digest": version.manifest_digest}
    record_version_event(session, version, action="synthetic.limit_exceeded", actor=actor, details=details)
    return details
