"""``mir scan PATH...``: scan local files for unsafe pickles and malformed model files, no server needed.

Directories are walked recursively (symlinked directories are not followed, so a
link loop cannot hang the scan). Exit status: 0 when every file is clean, 1 when
any is malicious or suspicious, 2 when none is malicious but some could not be
scanned (a missing path, a read error, a parse error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

EXIT_ERROR = 2  # as scan_run.EXIT_ERROR: a usage error


def register(app: typer.Typer) -> None:
    """Add the ``scan`` command to the ``mir`` application."""

    @app.command("scan")
    def scan(
        paths: Annotated[list[Path], typer.Argument(help="Files or directories to scan.")],
        json_output: Annotated[bool, typer.Option("--json", help="Print reports as JSON (= --format json).")] = False,
        output_format: Annotated[
            str, typer.Option("--format", help="table, json, or sarif (SARIF 2.1.0 for CI code scanning)")
        ] = "table",
        sandbox: Annotated[
            bool, typer.Option("--sandbox", help="Scan each file in a resource-limited child process.")
        ] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every finding.")] = False,
        trust_global: Annotated[
            list[str] | None,
            typer.Option("--trust-global", help="also accept this pickle global (module.name) as data; repeatable. "
                                                "Never lifts a global known to run code"),
        ] = None,
    ) -> None:
        """Scan model files for unsafe pickles and malformed formats (exit 0 clean, 1 flagged, 2 error)."""
        fmt = "json" if json_output else output_format
        if fmt not in ("table", "json", "sarif"):
            Console(stderr=True).print(f"[red]error:[/red] --format {fmt!r}: use table, json or sarif")
            raise typer.Exit(EXIT_ERROR)
        from registry.cli import scan_run  # the scanners load only for this command (see scan_run)

        raise typer.Exit(scan_run.run(paths, fmt, sandbox, verbose, list(trust_global or ())))
