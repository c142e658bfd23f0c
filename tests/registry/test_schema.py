"""The schema comes only from migrations, and migrations match the models, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from registry.core.db import make_engine
from registry.server.migrate import SchemaMismatchError, alembic_config, current_revision, ensure_schema, head_revision
from registry.server.schema import metadata


def test_migrations_match_models(db_url: str) -> None:
    engine = make_engine(db_url)
    ensure_schema(engine, db_url, auto_migrate=True)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_refuses_old_schema_without_auto_migrate(db_url: str) -> None:
    engine = make_engine(db_url)
    with pytest.raises(SchemaMismatchError, match="mir migrate"):
        ensure_schema(engine, db_url, auto_migrate=False)
    assert current_revision(engine) is None
    ensure_schema(engine, db_url, auto_migrate=True)
    assert current_revision(engine) == head_revision(alembic_config(db_url))
    engine.dispose()


def test_refuses_unknown_revision(db_url: str) -> None:
    engine = make_engine(db_url)
    ensure_schema(engine, db_url, auto_migrate=True)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    with pytest.raises(SchemaMismatchError, match="does not know"):
        ensure_schema(engine, db_url, auto_migrate=True)
    engine.dispose()


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    first = ensure_schema(engine, db_url, auto_migrate=True)
    assert ensure_schema(engine, db_url, auto_migrate=False) == first
    engine.dispose()
