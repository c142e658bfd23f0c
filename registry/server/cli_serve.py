"""Operator commands that run the server side: ``mir serve`` and ``mir worker``.

They import the web stack and the scan worker only when run, so the user's commands start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind (MIR_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (MIR_PORT)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where SQLite and blobs live (MIR_DATA_DIR)")] = None,
) -> None:
    """Run the registry (SQLite + ./mir-data/ unless MIR_DATABASE_URL / MIR_BLOB_STORE say otherwise)."""
    from registry.server.operator_settings import load_settings
    from registry.server.serve import serve as run_server

    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v}
    run_server(load_settings(**overrides))


def worker(
    once: Annotated[bool, typer.Option(help="process the queued scan jobs, then exit")] = False,
    parent_pid: Annotated[int | None, typer.Option(help="exit when this process (mir serve) is gone")] = None,
) -> None:
    """Run a scan worker: scans committed versions, each blob in a resource-limited child process."""
    from registry.scanning.worker import run
    from registry.server.operator_settings import load_settings
    from registry.web.request_context import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    run(settings, once=once, parent_pid=parent_pid)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
