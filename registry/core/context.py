"""The running registry's shared objects: settings, database, blob store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from threading import Lock

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry.core.blob_stores import BlobStore, open_blob_store
from registry.core.db import lookup_engine, make_engine, make_session_factory, session_scope
from registry.core.registry_key import RegistrySigner, load_or_create
from registry.core.settings import Settings


@dataclass
class RegistryContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    _signer: RegistrySigner | None = field(default=None, repr=False)
    _signer_lock: Lock = field(default_factory=Lock, repr=False)

    @classmethod
    def create(cls, settings: Settings) -> RegistryContext:
        engine = make_engine(settings.resolved_database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            blobs=open_blob_store(settings),
        )

    @property
    def signer(self) -> RegistrySigner:
        """The registry's signing key, loaded (or created on first start) once per process."""
        with self._signer_lock:
            if self._signer is None:
                with self.transaction() as session:
                    self._signer = load_or_create(session, self.settings)
            return self._signer

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with session_scope(self.sessions) as session:
            yield session

    @contextmanager
    def lookup(self) -> Iterator[Session]:
        """A session for one read that needs no transaction (a token look-up on every request): its statement
        runs in autocommit, without the BEGIN and COMMIT round trips, and on SQLite without the write lock
        every transaction takes. It sees the latest committed rows; a write in it commits on its own, alone, so
        it may only make one idempotent change (a token's last use)."""
        with Session(self._autocommit_engine) as session:
            yield session

    @cached_property
    def _autocommit_engine(self) -> Engine:
        """The engine's pool, its connections outside any transaction while they serve :meth:`lookup`."""
        return lookup_engine(self.engine)


def get_context(request: Request) -> RegistryContext:
    ctx: RegistryContext = request.app.state.ctx
    return ctx
