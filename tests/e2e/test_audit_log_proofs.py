"""`mir audit log` proves each entry it shows; a failed `mir audit verify` keeps the last good checkpoint.

The tampering is what someone with the database owner's rights (or a broken disk) could do: on PostgreSQL
the session disables the append-only triggers first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from signing.jcs import canonicalize
from signing.merkle import leaf_hash
from tests.support.databases import BACKENDS, database_url
from tests.support.server import LiveServer, live_server
from tests.support.trees import model_dir


@contextmanager
def owner_session(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # triggers off, as only the owner may
        yield conn


def _entry(engine: Engine, action: str) -> tuple[int, str, str]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT leaf_index, body, leaf_hash FROM audit_entries WHERE action = :a "
                                "ORDER BY leaf_index DESC"), {"a": action}).first()
    assert row is not None
    return int(row[0]), str(row[1]), str(row[2])


def _forged(body: str) -> str:
    fields = json.loads(body)
    fields["actor"] = "someone-else"
    return canonicalize(fields).decode()


def _row(log: str, index: int) -> str:
    return next(line for line in log.splitlines() if re.match(rf"\W*{index}\W", line))


@pytest.fixture(params=BACKENDS)
def lone_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveServer, Engine]]:
    """A server of its own (its log gets tampered with) and a direct connection to its database."""
    with database_url(request.param, tmp_path) as url, live_server(url, tmp_path) as server:
        engine = create_engine(url)
        yield server, engine
        engine.dispose()


def test_audit_log_marks_entries_that_fail_their_proof(lone_server: tuple[LiveServer, Engine], tmp_path: Path) -> None:
    server, engine = lone_server
    server.cli("push", str(model_dir(tmp_path / "m")), "acme/proven@1", check=True)
    server.cli("alias", "set", "acme/proven@1", "prod", check=True)
    assert server.cli("audit", "verify").returncode == 0
    honest = server.cli("audit", "log", "acme/proven", check=True).stdout
    assert "FAILED" not in honest
    index, body, leaf = _entry(engine, "alias.moved")
    assert "ok" in _row(honest, index)

    # 1. The entry's content is rewritten: it no longer hashes to its leaf.
    with owner_session(engine) as conn:
        conn.execute(text("UPDATE audit_entries SET body = :b WHERE leaf_index = :i"), {"b": _forged(body), "i": index})
    shown = server.cli("audit", "log", "acme/proven")
    assert shown.returncode == 1
    assert "FAILED" in _row(shown.stdout, index) and "does not hash to its leaf" in _row(shown.stdout, index)
    assert "1 of" in shown.stderr and "version.committed" in shown.stdout

    # 2. Its leaf hash is rewritten to match: the signed root does not include that leaf.
    with owner_session(engine) as conn:
        conn.execute(text("UPDATE audit_entries SET leaf_hash = :h WHERE leaf_index = :i"),
                     {"h": leaf_hash(_forged(body).encode()).hex(), "i": index})
    shown = server.cli("audit", "log", "acme/proven")
    assert shown.returncode == 1 and "not included in the signed tree head" in _row(shown.stdout, index)

    # Restored, every entry proves again.
    with owner_session(engine) as conn:
        conn.execute(text("UPDATE audit_entries SET body = :b, leaf_hash = :h WHERE leaf_index = :i"),
                     {"b": body, "h": leaf, "i": index})
    assert "FAILED" not in server.cli("audit", "log", "acme/proven", check=True).stdout


def test_failed_verify_keeps_the_last_good_checkpoint(
    lone_server: tuple[LiveServer, Engine], tmp_path: Path
) -> None:
    server, engine = lone_server
    server.cli("push", str(model_dir(tmp_path / "m")), "acme/kept@1", check=True)
    assert server.cli("audit", "verify").returncode == 0
    (checkpoint,) = (server.config_dir / "audit").glob("*.json")
    good = checkpoint.read_bytes()
    good_size = json.loads(good)["tree_head"]["tree_size"]

    server.cli("alias", "set", "acme/kept@1", "prod", check=True)
    index, body, _ = _entry(engine, "alias.moved")
    assert index >= good_size  # appended after the checkpoint: the next run checks it
    with owner_session(engine) as conn:
        conn.execute(text("UPDATE audit_entries SET body = :b WHERE leaf_index = :i"), {"b": _forged(body), "i": index})
    failed = server.cli("audit", "verify")
    assert failed.returncode == 1 and "does not hash to its leaf" in failed.stderr
    assert checkpoint.read_bytes() == good

    with owner_session(engine) as conn:
        conn.execute(text("UPDATE audit_entries SET body = :b WHERE leaf_index = :i"), {"b": body, "i": index})
    resumed = server.cli("audit", "verify")
    assert resumed.returncode == 0, resumed.stderr
    total = json.loads(checkpoint.read_bytes())["tree_head"]["tree_size"]
    assert f"{total - good_size} checked this run" in resumed.stdout and total > good_size
