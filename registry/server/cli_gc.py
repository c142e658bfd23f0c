"""``mir gc``: the operator's garbage collection of unreferenced blobs, run where the database and store are."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_AGE = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> timedelta:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d`` -> a timedelta; typer.BadParameter otherwise."""
    match = _AGE.match(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r}: use a number of seconds, or 30m, 24h, 7d")
    return timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])


def gc_command(
    data_dir: Annotated[Path | None, typer.Option(help="where SQLite and blobs live (MIR_DATA_DIR)")] = None,
    min_age: Annotated[str, typer.Option(help="keep unreferenced blobs younger than this (uploads in flight)")]
    = "24h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would go; delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Delete blobs that no version lists (after aborted pushes, deleted versions, failed Hub commits).

    A blob that a committed version or an open push lists is never removed, nor one written or recorded within
    --min-age (a Hugging Face client uploads files before the commit that lists them). Runs beside the server
    (MIR_DATABASE_URL, MIR_BLOB_STORE, ...), like `mir fsck`; pushes may go on meanwhile. The run is audited.
    Exit 0 when it ran, 2 when the store or database could not be reached.
    """
    # Server-side modules, loaded only for this command (the CLI's client commands never import them).
    from sqlalchemy.exc import SQLAlchemyError

    from registry.artifacts import gc
    from registry.core.context import RegistryContext
    from registry.server.migrate import SchemaMismatchError, ensure_schema
    from registry.server.operator_settings import load_settings

    age = parse_age(min_age)
    settings = load_settings(data_dir=data_dir) if data_dir else load_settings()
    try:
        ctx = RegistryContext.create(settings)
        ensure_schema(ctx.engine, settings.resolved_database_url, auto_migrate=False)
        report = gc.collect(ctx.transaction, ctx.blobs, min_age=age, dry_run=dry_run)
    except (SchemaMismatchError, SQLAlchemyError, OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] cannot collect: {str(exc).splitlines()[0]}")
        raise typer.Exit(2) from exc
    if as_json:
        out.print_json(json.dumps(_as_dict(report)))
        return
    if report.collected:
        table = Table("digest", "size", "why")
        for c in report.collected[:50]:
            table.add_row(c.digest, str(c.size), c.reason)
        out.print(table)
    verb = "would free" if dry_run else "freed"
    out.print(f"gc: {len(report.collected)} blob(s), {verb} {report.bytes_freed} bytes; kept "
              f"{report.kept_young} younger than {min_age} and {report.kept_referenced} that a version listed "
              "meanwhile")


def _as_dict(report: Any) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run, "min_age_s": int(report.min_age.total_seconds()),
        "collected": [{"digest": c.digest, "size": c.size, "reason": c.reason} for c in report.collected],
        "bytes_freed": report.bytes_freed, "kept_young": report.kept_young,
        "kept_referenced": report.kept_referenced,
    }


def register(app: typer.Typer) -> None:
    app.command("gc")(gc_command)
