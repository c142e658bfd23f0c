"""Test databases: a fresh SQLite file or a fresh PostgreSQL schema per use.

PostgreSQL isolation uses one schema per test (or per module), selected with
``search_path`` in the connection URL, so tests never see each other's rows and
need no superuser rights beyond creating schemas in database ``test``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def postgres_base_url() -> str:
    return os.environ.get("MIR_TEST_POSTGRES_URL", DEFAULT_PG)


def _check_postgres(url: str) -> None:
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        if os.environ.get("MIR_TEST_SKIP_POSTGRES") == "1":
            pytest.skip("PostgreSQL unavailable and MIR_TEST_SKIP_POSTGRES=1")
        pytest.fail(
            f"PostgreSQL is not reachable at {url} ({exc.__class__.__name__}); "
            "run `make test` (it starts it) or set MIR_TEST_POSTGRES_URL"
        )


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database of the given backend, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'mir.db'}"
        return
    base = postgres_base_url()
    _check_postgres(base)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
