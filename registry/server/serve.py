"""``mir serve``: migrate, bootstrap the first admin token, and listen."""

from __future__ import annotations

import os
import subprocess
import sys

import uvicorn
from rich.console import Console
from sqlalchemy.exc import ProgrammingError

from registry.audit import log as audit
from registry.audit import sequencer
from registry.auth.tokens import count_tokens, create_token
from registry.client.config import save_credentials
from registry.core.blobstore import BlobStoreUnavailable
from registry.core.context import RegistryContext
from registry.core.heap import freeze_startup_objects
from registry.core.settings import Settings
from registry.server.app import create_app
from registry.server.db_roles import RoleError, service_can_rewrite_log
from registry.server.migrate import SchemaMismatchError, prepare_schema
from registry.web.request_context import configure_logging

STALE_TEMP_SECONDS = 3600


def prepare(settings: Settings, console: Console) -> RegistryContext:
    """Open the database and blob store, bring the schema up to date, create the first admin token."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = RegistryContext.create(settings)
    try:
        prepare_schema(settings, ctx.engine)
    except (SchemaMismatchError, RoleError) as exc:
        console.print(f"[red]mir: {exc}[/red]")
        raise SystemExit(1) from exc
    except ProgrammingError as exc:  # e.g. the service role may not create tables: that is the owner's job
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        console.print(f"[red]mir: migrating the schema failed ({reason}); run `mir migrate` as the schema's owner "
                      "or set MIR_MIGRATION_DATABASE_URL[/red]")
        raise SystemExit(1) from exc
    if service_can_rewrite_log(ctx.engine):
        console.print("[yellow]warning: mir serve connects as the owner of the audit log tables (or a superuser), "
                      "so it could rewrite the log; run migrations as the owner (MIR_MIGRATION_DATABASE_URL) and "
                      "the service as a separate role[/yellow]")
    try:
        ctx.blobs.sweep_temp(older_than_s=STALE_TEMP_SECONDS)
    except BlobStoreUnavailable as exc:  # serve anyway: /v1/ready says not ready until the store answers
        console.print(f"[yellow]warning: the blob store is unreachable ({exc}); uploads and downloads fail "
                      "until it answers[/yellow]")
    sequencer.integrate(ctx.engine)  # events a stopped process committed but had not yet appended to the log
    signer = ctx.signer
    with ctx.transaction() as session:
        if count_tokens(session) == 0:
            row, secret = create_token(session, "admin", ["admin"], created_by="mir serve (first start)")
            audit.record(session, action="token.created", actor="mir serve (first start)",
                         details={"token_id": row.id, "name": row.name, "scopes": row.scopes})
            audit.record(session, action="registry.key_created", actor="mir serve (first start)",
                         details={"key_id": signer.key_id, "public_key": signer.public_pem})
        else:
            secret = None
    if secret is not None:
        saved = save_credentials(settings.base_url, secret)
        console.print("[bold]First start: created an admin token. It is shown once:[/bold]")
        console.print(f"  {secret}")
        console.print(f"  (saved for the local `mir` CLI in {saved})")
    return ctx


def serve(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    console = Console(stderr=True)
    ctx = prepare(settings, console)
    app = create_app(settings, ctx)
    workers = [_start_worker(settings.embedded_worker_nice) for _ in range(max(0, settings.embedded_workers))]
    if workers:
        console.print(f"started {len(workers)} scan worker process(es) (MIR_EMBEDDED_WORKERS)")
    console.print(f"mir {_db_label(settings)} · blobs {settings.resolved_blob_store}")
    console.print(f"[bold green]mir listening on {settings.base_url}[/bold green]")
    console.print(f"API docs: {settings.base_url}/docs")
    console.print(f"log in from another machine: mir login {settings.base_url} --token <token>")
    configure_logging(settings.log_level, settings.log_format)
    freeze_startup_objects()  # after the app and its workers exist: collections then skip the start-up heap
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        h11_max_incomplete_event_size=64 * 1024,
    )
    for proc in workers:
        proc.terminate()
    for proc in workers:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _start_worker(nice: int) -> subprocess.Popen[bytes]:
    """A `mir worker` child: scanning happens there (and in its sandboxed children), never in the API process.

    It runs ``nice`` steps below the API (its scan children inherit that): on a machine both share, a push
    that arrives while a blob is being scanned gets the CPU first, and the scans, which are asynchronous, catch
    up when requests leave the CPU idle. With two cores at 50 pushes/s, an equal share made the push p99 391 ms,
    this 148 ms, with every version still scanned. Its backlog is in ``/metrics`` (oldest queued job's age).

    uvicorn re-raises SIGTERM after its graceful shutdown, so code after ``uvicorn.run`` may never run: the
    kernel is asked to signal the worker when this process dies, and the worker also polls its parent.
    """
    def in_child() -> None:
        os.nice(nice)
        _terminate_with_parent()

    return subprocess.Popen(
        [sys.executable, "-m", "registry.main", "worker", "--parent-pid", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        preexec_fn=in_child,
    )


def _terminate_with_parent() -> None:
    """In the child before exec: PR_SET_PDEATHSIG(SIGTERM) on Linux; elsewhere the worker's polling suffices."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _db_label(settings: Settings) -> str:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        return f"database {url}"
    return "database " + url.split("@")[-1]  # never print credentials
