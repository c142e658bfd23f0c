"""``mir audit``: verify the tamper-evident log and print an artifact's history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from registry.client import audit_verify
from registry.client.http import MirClient, MirError

audit_app = typer.Typer(help="Verify the audit log and read an artifact's history", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@audit_app.command("verify")
def verify_command(
    key: Annotated[Path | None, typer.Option(help="registry public key PEM to trust (default: pin on 1st use)")] = None,
    full: Annotated[bool, typer.Option(help="re-check every entry, not only those since the last run")] = False,
) -> None:
    """Check the signed tree head, prove it extends the last one seen, and recompute the root from the entries."""
    try:
        with MirClient() as client:
            report = audit_verify.verify(client, pinned_key_pem=key.read_text() if key else None, full=full)
    except MirError as exc:
        if exc.status == 403:
            err.print("[red]error:[/red] checking entries needs an admin or read:* token")
        else:
            err.print(f"[red]error:[/red] {exc.message} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from exc
    for note in report.notes:
        out.print(f"[dim]{note}[/dim]")
    if not report.ok:
        for problem in report.problems:
            err.print(f"[red]FAILED:[/red] {problem}")
        raise typer.Exit(1)
    out.print(
        f"[green]audit log verified[/green]: {report.tree_size} entries, {report.checked_entries} checked this run, "
        "consistent with every tree head seen before"
    )


@audit_app.command("log")
def log_command(
    artifact: Annotated[str, typer.Argument(help="namespace/name")],
    limit: Annotated[int, typer.Option(help="at most this many entries")] = 1000,
    key: Annotated[Path | None, typer.Option(help="registry public key PEM to trust (default: pinned key)")] = None,
) -> None:
    """An artifact's history, oldest first; each entry proven against the registry's signed tree head.

    Rows show what the entry's own (hashed, signed-over) body says; an entry that fails its inclusion proof
    is marked FAILED and the command exits 1.
    """
    items: list[dict[str, Any]] = []
    try:
        with MirClient() as client:
            after = -1
            while len(items) < limit:
                page = client.json("GET", "/v1/audit/entries",
                                   params={"artifact": artifact, "after": after, "limit": min(1000, limit)})
                items.extend(page["items"])
                if page["next"] is None:
                    break
                after = page["next"]
            report = audit_verify.check_entries(client, items[:limit],
                                                pinned_key_pem=key.read_text() if key else None)
    except MirError as exc:
        err.print(f"[red]error:[/red] {exc.message} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from exc
    for note in report.notes:
        err.print(f"[dim]{note}[/dim]")
    table = Table("#", "at", "actor", "action", "version", "details", "proof")
    for entry in report.entries:
        e = entry.fields
        details = e.get("details")
        pairs = details.items() if isinstance(details, dict) else ()
        summary = ", ".join(f"{k}={_short(v)}" for k, v in pairs if v is not None)
        proof = "[green]ok[/green]" if entry.problem is None else f"[red]FAILED: {entry.problem}[/red]"
        table.add_row(str(entry.index), str(e.get("at") or "")[:19], str(e.get("actor") or ""),
                      str(e.get("action") or ""), str(e.get("version") or ""), summary[:240], proof)
    out.print(table)
    for problem in report.problems:
        err.print(f"[red]FAILED:[/red] {problem}")
    failed = [e.index for e in report.entries if e.problem is not None]
    if failed:
        err.print(f"[red]FAILED:[/red] {len(failed)} of {len(report.entries)} entries do not verify against the "
                  f"signed tree head (size {report.tree_size}): {', '.join(map(str, failed[:20]))}")
    if not report.ok:
        raise typer.Exit(1)


def _short(value: object) -> str:
    """Digests and keys are long; the table shows a recognisable prefix (``--json`` has them whole)."""
    text = str(value)
    if text.startswith(("sha256:", "blake3:")) or text.startswith("-----BEGIN"):
        return text[:19] + "…"
    return text


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
