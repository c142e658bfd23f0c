"""Tokens: anonymous is 401, missing scope is 403, revoked and bogus tokens stop working."""

from __future__ import annotations

import httpx
import pytest

from registry.auth.models import ApiToken
from registry.client.http import MirClient, MirError
from tests.support.server import LiveServer
from tests.support.trees import model_dir


def test_anonymous_and_bad_tokens_get_401(server: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer mir_" + "A" * 43}, {"Authorization": "Bearer " + "x" * 5000}):
        response = httpx.get(f"{server.url}/v1/artifacts", headers=headers)
        assert response.status_code in (401, 431), response.text
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{server.url}/v1/health").status_code == 200


def test_scopes_per_namespace(server: LiveServer, tmp_path) -> None:
    admin = MirClient(server.url, server.admin_token)
    writer = admin.create_token("ci-acme", ["write:acme"])["token"]
    reader = admin.create_token("reader-acme", ["read:acme"])["token"]
    other = admin.create_token("other", ["write:other"])["token"]
    src = model_dir(tmp_path / "m")

    assert server.cli("push", str(src), "acme/scoped@1", token=writer).returncode == 0
    denied = server.cli("push", str(src), "acme/scoped@2", token=reader)
    assert denied.returncode == 1 and "may not write" in denied.stderr
    assert server.cli("pull", "acme/scoped@1", str(tmp_path / "r"), token=reader).returncode == 0
    assert server.cli("pull", "acme/scoped@1", str(tmp_path / "o"), token=other).returncode == 1
    with MirClient(server.url, other) as client:
        with pytest.raises(MirError) as exc:
            client.show_version("acme/scoped@1")
        assert exc.value.status == 403
        assert [a["artifact"] for a in client.list_artifacts()] == []
        with pytest.raises(MirError) as exc:
            client.create_token("escalate", ["admin"])
        assert exc.value.status == 403
    with MirClient(server.url, writer) as client:
        with pytest.raises(MirError) as exc:
            client.list_tokens()
        assert exc.value.status == 403
        assert client.set_alias("acme/scoped", "prod", "1")["moved"]
    admin.close()


def test_revoke_and_secrets_not_stored(server: LiveServer) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        created = admin.create_token("temp", ["read:acme"])
        secret = created["token"]
        assert MirClient(server.url, secret).whoami()["name"] == "temp"
        listing = admin.list_tokens()
        assert all("token" not in t and "token_hash" not in t for t in listing)
        assert server.cli("token", "revoke", str(created["id"]), "--reason", "leaked").returncode == 0
        with pytest.raises(MirError) as exc:
            MirClient(server.url, secret).whoami()
        assert exc.value.status == 401 and "revoked" in exc.value.message
    from sqlalchemy import create_engine, select
    engine = create_engine(server.database_url)
    with engine.connect() as conn:
        stored = [row.token_hash for row in conn.execute(select(ApiToken.token_hash))]
    engine.dispose()
    assert secret not in stored and server.admin_token not in stored
    log = server.log()
    assert secret not in log
    assert log.count(server.admin_token) == 1, "the first admin token is printed once at first start, never again"


def test_bad_scopes_are_refused(server: LiveServer) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        for scopes in ([], ["root"], ["write:"], ["read:a/b"]):
            with pytest.raises(MirError) as exc:
                admin.create_token("bad", scopes)
            assert exc.value.status in (400, 422)


def test_cli_token_commands_and_login(server: LiveServer) -> None:
    created = server.cli("token", "create", "cli-made", "--scope", "read:acme", check=True)
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("mir_")
    listed = server.cli("token", "list", check=True).stdout
    assert "cli-made" in listed and secret not in listed
    env_without_token = {"MIR_TOKEN": ""}
    login = server.cli("login", server.url, "--token", secret, **env_without_token)
    assert login.returncode == 0 and "cli-made" in login.stdout
    bad = server.cli("login", server.url, "--token", "mir_wrong")
    assert bad.returncode == 1 and "invalid token" in bad.stderr
