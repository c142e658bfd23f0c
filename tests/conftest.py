"""Shared fixtures: databases on both backends and the real server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import launched
from tests.support.databases import BACKENDS, database_url
from tests.support.server import LiveServer, live_server


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once on SQLite and once on PostgreSQL."""
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real ``mir serve`` on a free loopback port, one per module and backend."""
    workdir = tmp_path_factory.mktemp(f"server-{request.param}")
    with database_url(request.param, workdir) as url, live_server(url, workdir) as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    """A plain HTTP client on the live server, with the admin token."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}) as client:
        yield client


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright, shared by the web interface tests (tests/ui/)."""
    with launched() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests save page screenshots: ``$MIR_UI_SCREENSHOTS`` (a CI artifact folder) or a temp dir."""
    chosen = os.environ.get("MIR_UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Byte parameters are named by their first four bytes and length: the rest may be random or hold a
    timestamp (gzip), and test ids must be the same in every process that collects them (pytest-xdist)."""
    if isinstance(val, bytes | bytearray):
        return f"{bytes(val[:4])!r}...{len(val)}B" if len(val) > 4 else repr(bytes(val))
    return None
