"""A real S3 HTTP endpoint for tests: moto's standalone server on a loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from moto.server import ThreadedMotoServer

from tests.support.server import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mir-test", "AWS_SECRET_ACCESS_KEY": "mir-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # http://127.0.0.1:PORT

    def env(self) -> dict[str, str]:
        """What a registry process needs to reach this store (the usual AWS variables plus the endpoint)."""
        return {**CREDENTIALS, "MIR_S3_ENDPOINT_URL": self.url}


@contextmanager
def s3_server() -> Iterator[S3Endpoint]:
    """moto's S3 server in this process (its own thread), credentials in the environment while it runs."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Endpoint(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
