"""Pooled PostgreSQL connections: pinged on checkout only after resting, and a dead one is replaced unseen.

``pool_pre_ping`` cost a round trip on every checkout (three per push); these tests pin what replaced it
against a real server whose backends are killed under the pool's feet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from registry.core.db import make_engine, ping_after_idle
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


def test_a_failed_ping_replaces_every_older_connection_not_only_the_pinged_one(pg_url: str) -> None:
    """The database restarts while the pool holds a rested connection and one used a moment ago. The first
    checkout pings the rested one and finds it dead: that must retire the recent one too (as pool_pre_ping
    did), or the next request is handed a dead connection nobody pings."""
    now = [0.0]
    engine = create_engine(pg_url, pool_size=10, max_overflow=20)
    ping_after_idle(engine, 5.0, clock=lambda: now[0])
    rested, recent = engine.connect(), engine.connect()
    pids = [_backend(rested), _backend(recent)]
    rested.close()  # returned at t=0
    now[0] = 100.0
    recent.close()  # returned at t=100
    now[0] = 104.0  # one rested 104 s, the other 4 s
    for pid in pids:
        _kill(pid)  # the database restarts
    with engine.connect() as first:  # the pool hands out the oldest: pinged, found dead, the pool invalidated
        assert first.scalar(text("select 1")) == 1
        with engine.connect() as second:  # not the recent dead one: a fresh connection
            assert _backend(second) not in pids
    engine.dispose()


def _backend(conn: Connection) -> int:
    pid = conn.scalar(text("select pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid
