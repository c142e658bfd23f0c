"""Every route of the app, called by every kind of principal, answers as its declared access rule says.

The rule table (``registry.auth.rules.RULES``) is the one place where a route
says what it needs. This walks all of it against the real server, so a route
whose handler forgot a check, or a new route without a rule, fails here.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from registry.auth.rules import RULES, MissingRouteRule, Need, check_rules_cover
from registry.client.http import MirClient, MirError
from registry.server.app import api_routes
from tests.support.server import LiveServer
from tests.support.trees import make_tree

OWN, OTHER = "own", "other"
FILE = b"matrix file\n"
PRINCIPALS = ("anonymous", "revoked", "metrics", "read:other", "read:own", "write:own", "trust:own", "admin")
ALLOWED: dict[Need, set[str]] = {
    Need.PUBLIC: set(PRINCIPALS),
    Need.TOKEN: {"metrics", "read:other", "read:own", "write:own", "trust:own", "admin"},
    Need.READ: {"read:own", "write:own", "trust:own", "admin"},
    Need.WRITE: {"write:own", "admin"},
    Need.TRUST: {"trust:own", "admin"},
    Need.ADMIN: {"admin"},
    Need.METRICS: {"metrics", "admin"},
}

# TOKEN routes whose handler decides by the resource: who may, for the request this test makes.
HANDLER_DECIDES: dict[tuple[str, str], set[str]] = {
    ("GET", "/v1/audit/entries"): {"admin"},  # the whole log; one artifact's history needs read on it
    ("POST", "/v1/tokens/{token_id}/revoke"): {"admin"},  # someone else's token
}


def _concrete(path: str, spare_token_id: int) -> str:
    """A real URL for a route template: own namespace, an existing model (or dataset for prefixed HF routes)."""
    values = {
        "namespace": OWN, "name": "m", "version": "1", "ref": "1", "alias": "prod", "key_id": "ab" * 8,
        "token_id": str(spare_token_id), "digest": "sha256:" + hashlib.sha256(FILE).hexdigest(),
        "oid": hashlib.sha256(FILE).hexdigest(), "plural": "models", "prefix": "datasets",
    }
    if path.startswith("/{prefix"):
        values["name"] = "d"
    revision_only = ("/tree/", "/revision/", "/paths-info/", "/preupload/", "/commit/")
    values["rest"] = "main" if any(part in path for part in revision_only) else "main/a.txt"
    values["path"] = "a.txt"
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


@pytest.fixture(scope="module")
def principals(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    tree = make_tree(tmp_path_factory.mktemp("matrix") / "m", {"a.txt": FILE})
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(tree, f"{OWN}/m@1")
        admin.push(tree, f"{OWN}/d@1", kind="dataset")
        tokens = {scope: admin.create_token(f"matrix-{scope}", [scope])["token"]
                  for scope in ("metrics", "read:other", "read:own", "write:own", "trust:own")}
        revoked = admin.create_token("matrix-revoked", ["admin"])
        admin.revoke_token(revoked["id"], "matrix")
        spare = admin.create_token("matrix-spare", [f"read:{OTHER}"])
    headers = {scope: {"Authorization": f"Bearer {t}"} for scope, t in tokens.items()}
    headers["admin"] = {"Authorization": f"Bearer {server.admin_token}"}
    headers["revoked"] = {"Authorization": f"Bearer {revoked['token']}"}
    headers["anonymous"] = {}
    headers["_spare"] = {"id": str(spare["id"])}
    return headers


def _call(server: LiveServer, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
    body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
    return httpx.request(method, server.url + url, headers=headers, timeout=60, **body)


def _denied(response: httpx.Response, is_hf: bool) -> bool:
    if response.status_code in (401, 403):
        return True
    return is_hf and response.status_code == 404 and response.headers.get("x-error-code") == "RepoNotFound"


def test_every_route_answers_every_principal_as_its_rule_says(
    server: LiveServer, principals: dict[str, dict[str, str]]
) -> None:
    spare = int(principals["_spare"]["id"])
    unexpected: list[str] = []
    checked = 0
    for (method, path), need in sorted(RULES.items()):
        url = _concrete(path, spare)
        is_hf = not path.startswith("/v1/")
        for who in PRINCIPALS:
            response = _call(server, method, url, principals[who])
            checked += 1
            if response.status_code >= 500:
                unexpected.append(f"{who} {method} {url}: {response.status_code} {response.text[:200]}")
                continue
            if need is Need.SIGNED_URL:
                ok = response.status_code == 403  # no signature in the URL: refused whoever calls
            elif who in HANDLER_DECIDES.get((method, path), ALLOWED[need]):
                ok = not _denied(response, is_hf)
            elif who in ("anonymous", "revoked"):
                ok = response.status_code == 401
            else:
                ok = _denied(response, is_hf)
            if not ok:
                unexpected.append(f"{who} {method} {url} ({need}): {response.status_code} {response.text[:200]}")
    print(f"route matrix: {len(RULES)} routes x {len(PRINCIPALS)} principals = {checked} calls, "
          f"{len(unexpected)} unexpected")
    assert not unexpected, "\n".join(unexpected)


def test_the_rule_table_covers_exactly_the_apps_routes() -> None:
    served = {(m, r.path) for r in api_routes() for m in r.methods}
    assert served == set(RULES)


def test_a_route_without_a_rule_stops_the_app_from_starting() -> None:
    router = APIRouter()

    @router.get("/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(MissingRouteRule, match="/v1/forgotten"):
        check_rules_cover([*api_routes(), *router.routes])  # type: ignore[list-item]


def test_writers_cannot_decide_whom_the_namespace_trusts(server: LiveServer, tmp_path: Path) -> None:
    """A write token adding its own key would make its unsigned-by-anyone-else pushes pass the signer check."""
    from signing.keys import generate_private_key, public_key_to_pem

    pem = public_key_to_pem(generate_private_key("ecdsa-p256").public_key()).decode()
    with MirClient(server.url, server.admin_token) as admin:
        writer = admin.create_token("trust-writer", ["write:trusted"])["token"]
        officer = admin.create_token("trust-officer", ["trust:trusted"])["token"]
    auth = {"Authorization": f"Bearer {writer}"}
    added = httpx.post(f"{server.url}/v1/namespaces/trusted/keys", headers=auth, json={"public_key": pem})
    assert added.status_code == 403 and "trust:trusted" in added.json()["error"]["message"]
    policy = httpx.put(f"{server.url}/v1/namespaces/trusted/policy", headers=auth, json={})
    assert policy.status_code == 403
    with MirClient(server.url, officer) as client:
        key = client.register_key("trusted", pem, "officer-key")
        assert client.list_keys("trusted")[0]["key_id"] == key["key_id"]
        client.revoke_key("trusted", key["key_id"], "rotated")
        with pytest.raises(MirError) as refused:  # trust does not imply write
            client.push(make_tree(tmp_path / "t", {"a.txt": b"x"}), "trusted/m@1")
    assert refused.value.status == 403
    entries = httpx.get(f"{server.url}/v1/audit/entries", params={"action": "key.added"},
                        headers={"Authorization": f"Bearer {server.admin_token}"}).json()["items"]
    assert any(e["actor"] == "trust-officer" for e in entries)
