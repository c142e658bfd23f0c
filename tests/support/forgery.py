"""Re-signing registry statements with the live server's own key, to make genuine-but-wrong answers.

A tampering proxy cannot sign; but a receipt that really expired, or a bundle
that really is a month old, is signed. To test that the client refuses those
for the right reason (and not merely for a bad signature), the test signs
them with the registry's real key, read from the server's data directory.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from registry.core.context import RegistryContext
from registry.core.registry_key import RegistrySigner
from registry.core.settings import Settings
from registry.gate.attestation import sign_payload
from tests.support.server import LiveServer


@contextmanager
def registry_signer(server: LiveServer) -> Iterator[RegistrySigner]:
    ctx = RegistryContext.create(Settings(data_dir=server.data_dir, database_url=server.database_url))
    try:
        yield ctx.signer
    finally:
        ctx.engine.dispose()


def payload_of(envelope: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return data


def resign(signer: RegistrySigner, envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The same statement with ``changes`` applied, signed again by the registry key."""
    payload = {**payload_of(envelope), **changes}
    return sign_payload(signer, payload, envelope["payloadType"]).to_dict()


def tamper_unsigned(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The statement with ``changes`` applied but the old signatures kept: what a proxy alone can do."""
    payload = {**payload_of(envelope), **changes}
    return {**envelope, "payload": base64.b64encode(json.dumps(payload).encode()).decode()}


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()
