"""Schema migrations at start-up: upgrade, or refuse to run on an old schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from registry.core.db import make_engine
from registry.core.settings import Settings
from registry.server.db_roles import grant_service_role, service_role


class SchemaMismatchError(RuntimeError):
    """The database schema is not the one this code expects."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(cfg: Config) -> str:
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None, "migrations/ has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, url: str) -> None:
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def ensure_schema(engine: Engine, url: str, *, auto_migrate: bool) -> str:
    """Bring the schema to head (when allowed) and return the revision; refuse clearly otherwise."""
    cfg = alembic_config(url)
    head = head_revision(cfg)
    current = current_revision(engine)
    if current == head:
        return head
    known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaMismatchError(
            f"the database is at schema revision {current}, which this version of mir does not know "
            "(was it migrated by a newer mir?); refusing to start"
        )
    if not auto_migrate:
        raise SchemaMismatchError(
            f"the database schema is at {current or 'nothing (empty database)'}, but this mir needs {head}; "
            "run `mir migrate` or start with MIR_AUTO_MIGRATE=true"
        )
    upgrade(engine, url)
    return head


def upgrade_and_grant(settings: Settings) -> tuple[str, str | None]:
    """Bring the schema to head through the owner's connection, then grant the service role its rights.

    Returns the revision and the role granted to (None when no separate service role is configured).
    """
    url = settings.resolved_migration_url
    owner = make_engine(url)
    try:
        revision = ensure_schema(owner, url, auto_migrate=True)
        role = service_role(settings)
        if role is not None:
            grant_service_role(owner, role)
    finally:
        owner.dispose()
    return revision, role


def prepare_schema(settings: Settings, service_engine: Engine) -> str:
    """What `mir serve` does first: migrate as the owner when allowed and configured, else check the schema."""
    if settings.migration_database_url and settings.auto_migrate:
        return upgrade_and_grant(settings)[0]
    return ensure_schema(service_engine, settings.resolved_database_url, auto_migrate=settings.auto_migrate)
