"""Pooled PostgreSQL connections: pinged on checkout only after resting, and a dead one is replaced unseen.

``pool_pre_ping`` cost a round trip on every checkout (three per push); these tests pin what replaced it
against a real server whose backends are killed under the pool's feet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from registry.core.db import make_engine
from tests.support.databases import database_url, postgres_base_url


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with database_url("postgresql", tmp_path) as url:
        yield url


def _pid(engine: Engine) -> int:
    with engine.connect() as conn:
        pid = conn.scalar(text("select pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


def _kill(pid: int) -> None:
    """Terminate one server backend, as a database restart or an idle timeout would, and wait until it is gone."""
    admin = create_engine(postgres_base_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.scalar(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(200):
            if not conn.scalar(text("select count(*) from pg_stat_activity where pid = :pid"), {"pid": pid}):
                break
            conn.execute(text("select pg_sleep(0.01)"))
    admin.dispose()


def test_a_rested_connection_that_died_is_replaced_before_anyone_uses_it(pg_url: str) -> None:
    engine = make_engine(pg_url, idle_ping_after=0.0)  # every returned connection counts as rested
    first = _pid(engine)
    _kill(first)
    assert _pid(engine) != first  # the ping found it dead; the pool connected afresh and the query ran
    engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged_and_the_pool_recovers_after_one_failure(pg_url: str) -> None:
    engine = make_engine(pg_url)  # the default: a connection returned a moment ago is trusted
    first = _pid(engine)
    _kill(first)
    with pytest.raises(OperationalError):  # no ping: the statement itself met the dead connection
        _pid(engine)
    assert _pid(engine) != first  # that failure invalidated the pool: the next checkout connects afresh
    engine.dispose()
