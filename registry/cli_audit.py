"""``mir audit``: verify the tamper-evident log and print an artifact's history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from registry import audit_verify
from registry.client import MirClient, MirError

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
) -> None:
    """An artifact's history: every recorded change, oldest first."""
    items: list[dict[str, object]] = []
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
    except MirError as exc:
        err.print(f"[red]error:[/red] {exc.message} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from exc
    table = Table("#", "at", "actor", "action", "version", "details")
    for e in items[:limit]:
        details = e.get("details")
        pairs = details.items() if isinstance(details, dict) else ()
        summary = ", ".join(f"{k}={_short(v)}" for k, v in pairs if v is not None)
        table.add_row(str(e["index"]), str(e["at"])[:19], str(e["actor"] or ""), str(e["action"]),
                      str(e["version"] or ""), summary[:240])
    out.print(table)


def _short(value: object) -> str:
    """Digests and keys are long; the table shows a recognisable prefix (``--json`` has them whole)."""
    text = str(value)
    if text.startswith(("sha256:", "blake3:")) or text.startswith("-----BEGIN"):
        return text[:19] + "…"
    return text


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
