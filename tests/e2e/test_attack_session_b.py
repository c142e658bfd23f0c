"""A tenant with an ordinary token attacks the HF commit and LFS routes, the NUL guard and ``mir run --verify``.

- The HF commit (NDJSON) and LFS batch routes parse their bodies as JSON whatever the ``Content-Type`` says, so
  the NUL guard checks every body but blob uploads: a NUL sent as ``text/plain`` or with no type was a 500 on
  PostgreSQL and a stored NUL on SQLite. A lone surrogate (``\\ud800``) in a commit summary or an LFS oid was a
  500 on both. Each is now a clear 400 (or a per-object LFS error) that stores nothing.
- Two requests making the same branch or tag name at once: the loser gets 409, never a 500, and a tag made
  by the winner is never replaced. PostgreSQL lets the race be played exactly: a transaction of the test
  holds the new row uncommitted while the request waits on it.
- ``mir run --verify`` with a command that does not exist answers 127 with a message, not a traceback, and
  removes its private copy.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from registry.client.http import MirClient
from tests.support.gate import Namespace, safetensors_model
from tests.support.server import LiveServer
from tests.support.trees import make_tree

_OID = "ab" * 32


def _ndjson(summary: str) -> bytes:
    """A commit body adding one small inline file, with ``summary`` spelled exactly as given (raw JSON text)."""
    header = '{"key":"header","value":{"summary":"' + summary + '","description":""}}'
    return (header + '\n{"key":"file","value":{"path":"n.txt","content":"aGk=","encoding":"base64"}}\n').encode()


def _commits(client: httpx.Client) -> list[tuple[str, str]]:
    response = client.get("/api/models/atkb/m/commits/main")
    assert response.status_code == 200, response.text
    return [(c["id"], c["title"]) for c in response.json()]


def test_commit_and_lfs_bodies_are_checked_whatever_their_content_type(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(make_tree(tmp_path / "m", {"w.txt": b"one"}), "atkb/m@1")
        token = admin.create_token("atkb-writer", ["write:atkb"])["token"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as tenant:
        before = _commits(tenant)
        commit = "/api/models/atkb/m/commit/main"
        for content_type in (None, "text/plain", "application/octet-stream", "application/x-ndjson"):
            headers = {"content-type": content_type} if content_type else {}
            refused = tenant.post(commit, content=_ndjson("s\\u0000x"), headers=headers)
            assert refused.status_code == 400, (content_type, refused.text)
            assert refused.json()["error"]["code"] == "invalid_request" and "NUL" in refused.text
        surrogate = tenant.post(commit, content=_ndjson("s\\ud800x"), headers={"content-type": "application/x-ndjson"})
        assert surrogate.status_code == 400 and surrogate.headers["x-error-code"] == "BadRequest", surrogate.text
        assert "lone surrogate" in surrogate.json()["error"]

        batch = "/atkb/m.git/info/lfs/objects/batch"
        nul_oid = b'{"operation":"upload","objects":[{"oid":"a\\u0000","size":1}]}'
        assert tenant.post(batch, content=nul_oid, headers={"content-type": "text/plain"}).status_code == 400
        odd = tenant.post(batch, content=b'{"operation":"upload","objects":[{"oid":"a\\ud800","size":1},'
                                         b'{"oid":"%s","size":3}]}' % _OID.encode(),
                          headers={"content-type": "application/vnd.git-lfs+json"})
        assert odd.status_code == 200, odd.text
        bad, good = odd.json()["objects"]
        assert bad["oid"] == "" and bad["error"]["code"] == 422 and good["oid"] == _OID
        assert _commits(tenant) == before  # nothing of the refused commits was stored

        # The six characters \u0000 (an escaped backslash, then u0000) are text, under any content type.
        literal = tenant.post(commit, content=_ndjson("s\\\\u0000x"), headers={"content-type": "text/plain"})
        assert literal.status_code == 200, literal.text
        assert _commits(tenant)[0] == (literal.json()["commitOid"], "s\\u0000x")


def test_mir_run_with_a_command_that_cannot_start(server: LiveServer, tmp_path: Path) -> None:
    ns = Namespace(server, tmp_path, "atkbgate")
    src = safetensors_model(tmp_path / "llm")
    ns.push(src, "atkbgate/llm@1")
    copies = tmp_path / "copies"
    copies.mkdir(mode=0o700)
    base = ["run", "--verify", "atkbgate/llm@1", str(src), "--key", str(ns.pub), "--copy-dir", str(copies), "--"]
    missing = server.cli(*base, str(tmp_path / "no-such-command"))
    assert missing.returncode == 127, missing.stdout + missing.stderr
    assert "cannot run" in missing.stderr and "Traceback" not in missing.stderr + missing.stdout
    not_runnable = server.cli(*base, str(src / "config.json"))
    assert not_runnable.returncode == 126 and "cannot run" in not_runnable.stderr, not_runnable.stderr
    ran = server.cli(*base, "python", "-c", "import json, os; print(json.dumps(sorted(os.listdir("
                     "os.environ['MIR_VERIFIED_DIR']))))")
    assert ran.returncode == 0 and json.loads(ran.stdout.strip().splitlines()[-1]) == sorted(
        p.name for p in src.iterdir()), ran.stdout + ran.stderr
    assert list(copies.iterdir()) == []  # every run removed its copy


def test_a_branch_racing_a_tag_of_the_same_name_is_a_409(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(make_tree(tmp_path / "r1", {"w.txt": b"r1"}), "atkbrace/m@1")
        admin.push(make_tree(tmp_path / "r2", {"w.txt": b"r2"}), "atkbrace/m@2")
        token = admin.create_token("atkbrace-writer", ["write:atkbrace"])["token"]
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=120) as tenant:
        assert tenant.post("/api/models/atkbrace/m/tag/1", json={"tag": "first"}).status_code == 200
        again = tenant.post("/api/models/atkbrace/m/branch/first", json={"startingPoint": "1"})
        assert again.status_code == 409 and again.headers["x-error-code"] == "RefExists", again.text
        if not server.database_url.startswith("postgresql"):
            return  # SQLite runs one writer at a time: the race below cannot happen there
        engine = create_engine(server.database_url)
        try:
            with engine.connect() as holder, engine.connect() as watcher:
                ids = {"n": "atkbrace", "v": "1"}
                art, ver = holder.execute(text(
                    "SELECT a.id, v.id FROM artifacts a JOIN versions v ON v.artifact_id = a.id "
                    "WHERE a.namespace = :n AND a.name = 'm' AND v.version = :v"), ids).one()
                holder.execute(text(  # the winning request's tag, not committed yet
                    "INSERT INTO aliases (artifact_id, name, version_id, updated_at, updated_by, tag) "
                    "VALUES (:a, 'racer', :v, now(), 'winner', true)"), {"a": art, "v": ver})
                xid = holder.execute(text(
                    "SELECT backend_xid::text FROM pg_stat_activity WHERE pid = pg_backend_pid()")).scalar()
                answers: list[httpx.Response] = []
                loser = threading.Thread(target=lambda: answers.append(tenant.post(
                    "/api/models/atkbrace/m/branch/racer", json={"startingPoint": "2"})))
                loser.start()
                while loser.is_alive() and not watcher.execute(text(  # until the request waits on our row
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted "
                        "AND transactionid::text = :x"), {"x": xid}).scalar():
                    watcher.rollback()
                holder.commit()
                loser.join()
        finally:
            engine.dispose()
        assert answers[0].status_code == 409, answers[0].text
        refs = tenant.get("/api/models/atkbrace/m/refs").json()
        assert [t["name"] for t in refs["tags"] if t["name"] == "racer"] == ["racer"]
        assert "racer" not in [b["name"] for b in refs["branches"]]
        moved = tenant.put("/v1/artifacts/atkbrace/m/aliases/racer", json={"version": "2"})
        assert moved.status_code == 409 and moved.json()["error"]["code"] == "alias_immutable"
