"""A version's synthetic-data report as users see it: the summary (names the caller may not read hidden), the
namespace policy's limits, and whether the version meets them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry.artifacts.models import Version
from registry.lineage.graph import CanRead
from registry.policy import documents as policy
from registry.policy.synthetic_limits import CHECK, check_limits
from registry.synthetic import provenance as synthetic


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
