"""Fixtures for service-level tests (both databases, through the ``db_url`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.core.blobstore import LocalBlobStore
from registry.core.db import make_engine, make_session_factory
from registry.server.migrate import ensure_schema
from tests.support.service import Reg


@pytest.fixture
def reg(db_url: str, tmp_path: Path) -> Iterator[Reg]:
    """A migrated database (SQLite and PostgreSQL) with a local blob store."""
    engine = make_engine(db_url)
    ensure_schema(engine, db_url, auto_migrate=True)
    yield Reg(engine, make_session_factory(engine), LocalBlobStore.from_url(f"file://{tmp_path / 'blobs'}"))
    engine.dispose()
