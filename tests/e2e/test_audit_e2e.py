"""`mir audit verify` catches a rewritten entry and a rewritten history; `mir audit log` shows history."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from registry.client.http import MirClient
from signing.jcs import canonicalize
from signing.merkle import InMemoryNodeStore, MerkleLog
from tests.support.databases import database_url
from tests.support.server import LiveServer, live_server
from tests.support.trees import model_dir


def test_history_is_recorded_and_verifies(server: LiveServer, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "m")
    server.cli("push", str(src), "acme/audited@1", check=True)
    server.cli("alias", "set", "acme/audited@1", "prod", "--reason", "go live", check=True)
    first = server.cli("audit", "verify", check=True).stdout
    assert "audit log verified" in first and "pinned registry key" in first
    log = server.cli("audit", "log", "acme/audited", check=True).stdout
    for action in ("version.opened", "version.committed", "alias.moved"):
        assert action in log
    assert "go live" in log and "FAILED" not in log
    server.cli("push", str(src), "acme/audited@2", check=True)
    second = server.cli("audit", "verify", check=True).stdout
    assert "audit log verified" in second and "pinned" not in second


def test_readers_only_see_their_artifacts_history(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(model_dir(tmp_path / "m"), "acme/scoped-audit@1")
        reader = admin.create_token("audit-reader", ["read:acme"])["token"]
    assert server.cli("audit", "log", "acme/scoped-audit", token=reader).returncode == 0
    assert server.cli("audit", "log", "other/thing", token=reader).returncode == 1
    denied = server.cli("audit", "verify", token=reader)
    assert denied.returncode == 1 and "admin or read:*" in denied.stderr


def _rebuild_merkle(engine, bodies: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """What an attacker with write access to the SQLite file would do: recompute every hash."""
    store = InMemoryNodeStore()
    log = MerkleLog(store)
    leaves = log.append_many(bodies)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM merkle_nodes"))
        conn.execute(text("DELETE FROM signed_tree_heads"))
        for index, leaf in leaves:
            conn.execute(text("UPDATE audit_entries SET leaf_hash = :h WHERE leaf_index = :i"),
                         {"h": leaf.hex(), "i": index})
        nodes = store.get_many([(lv, ix) for lv in range(40) for ix in range(store.count(lv))])
        conn.execute(text("INSERT INTO merkle_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                     [{"l": lv, "i": ix, "h": h} for (lv, ix), h in nodes.items()])


def test_rewritten_entry_and_rewritten_history_are_detected(tmp_path: Path) -> None:
    src = model_dir(tmp_path / "m")
    # No scan worker: its audit entries would land between reading the log and rewriting it.
    no_worker = {"MIR_EMBEDDED_WORKERS": "0"}
    with database_url("sqlite", tmp_path) as url, live_server(url, tmp_path, env=no_worker) as server:
        server.cli("push", str(src), "acme/evidence@1", check=True)
        server.cli("alias", "set", "acme/evidence@1", "prod", check=True)
        assert server.cli("audit", "verify").returncode == 0
        engine = create_engine(url)
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT leaf_index, body FROM audit_entries ORDER BY leaf_index")).all()
        target = next(i for i, body in rows if '"alias.moved"' in body and '"prod"' in body)
        forged = json.loads(rows[target][1])
        forged["actor"] = "someone-else"
        forged_body = canonicalize(forged)

        # 1. Only the entry's content is changed: its leaf no longer matches.
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_entries SET body = :b WHERE leaf_index = :i"),
                         {"b": forged_body.decode(), "i": target})
        caught = server.cli("audit", "verify", "--full")
        assert caught.returncode == 1 and "does not hash to its leaf" in caught.stderr

        # 2. The attacker recomputes every hash and lets the registry sign a new head: the history no
        #    longer extends the head this client saw before.
        bodies = [forged_body if i == target else body.encode() for i, body in rows]
        _rebuild_merkle(engine, bodies)
        server.cli("push", str(model_dir(tmp_path / "m2")), "acme/evidence@2", check=True)
        rewritten = server.cli("audit", "verify")
        assert rewritten.returncode == 1 and "history was rewritten" in rewritten.stderr
        engine.dispose()


@pytest.mark.parametrize("bad", [{"old_size": 5, "new_size": 2}, {"old_size": 0, "new_size": 10**9}])
def test_bad_proof_requests(server: LiveServer, bad: dict[str, int]) -> None:
    with MirClient(server.url, server.admin_token) as client:
        response = client._http.get("/v1/audit/proof/consistency", params=bad)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_tree_size"


def test_an_event_committed_by_another_process_is_in_the_log_the_moment_it_is_read(tmp_path: Path) -> None:
    """A process commits a change and its audit event (queued with it), then is descheduled before its
    sequencer pass, as a niced scan worker is under load: a client that already sees the change (a verdict)
    must find its entry in the log and under the signed head, not a moment later."""
    no_worker = {"MIR_EMBEDDED_WORKERS": "0"}
    with (database_url("postgresql", tmp_path) as url, live_server(url, tmp_path, env=no_worker) as server,
          MirClient(server.url, server.admin_token) as admin):
        before = admin.json("GET", "/v1/audit/tree-head")["tree_size"]
        engine = create_engine(url)

        def committed_elsewhere(name: str) -> None:  # the other process's transaction: queued, no pass after it
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO audit_queue (at, actor, action, namespace, name, version, details) "
                                  "VALUES (now(), 'scan-worker w', 'scan.completed', 'acme', :n, '1', '{}')"),
                             {"n": name})

        committed_elsewhere("late")
        entries = admin.json("GET", "/v1/audit/entries", params={"artifact": "acme/late"})["items"]
        assert [e["action"] for e in entries] == ["scan.completed"]
        assert admin.json("GET", "/v1/audit/tree-head")["tree_size"] == before + 1
        committed_elsewhere("later")  # the web page reads the log the same way
        page = httpx.get(f"{server.url}/ui/audit", params={"artifact": "acme/later"}, timeout=60,
                         headers={"Authorization": f"Bearer {server.admin_token}"})
        assert page.status_code == 200 and "scan.completed" in page.text
        engine.dispose()
