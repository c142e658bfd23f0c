"""On PostgreSQL the owner migrates and the service role may append to the audit log, never rewrite it.

Roles exist only on PostgreSQL, so these tests run there alone; SQLite (no roles) is covered by every other
end-to-end test, which runs the embedded default.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from registry.client.http import MirClient
from tests.support.databases import _check_postgres, postgres_base_url
from tests.support.gate import wait_scanned
from tests.support.server import MIR, live_server
from tests.support.trees import model_dir


@dataclass(frozen=True)
class Roles:
    owner: str
    service: str
    owner_url: str
    service_url: str


@contextmanager
def owner_and_service_roles() -> Iterator[Roles]:
    """Two fresh login roles (unique names) and a schema the owner owns; all dropped afterwards."""
    base = postgres_base_url()
    _check_postgres(base)
    tag = uuid.uuid4().hex[:12]
    owner, service, schema = f"mir_owner_{tag}", f"mir_service_{tag}", f"t_{tag}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{owner}" LOGIN'))
        conn.execute(text(f'CREATE ROLE "{service}" LOGIN'))
        conn.execute(text(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"'))

    def url_for(user: str) -> str:
        url = make_url(base).set(username=user, password=None)
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    try:
        yield Roles(owner, service, url_for(owner), url_for(service))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            for role in (service, owner):
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def _mir(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MIR_")}
    return subprocess.run([*MIR, *args], env={**full_env, **env}, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


REFUSED_TO_SERVICE = [
    "UPDATE audit_entries SET actor = 'someone-else'",
    "DELETE FROM audit_entries",
    "TRUNCATE audit_entries",
    "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
    "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only",
    "DROP TRIGGER audit_entries_append_only ON audit_entries",
    "UPDATE merkle_nodes SET hash = hash",
    "DELETE FROM merkle_nodes",
    "TRUNCATE merkle_nodes",
    "ALTER TABLE merkle_nodes DISABLE TRIGGER ALL",
    "DELETE FROM signed_tree_heads",
    "TRUNCATE signed_tree_heads",
    "UPDATE audit_queue SET actor = 'someone-else'",  # queued events may be taken out, never changed
    "UPDATE audit_state SET size = size - 1",
    "UPDATE audit_state SET size = 0",
    "UPDATE audit_state SET size = size + 1",
    "DELETE FROM audit_state",
    "TRUNCATE audit_state",
    "INSERT INTO audit_state (id, size) VALUES (2, 0)",
    "ALTER TABLE audit_state DISABLE TRIGGER ALL",
    "SET session_replication_role = replica",
    "UPDATE alembic_version SET version_num = '0001'",
    "CREATE OR REPLACE FUNCTION mir_audit_state_forward() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RETURN NEW; END $$",
]


def _log_state(url: str) -> tuple[int, int, list[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        size = conn.scalar(text("SELECT size FROM audit_state WHERE id = 1"))
        count = conn.scalar(text("SELECT count(*) FROM audit_entries"))
        bodies = list(conn.scalars(text("SELECT body FROM audit_entries ORDER BY leaf_index")))
    engine.dispose()
    return size, count, bodies


def test_service_role_appends_but_cannot_rewrite_the_log(tmp_path: Path) -> None:
    """The docker-compose shape: `mir migrate` as the owner, then `mir serve` as the service role only."""
    with owner_and_service_roles() as roles:
        early = tmp_path / "early"
        early.mkdir()
        refused = r"migrating the schema failed.*run\s+`mir migrate` as the schema's owner"
        with pytest.raises(RuntimeError, match=refused), live_server(roles.service_url, early):
            pass  # the service role may not create the schema
        migrated = _mir("migrate", MIR_MIGRATION_DATABASE_URL=roles.owner_url, MIR_DATABASE_URL=roles.service_url)
        assert migrated.returncode == 0, migrated.stderr
        assert f"granted the service role '{roles.service}'" in migrated.stdout
        env = {"MIR_AUTO_MIGRATE": "false"}
        with live_server(roles.service_url, tmp_path, env=env) as server:
            assert "could rewrite the log" not in server.log()
            src = model_dir(tmp_path / "m")
            server.cli("push", str(src), "acme/roles@1", check=True)
            server.cli("alias", "set", "acme/roles@1", "prod", check=True)
            with MirClient(server.url, server.admin_token) as client:
                wait_scanned(client, "acme/roles@1")  # the scan worker, too, runs as the service role
            assert server.cli("audit", "verify").returncode == 0
            log = server.cli("audit", "log", "acme/roles", check=True).stdout
            assert "version.committed" in log and "alias.moved" in log and "scan.completed" in log
        before = _log_state(roles.owner_url)
        assert before[0] == before[1] > 0

        service = create_engine(roles.service_url)
        for statement in REFUSED_TO_SERVICE:
            with pytest.raises(DBAPIError) as refused, service.begin() as conn:
                conn.execute(text(statement))
            message = str(refused.value.orig)
            assert any(m in message for m in ("permission denied", "must be owner", "append-only")), message
        service.dispose()
        assert _log_state(roles.owner_url) == before


def test_audit_state_only_advances_with_the_log_even_for_the_owner() -> None:
    """The trigger on audit_state holds whoever connects (short of disabling it, which only the owner may)."""
    with owner_and_service_roles() as roles:
        assert _mir("migrate", MIR_DATABASE_URL=roles.owner_url).returncode == 0
        owner = create_engine(roles.owner_url)
        for statement in ("UPDATE audit_state SET size = size + 1", "UPDATE audit_state SET size = -1",
                          "UPDATE audit_state SET id = 2", "DELETE FROM audit_state", "TRUNCATE audit_state"):
            with pytest.raises(DBAPIError, match="append-only"), owner.begin() as conn:
                conn.execute(text(statement))
        owner.dispose()
        assert _log_state(roles.owner_url)[0] == 0


def test_serve_migrates_as_owner_and_grant_refuses_unsafe_roles(tmp_path: Path) -> None:
    """One box: `mir serve` with both URLs migrates as the owner, grants, then serves as the service role."""
    with owner_and_service_roles() as roles:
        env = {"MIR_MIGRATION_DATABASE_URL": roles.owner_url}
        with live_server(roles.service_url, tmp_path, env=env) as server:
            assert "could rewrite the log" not in server.log()
            server.cli("push", str(model_dir(tmp_path / "m")), "acme/one-box@1", check=True)
        engine = create_engine(roles.owner_url)
        with engine.connect() as conn:
            def can(table: str, privilege: str) -> bool:
                return bool(conn.scalar(text("SELECT has_table_privilege(:r, :t, :p)"),
                                        {"r": roles.service, "t": table, "p": privilege}))

            assert can("audit_entries", "INSERT") and can("audit_entries", "SELECT")
            assert not any(can(t, p) for t in ("audit_entries", "merkle_nodes", "signed_tree_heads")
                           for p in ("UPDATE", "DELETE", "TRUNCATE"))
            assert can("audit_state", "UPDATE") and not can("audit_state", "DELETE")
            assert can("audit_queue", "INSERT") and can("audit_queue", "DELETE") and not can("audit_queue", "UPDATE")
            assert can("versions", "UPDATE") and can("scan_jobs", "DELETE")
        engine.dispose()

        admin_user = make_url(postgres_base_url()).username or "postgres"
        for role, expected in ((roles.owner, "owns the tables"), (admin_user, "superuser"),
                               (f"nobody_{uuid.uuid4().hex[:8]}", "does not exist")):
            refused = _mir("db", "grant", "--role", role, MIR_MIGRATION_DATABASE_URL=roles.owner_url)
            assert refused.returncode == 1 and expected in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr
        again = _mir("db", "grant", "--role", roles.service, MIR_MIGRATION_DATABASE_URL=roles.owner_url)
        assert again.returncode == 0 and "granted" in again.stdout


def test_db_grant_on_sqlite_says_roles_need_postgresql(tmp_path: Path) -> None:
    refused = _mir("db", "grant", "--role", "mir_app", MIR_DATA_DIR=str(tmp_path / "data"))
    assert refused.returncode == 1 and "PostgreSQL" in refused.stderr and "Traceback" not in refused.stderr
