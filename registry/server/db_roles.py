"""PostgreSQL roles: the owner migrates; the service role appends to the audit log but can never rewrite it.

The tables' owner can always disable triggers or rewrite rows, so the service must not connect as the
owner. ``grant_service_role`` gives a separate role exactly what the running registry needs: read and
write on ordinary tables, only SELECT and INSERT on the audit log, SELECT/UPDATE on ``audit_state``
(whose trigger lets the size only grow with the log), and SELECT/INSERT/DELETE on ``audit_queue`` (events
waiting for the sequencer: it may take them out, never change one). It starts from nothing each time and is
idempotent, so ``mir migrate`` re-applies it after every upgrade and new tables are covered.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from registry.core.settings import Settings

APPEND_ONLY_TABLES = ("audit_entries", "merkle_nodes", "signed_tree_heads")
STATE_TABLE = "audit_state"
QUEUE_TABLE = "audit_queue"
READ_ONLY_TABLES = ("alembic_version",)


class RoleError(RuntimeError):
    """The requested grant cannot give the separation it promises."""


def service_role(settings: Settings) -> str | None:
    """The role to grant to: explicit, else the service URL's user when migrations connect as another user."""
    if settings.database_service_role:
        return settings.database_service_role
    if settings.migration_database_url and settings.database_url:
        service_user = make_url(settings.database_url).username
        if service_user and service_user != make_url(settings.migration_database_url).username:
            return service_user
    return None


def _check_role(conn: Connection, role: str) -> None:
    row = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if row is None:
        raise RoleError(f"database role {role!r} does not exist; create it first (CREATE ROLE ... LOGIN)")
    if row.rolsuper:
        raise RoleError(f"database role {role!r} is a superuser: it could rewrite the audit log whatever is granted")
    owns = conn.scalar(
        text("SELECT pg_has_role(:r, tableowner, 'USAGE') FROM pg_tables "
             "WHERE schemaname = current_schema() AND tablename = 'audit_entries'"),
        {"r": role},
    )
    if owns is None:
        raise RoleError("the schema has no audit log yet: run the migrations first")
    if owns:
        raise RoleError(
            f"database role {role!r} owns the tables (or is a member of their owner): the service role must be "
            "a different role from the one that runs migrations"
        )


def grant_service_role(engine: Engine, role: str) -> str:
    """Grant ``role`` the service's rights on the current schema, nothing more; returns the schema name."""
    if engine.dialect.name != "postgresql":
        raise RoleError("database roles need PostgreSQL (SQLite has no roles)")
    with engine.begin() as conn:
        _check_role(conn, role)
        quote = conn.dialect.identifier_preparer.quote
        schema = conn.scalar(text("SELECT current_schema()"))
        s, r = quote(schema), quote(role)
        for statement in (
            f"GRANT USAGE ON SCHEMA {s} TO {r}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {r}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
            *(f"REVOKE UPDATE, DELETE ON {s}.{quote(t)} FROM {r}" for t in APPEND_ONLY_TABLES),
            f"REVOKE INSERT, DELETE ON {s}.{quote(STATE_TABLE)} FROM {r}",
            f"REVOKE UPDATE ON {s}.{quote(QUEUE_TABLE)} FROM {r}",
            *(f"REVOKE INSERT, UPDATE, DELETE ON {s}.{quote(t)} FROM {r}" for t in READ_ONLY_TABLES),
        ):
            conn.exec_driver_sql(statement)
        return str(schema)


def service_can_rewrite_log(engine: Engine) -> bool:
    """True when this connection's role owns the audit tables or is a superuser (PostgreSQL only)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT pg_has_role(current_user, tableowner, 'USAGE') "
            "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
            "FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'audit_entries'"
        )))
