"""Service-level test access: a migrated database and a blob store, without the HTTP layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry.core.blobstore import LocalBlobStore
from registry.core.db import session_scope


@dataclass
class Reg:
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: LocalBlobStore

    def session(self) -> Any:
        return session_scope(self.sessions)


def edge(edge_type: str, parent: str | dict[str, Any], **attributes: Any) -> dict[str, Any]:
    """A lineage declaration: ``parent`` is ``ns/name@version`` or an ``{"external": ...}`` source."""
    return {"type": edge_type, "parent": {"ref": parent} if isinstance(parent, str) else parent,
            "attributes": attributes}
