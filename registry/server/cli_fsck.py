"""``mir fsck``: the operator's store check, run where the registry's database and blob store are reachable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fsck_command(
    data_dir: Annotated[Path | None, typer.Option(help="where SQLite and blobs live (MIR_DATA_DIR)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="files hashed at once")] = min(4, os.cpu_count() or 1),
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Re-hash every stored blob against its digest; mark (and audit) what is corrupt or missing.

    Runs on a machine with the server's settings (MIR_DATABASE_URL, MIR_BLOB_STORE, ...), like `mir migrate`.
    A marked blob is never served again and blocks verification and bundles of every version holding it; once
    its bytes are restored, the next fsck clears the mark. Exit 0: all blobs intact; 1: problems found;
    2: the store could not be checked.
    """
    # Server-side modules, loaded only for this command (the CLI's client commands never import them).
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from sqlalchemy.exc import SQLAlchemyError

    from registry.artifacts import fsck
    from registry.core.blobstore import BlobStoreUnavailable
    from registry.core.context import RegistryContext
    from registry.server.migrate import SchemaMismatchError, ensure_schema
    from registry.server.operator_settings import load_settings

    settings = load_settings(data_dir=data_dir) if data_dir else load_settings()
    try:
        ctx = RegistryContext.create(settings)
        ensure_schema(ctx.engine, settings.resolved_database_url, auto_migrate=False)
        with ctx.transaction() as s:
            count, total = fsck.totals(s)
        bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=err, disable=as_json)
        with bars:
            task = bars.add_task(f"fsck {count} blob(s)", total=total)
            report = fsck.run(ctx.transaction, ctx.blobs, workers=workers,
                              advance=lambda n: bars.advance(task, n))
    except (SchemaMismatchError, SQLAlchemyError, ValueError, BlobStoreUnavailable) as exc:
        err.print(f"[red]error:[/red] cannot check the store: {str(exc).splitlines()[0]}")
        raise typer.Exit(2) from exc
    if as_json:
        out.print_json(json.dumps(_as_dict(report)))
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _as_dict(report: Any) -> dict[str, Any]:
    return {
        "ok": report.ok, "blobs": report.blobs, "bytes": report.bytes, "repaired": report.repaired,
        "chunk_lists_recorded": report.chunk_lists_recorded,
        "findings": [{"digest": f.digest, "size": f.size, "problem": f.problem, "reason": f.reason,
                      "newly_marked": f.newly_marked, "used_by": f.used_by} for f in report.findings],
    }


def _print(report: Any) -> None:
    for digest in report.repaired:
        out.print(f"[green]repaired[/green] {digest}: its bytes match the digest again; it is served again")
    if report.findings:
        table = Table("problem", "digest", "size", "reason", "used by", "mark")
        for f in report.findings:
            table.add_row(f.problem, f.digest, str(f.size), f.reason, ", ".join(f.used_by) or "-",
                          "new" if f.newly_marked else "already marked")
        out.print(table)
        err.print(f"[red]fsck: {len(report.findings)} of {report.blobs} blob(s) corrupt or missing[/red]; "
                  "they are not served, and versions holding them fail verification until their bytes are restored")
        return
    recorded = f", chunk lists recorded for {report.chunk_lists_recorded}" if report.chunk_lists_recorded else ""
    out.print(f"[green]fsck ok[/green]: {report.blobs} blob(s), {report.bytes} bytes match their digests{recorded}")


def register(app: typer.Typer) -> None:
    app.command("fsck")(fsck_command)
