"""The running registry's shared objects: settings, database, blob store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry.blobstore import LocalBlobStore
from registry.db import make_engine, make_session_factory, session_scope
from registry.settings import Settings


@dataclass
class RegistryContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: LocalBlobStore

    @classmethod
    def create(cls, settings: Settings) -> RegistryContext:
        engine = make_engine(settings.resolved_database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            blobs=LocalBlobStore.from_url(settings.resolved_blob_store),
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with session_scope(self.sessions) as session:
            yield session


def get_context(request: Request) -> RegistryContext:
    ctx: RegistryContext = request.app.state.ctx
    return ctx
