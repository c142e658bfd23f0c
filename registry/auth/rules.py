"""Who may call which route: one table for every route of the app.

Each route (method and path template) names what it needs. The server checks the caller against it before any
handler runs (:mod:`registry.server.access`); a route with no rule is refused at start-up, so a new route cannot
ship without one. ``TOKEN`` routes take their namespace from the body or show a filtered view: their handlers
check the named resource with the same :class:`registry.auth.tokens.Principal`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from fastapi.routing import APIRoute


class Need(StrEnum):
    """What a caller must hold to reach a route."""

    PUBLIC = "public"  # nothing: health, the public key everyone pins
    SIGNED_URL = "signed_url"  # no token: the URL carries an HMAC permission that the handler checks
    TOKEN = "token"  # noqa: S105 - a rule name, not a secret. Any valid token; the handler checks the resource it names and filters what it shows
    READ = "read"  # read:{namespace in the path}
    WRITE = "write"  # write:{namespace in the path}
    TRUST = "trust"  # trust:{namespace in the path}: keys and policy
    ADMIN = "admin"
    METRICS = "metrics"  # the metrics scope (or admin): Prometheus reads counters, nothing of any namespace


_V = "/v1/artifacts/{namespace}/{name}/versions"
_HF_REPO = "/api/{plural}/{namespace}/{name}"
_UI_V = "/ui/artifacts/{namespace}/{name}/versions/{ref}"

RULES: dict[tuple[str, str], Need] = {
    ("GET", "/v1/health"): Need.PUBLIC,
    ("GET", "/v1/ready"): Need.PUBLIC,
    ("GET", "/metrics"): Need.METRICS,
    ("GET", "/v1/whoami"): Need.TOKEN,
    ("GET", "/v1/registry/key"): Need.TOKEN,
    # tokens
    ("POST", "/v1/tokens"): Need.ADMIN,
    ("GET", "/v1/tokens"): Need.ADMIN,
    ("POST", "/v1/tokens/{token_id}/revoke"): Need.TOKEN,  # admins any token, everyone their own
    # artifacts and versions
    ("GET", "/v1/artifacts"): Need.TOKEN,  # lists only readable namespaces
    ("GET", "/v1/artifacts/{namespace}/{name}"): Need.READ,
    ("POST", _V): Need.WRITE,
    ("POST", _V + "/{version}/commit"): Need.WRITE,
    ("DELETE", _V + "/{ref}"): Need.WRITE,
    ("GET", _V + "/{ref}"): Need.READ,
    ("GET", _V + "/{ref}/scans"): Need.READ,
    ("POST", _V + "/{ref}/rescan"): Need.ADMIN,
    ("PUT", _V + "/{version}/blobs/{digest}"): Need.WRITE,
    ("POST", "/v1/namespaces/{namespace}/blobs"): Need.WRITE,  # bytes named by their digest, before the open
    ("GET", _V + "/{ref}/files/{path:path}"): Need.READ,
    ("GET", _V + "/{ref}/synthetic"): Need.READ,
    ("GET", _V + "/{ref}/bundle"): Need.READ,
    # aliases
    ("GET", "/v1/artifacts/{namespace}/{name}/aliases"): Need.READ,
    ("PUT", "/v1/artifacts/{namespace}/{name}/aliases/{alias}"): Need.WRITE,
    ("DELETE", "/v1/artifacts/{namespace}/{name}/aliases/{alias}"): Need.WRITE,
    ("GET", "/v1/artifacts/{namespace}/{name}/aliases/{alias}/history"): Need.READ,
    # trust: keys, signatures, policy, the deploy gate
    ("POST", "/v1/namespaces/{namespace}/keys"): Need.TRUST,
    ("GET", "/v1/namespaces/{namespace}/keys"): Need.READ,
    ("POST", "/v1/namespaces/{namespace}/keys/{key_id}/revoke"): Need.TRUST,
    ("GET", "/v1/namespaces/{namespace}/policy"): Need.READ,
    ("PUT", "/v1/namespaces/{namespace}/policy"): Need.TRUST,
    ("GET", _V + "/{ref}/signatures"): Need.READ,
    ("POST", _V + "/{ref}/signatures"): Need.WRITE,
    ("POST", "/v1/verify"): Need.TOKEN,  # reads the namespace named in the body
    # lineage and quarantine
    ("GET", _V + "/{ref}/lineage"): Need.READ,
    ("POST", _V + "/{ref}/lineage"): Need.WRITE,
    ("GET", _V + "/{ref}/lineage/path"): Need.READ,
    ("GET", _V + "/{ref}/impact"): Need.READ,
    ("GET", _V + "/{ref}/lineage/export"): Need.READ,
    ("GET", _V + "/{ref}/quarantine"): Need.READ,
    ("POST", _V + "/{ref}/quarantine"): Need.ADMIN,
    ("POST", _V + "/{ref}/quarantine/lift"): Need.ADMIN,
    ("GET", "/v1/quarantines"): Need.ADMIN,
    # audit log
    ("GET", "/v1/audit/entries"): Need.TOKEN,  # one artifact needs read on it; the whole log needs read:*
    ("GET", "/v1/audit/tree-head"): Need.TOKEN,
    ("GET", "/v1/audit/proof/inclusion"): Need.TOKEN,
    ("GET", "/v1/audit/proof/consistency"): Need.TOKEN,
    # Hugging Face Hub protocol: read side
    ("GET", "/{prefix:mir_hf_type}/{namespace}/{name}/resolve/{rest:path}"): Need.READ,
    ("HEAD", "/{prefix:mir_hf_type}/{namespace}/{name}/resolve/{rest:path}"): Need.READ,
    ("GET", "/{namespace}/{name}/resolve/{rest:path}"): Need.READ,
    ("HEAD", "/{namespace}/{name}/resolve/{rest:path}"): Need.READ,
    ("GET", _HF_REPO): Need.READ,
    ("GET", _HF_REPO + "/revision/{rest:path}"): Need.READ,
    ("GET", _HF_REPO + "/tree/{rest:path}"): Need.READ,
    ("POST", _HF_REPO + "/paths-info/{rest:path}"): Need.READ,
    ("GET", _HF_REPO + "/refs"): Need.READ,
    ("GET", _HF_REPO + "/commits/{rest:path}"): Need.READ,
    ("GET", "/api/models"): Need.TOKEN,  # lists only readable namespaces
    ("GET", "/api/datasets"): Need.TOKEN,  # lists only readable namespaces
    ("GET", "/api/whoami-v2"): Need.TOKEN,
    ("GET", "/api/agent-harnesses"): Need.PUBLIC,
    # Hugging Face Hub protocol: write side
    ("POST", "/api/repos/create"): Need.TOKEN,  # the namespace is in the body; the handler needs write on it
    ("POST", "/api/validate-yaml"): Need.TOKEN,
    ("POST", _HF_REPO + "/preupload/{rest:path}"): Need.WRITE,
    ("GET", _HF_REPO + "/xet-write-token/{rest:path}"): Need.WRITE,
    ("GET", "/api/xet-is-not-supported-here/set-HF_HUB_DISABLE_XET=1-to-upload-through-git-lfs"): Need.PUBLIC,
    ("POST", "/{prefix:mir_hf_type}/{namespace}/{name}.git/info/lfs/objects/batch"): Need.WRITE,
    ("POST", "/{namespace}/{name}.git/info/lfs/objects/batch"): Need.WRITE,
    ("PUT", "/api/mir-lfs/{oid}"): Need.SIGNED_URL,
    ("POST", "/api/mir-lfs/{oid}/verify"): Need.TOKEN,  # the namespace is a query parameter; needs write on it
    ("POST", _HF_REPO + "/commit/{rest:path}"): Need.WRITE,
    ("POST", _HF_REPO + "/branch/{rest:path}"): Need.WRITE,
    ("DELETE", _HF_REPO + "/branch/{rest:path}"): Need.WRITE,
    ("POST", _HF_REPO + "/tag/{rest:path}"): Need.WRITE,
    ("DELETE", _HF_REPO + "/tag/{rest:path}"): Need.WRITE,
    # the web interface (registry.ui): a session cookie or a bearer token; the same needs as the API's routes
    ("GET", "/"): Need.PUBLIC,  # redirects to /ui
    ("GET", "/docs"): Need.PUBLIC,
    ("GET", "/ui/static/{path:path}"): Need.PUBLIC,
    ("GET", "/ui/login"): Need.PUBLIC,
    ("POST", "/ui/login"): Need.PUBLIC,  # checks the token it is given, and a login CSRF token
    ("POST", "/ui/logout"): Need.TOKEN,
    ("GET", "/ui"): Need.TOKEN,  # lists only readable namespaces
    ("GET", "/ui/audit"): Need.TOKEN,  # one artifact needs read on it; the whole log needs read:*
    ("GET", "/ui/artifacts/{namespace}/{name}"): Need.READ,
    ("GET", _UI_V): Need.READ,
    ("GET", _UI_V + "/lineage"): Need.READ,
    ("GET", _UI_V + "/lineage.json"): Need.READ,
    ("GET", _UI_V + "/quarantine"): Need.ADMIN,
    ("POST", _UI_V + "/quarantine"): Need.ADMIN,
    ("GET", _UI_V + "/quarantine/lift"): Need.ADMIN,
    ("POST", _UI_V + "/quarantine/lift"): Need.ADMIN,
    ("GET", _UI_V + "/alias"): Need.WRITE,
    ("POST", _UI_V + "/alias"): Need.WRITE,
}


class MissingRouteRule(RuntimeError):
    """A route was added without declaring who may call it."""


def rule_keys(route: APIRoute) -> list[tuple[str, str]]:
    return [(method, route.path) for method in sorted(route.methods or ())]


def check_rules_cover(routes: Iterable[APIRoute]) -> None:
    """Refuse to build an app where some route has no rule (or a rule names no route)."""
    keys = {key for route in routes for key in rule_keys(route)}
    missing = sorted(keys - RULES.keys())
    if missing:
        raise MissingRouteRule(f"routes without an access rule in registry/auth/rules.py: {missing}")
    stale = sorted(RULES.keys() - keys)
    if stale:
        raise MissingRouteRule(f"access rules for routes that do not exist: {stale}")
