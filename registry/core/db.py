"""Database engines and sessions for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

_LOOKUP = "mir_lookup"  # execution option: statements outside any transaction (see lookup_engine)
IDLE_PING_AFTER = 1.0  # seconds a pooled PostgreSQL connection may rest before it is checked again on checkout
_RETURNED_AT = "mir.returned_at"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, idle_ping_after: float = IDLE_PING_AFTER) -> Engine:
    """Create an engine with the pragmas and pool settings each backend needs (PostgreSQL: pooled
    connections that rested ``idle_ping_after`` seconds are pinged before use, see :func:`ping_after_idle`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run while a writer commits; foreign keys are off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock at BEGIN so read-then-write transactions cannot deadlock; a look-up in
            # autocommit (RegistryContext.lookup) runs no transaction and takes no lock.
            if not conn.get_execution_options().get(_LOOKUP):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        # pysqlite's own transaction handling would issue BEGIN lazily; take over.
        @event.listens_for(engine, "connect", insert=True)
        def _sqlite_autocommit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    ping_after_idle(engine, idle_ping_after)
    return engine


def ping_after_idle(engine: Engine, idle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Check a pooled connection with a round trip on checkout only when it rested ``idle_seconds`` or more.

    ``pool_pre_ping`` pinged on every checkout: three extra round trips per push (the token look-up, the
    change, the audit pass), about 6% of a small push's CPU. Under load a connection is back in use within a
    fraction of a second and has just proven itself; one that rested may have been dropped (a database
    restart, an idle timeout): that one is pinged, and a failed ping invalidates the whole pool, as
    ``pool_pre_ping`` did, so every connection older than the failure is replaced before anyone uses it.

    The price: after a restart, a connection returned less than ``idle_seconds`` before it fails the next
    statement run on it (as one dropped mid-transaction always did); that failure too invalidates the pool, so
    the requests that fail are those that checked out such a connection before the first failure was seen (at
    most one per connection in use).
    """

    @event.listens_for(engine, "checkin")
    def _note_return(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = clock()

    @event.listens_for(engine, "checkout")
    def _ping_if_rested(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None or clock() - returned < idle_seconds:
            return  # new (just connected), or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:  # replace it and every connection made before it
            raise InvalidatePoolError(f"pooled connection failed its ping after {idle_seconds:g} s idle") from exc


def lookup_engine(engine: Engine) -> Engine:
    """``engine``'s pool, for single reads that need no transaction: no BEGIN and COMMIT round trips and, on
    SQLite, no write lock (every other SQLite transaction takes it at BEGIN). PostgreSQL runs them in
    autocommit; pysqlite already runs in autocommit (the connect hook above) and only our BEGIN is skipped,
    because changing its isolation level would hand transactions back to pysqlite."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_LOOKUP: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


_AFTER_COMMIT = "mir.after_commit"


def after_commit(session: Session, hook: Callable[[], None]) -> None:
    """Run ``hook`` (once) after ``session``'s transaction has committed and the session is closed, before
    :func:`session_scope` returns; never if it rolls back. The audit log appends queued events this way."""
    hooks: list[Callable[[], None]] = session.info.setdefault(_AFTER_COMMIT, [])
    if hook not in hooks:
        hooks.append(hook)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any exception; then the :func:`after_commit` hooks."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    for hook in session.info.pop(_AFTER_COMMIT, ()):
        hook()


ROWS_PER_STATEMENT = 500  # rows, or values of an IN list, per statement: within every backend's parameter limit
_Item = TypeVar("_Item")


def batches(items: Sequence[_Item], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[_Item]]:
    """``items`` in slices of ``size``: how many-row writes and IN lists stay a constant number of statements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_unless_present(
    session: Session, model: type[DeclarativeBase], rows: dict[str, Any] | list[dict[str, Any]]
) -> None:
    """INSERT rows, skipping any whose key exists (``ON CONFLICT DO NOTHING``, both backends), in one statement.

    Where a look-up, a savepoint, the insert and its release took four round trips per row: idempotent rows (a
    blob, its chunk list, a namespace's holdings) are written on every upload, concurrently. A row another
    transaction is inserting makes this wait for it, as a unique-key conflict would.
    """
    if rows:
        _insert_many(session, _insert_ignoring_conflicts(session, model), [rows] if isinstance(rows, dict) else rows)


def insert_new_rows(session: Session, model: type[DeclarativeBase], rows: list[dict[str, Any]], key: str) -> set[Any]:
    """:func:`insert_unless_present`, returning the ``key`` of each row it inserted: a row that did not exist
    before this transaction needs no repair or fill-in, so the caller can skip those statements for it."""
    if not rows:
        return set()
    return set(_insert_many(session, _insert_ignoring_conflicts(session, model, key), rows).scalars())


def _insert_many(session: Session, statement: Executable, rows: list[dict[str, Any]]) -> CursorResult[Any]:
    """The rows as parameters of one cached statement (SQLAlchemy sends them as one multi-row INSERT), not as
    ``.values(rows)``: a statement that carries its rows cannot be cached, so it was compiled afresh on every
    call (a fifth of a small push's CPU went to compiling its four row inserts). Pending ORM changes are
    flushed first, as ``session.execute`` would have: the rows may refer to them."""
    session.flush()
    return session.connection().execute(statement, rows)


_Model = TypeVar("_Model", bound=DeclarativeBase)


def insert_new_object(session: Session, model: type[_Model], row: dict[str, Any]) -> _Model | None:
    """One row unless a row with its key exists: the ORM object it made (in the session, every column loaded
    from RETURNING), or None when another transaction made that row first. One statement, where a savepoint,
    the insert and the savepoint's release were three round trips."""
    statement = _insert_ignoring_conflicts(session, model, returning_objects=True)
    return session.scalars(statement, [row]).one_or_none()  # the row as a parameter: one cached statement


@functools.cache
def _insert_statement(dialect: str, model: type[DeclarativeBase], key: str | None, objects: bool) -> Executable:
    """Built once per dialect, model and RETURNING: a statement built per call spent as much CPU on its cache
    key as on running, and one built with its rows (``.values(row)``) could not be cached at all."""
    statement = (postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)).on_conflict_do_nothing()
    if objects:
        return statement.returning(model)
    return statement.returning(statement.table.c[key]) if key is not None else statement


def _insert_ignoring_conflicts(
    session: Session, model: type[DeclarativeBase], key: str | None = None, *, returning_objects: bool = False
) -> Executable:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the session's dialect (each has its own Insert construct),
    returning the inserted rows' ``key`` or, with ``returning_objects``, the ORM objects."""
    return _insert_statement(session.get_bind().dialect.name, model, key, returning_objects)
