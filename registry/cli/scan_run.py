"""The work behind ``mir scan`` (see ``registry.cli.scan``): walking paths, scanning, printing, the exit status.

Kept apart from the command's registration so that every other ``mir`` command starts without importing the
scanners (numpy, h5py, py7zr, ...), which cost about half a second.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from registry import __version__
from scanners import Finding, Limits, Report, Verdict, scan_path
from scanners.globals_policy import trust_refusal
from scanners.sandbox import scan_path_sandboxed
from scanners.sarif import to_sarif
from scanners.sniff import SNIFF_BYTES, Kind, sniff

EXIT_CLEAN = 0
EXIT_FLAGGED = 1
EXIT_ERROR = 2

_STYLE = {
    Verdict.CLEAN: "green",
    Verdict.SUSPICIOUS: "yellow",
    Verdict.ERROR: "magenta",
    Verdict.MALICIOUS: "bold red",
}


def iter_files(path: Path) -> Iterator[Path]:
    """The path itself, or every file below a directory, in a stable order."""
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                yield Path(root) / name
    else:
        yield path


_HDF5_SUFFIXES = (".h5", ".hdf5", ".keras")


def _may_hold_hdf5(path: Path) -> bool:
    """HDF5 is parsed by the HDF5 C library (h5py), which a corrupt file can send into an endless loop: such
    files are always scanned in the time-limited child process, even without ``--sandbox``."""
    if path.suffix.lower() in _HDF5_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return sniff(handle.read(SNIFF_BYTES), None) is Kind.HDF5
    except OSError:
        return False


def exit_code(reports: list[Report]) -> int:
    """0 all clean; 1 any malicious, else 2 any error, else 1 any suspicious."""
    verdicts = {r.verdict for r in reports}
    if Verdict.MALICIOUS in verdicts:
        return EXIT_FLAGGED
    if Verdict.ERROR in verdicts:
        return EXIT_ERROR
    if Verdict.SUSPICIOUS in verdicts:
        return EXIT_FLAGGED
    return EXIT_CLEAN


def _table(reports: list[Report], verbose: bool) -> Table:
    table = Table(title="mir scan", show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("format")
    table.add_column("verdict")
    table.add_column("findings", overflow="fold")
    for r in reports:
        shown = r.findings if verbose else r.findings[:5]
        lines = []
        for f in shown:
            where = " ".join(x for x in (f.member or "", f"@{f.offset}" if f.offset is not None else "") if x)
            lines.append(f"[{_STYLE[f.severity]}]{f.severity.value}[/] {where + ': ' if where else ''}{f.message}")
        if len(r.findings) > len(shown):
            lines.append(f"... {len(r.findings) - len(shown)} more (use --verbose or --json)")
        table.add_row(r.path or "", r.format, f"[{_STYLE[r.verdict]}]{r.verdict.value}[/]", "\n".join(lines))
    return table



def run(paths: list[Path], fmt: str, sandbox: bool, verbose: bool, trust_global: list[str]) -> int:
    """Scan ``paths``, print the reports in ``fmt`` (table, json, sarif), return the exit status."""
    for name in trust_global:
        refusal = trust_refusal(name)
        if refusal is not None:
            Console(stderr=True).print(f"[red]error:[/red] --trust-global {name!r} cannot be trusted: {refusal}")
            return EXIT_ERROR
    limits = Limits(extra_safe_globals=frozenset(trust_global))
    reports: list[Report] = []
    for root in paths:
        if not root.exists() and not root.is_symlink():
            report = Report(scanner="mir-pickle-scanner", format="missing", path=str(root))
            report.add(Finding(Verdict.ERROR, f"no such file or directory: {root}"))
            reports.append(report)
            continue
        for file in iter_files(root):
            isolated = sandbox or _may_hold_hdf5(file)
            reports.append(scan_path_sandboxed(file, limits=limits) if isolated else scan_path(file, limits=limits))
    if fmt == "json":
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2))
    elif fmt == "sarif":
        typer.echo(json.dumps(to_sarif(reports, tool_version=__version__, base=Path.cwd()), indent=2))
    else:
        console = Console()
        console.print(_table(reports, verbose))
        counts = {v: sum(r.verdict is v for r in reports) for v in Verdict}
        console.print(", ".join(f"{n} {v.value}" for v, n in counts.items() if n) or "no files")
    return exit_code(reports)
