"""Namespace policy documents: parse (strictly), store, look up, digest.

A namespace's policy is JSON. Without one, the built-in default fails closed:
at least one trusted signature, weights only as safetensors, scans clean, no
quarantined or affected lineage. Evaluating a policy is the gate's job
(:mod:`registry.gate.decisions`); this module only keeps the documents.
"""

from __future__ import annotations

from hashlib import sha256

from pydantic import ValidationError
from sqlalchemy.orm import Session

from registry.audit import log as audit
from registry.core.errors import ApiError
from registry.core.tables import utcnow
from registry.policy.engine import DEFAULT_POLICY, SCAN_VERDICTS, PolicyBody
from registry.policy.models import Policy
from scanners.globals_policy import trust_refusal
from signing.jcs import canonicalize


def parse_policy(raw: object) -> PolicyBody:
    try:
        body = PolicyBody.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10])
        raise ApiError(400, "invalid_policy", f"invalid policy: {problems}") from exc
    if body.required_signers.keys and body.required_signers.threshold > len(body.required_signers.keys):
        raise ApiError(400, "invalid_policy", "threshold is larger than the number of required signer keys")
    bad = [v for v in body.required_scan_verdicts if v not in SCAN_VERDICTS]
    if bad:
        raise ApiError(400, "invalid_policy", f"unknown scan verdicts: {', '.join(bad)}")
    refused = [f"{name!r} ({why})" for name in body.trusted_globals if (why := trust_refusal(name)) is not None]
    if refused:
        raise ApiError(400, "invalid_policy", f"trusted_globals cannot hold {'; '.join(refused[:10])}")
    return body


def policy_for(session: Session, namespace: str) -> tuple[PolicyBody, bool]:
    """The namespace's policy (and whether it is the built-in default)."""
    row = session.get(Policy, namespace)
    if row is None:
        return DEFAULT_POLICY, True
    return parse_policy(row.body), False


def set_policy(session: Session, namespace: str, body: PolicyBody, actor: str) -> Policy:
    row = session.get(Policy, namespace)
    data = body.model_dump()
    if row is None:
        row = Policy(namespace=namespace, body=data, updated_by=actor)
        session.add(row)
    else:
        row.body, row.updated_at, row.updated_by = data, utcnow(), actor
    audit.record(session, action="policy.set", actor=actor, namespace=namespace,
                 details={"policy": data, "policy_digest": policy_digest(body)})
    return row


def policy_digest(body: PolicyBody) -> str:
    return "sha256:" + sha256(canonicalize(body.model_dump())).hexdigest()
