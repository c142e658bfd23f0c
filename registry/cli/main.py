"""The user's ``mir`` commands: log in, push, pull, inspect, alias, tokens; and the sub-command groups."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from registry import __version__
from registry.cli import audit as cli_audit
from registry.cli import deploy as cli_deploy
from registry.cli import hf as cli_hf
from registry.cli import keys as cli_keys
from registry.cli import lineage as cli_lineage
from registry.cli import scan as cli_scan
from registry.cli import signing as cli_signing
from registry.cli.signing import UsageError, load_signing_key
from registry.client import verify_online
from registry.client.config import save_credentials
from registry.client.http import MirClient, MirError
from registry.client.progress import RichProgress
from registry.core.names import InvalidNameError, parse_ref
from registry.policy.synthetic_limits import one_line
from signing.manifest import InvalidManifestError
from signing.paths import InvalidPathError, check_portable_paths
from signing.tree import TreeError

app = typer.Typer(help="mir — the model integrity registry", no_args_is_help=True)
alias_app = typer.Typer(help="Move, remove and inspect aliases (@prod, @latest, ...)", no_args_is_help=True)
token_app = typer.Typer(help="Create, list and revoke API tokens", no_args_is_help=True)
app.add_typer(alias_app, name="alias")
app.add_typer(token_app, name="token")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _print_version(value: bool) -> None:
    if value:
        out.print(f"mir {__version__}")
        raise typer.Exit()


@app.callback()
def _program(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print mir's version and exit")
    ] = False,
) -> None:
    """mir — the model integrity registry."""


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """Turn every expected failure into one clear line and a non-zero exit, never a traceback."""
    try:
        yield
    except MirError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)} [dim]({exc.code})[/dim]")
        missing = (exc.detail or {}).get("missing") if isinstance(exc.detail, dict) else None
        if missing:
            err.print(f"  missing blobs: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        raise typer.Exit(1) from exc
    except (InvalidNameError, InvalidManifestError, InvalidPathError, TreeError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    except OSError as exc:  # unreadable files (HashingError), a file where a directory goes, permissions, ...
        text = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        err.print(f"[red]error:[/red] {escape(text)}")
        raise typer.Exit(2) from exc


def _with_client(fn: Callable[[MirClient], T]) -> T:
    with _friendly_errors(), MirClient() as client:
        return fn(client)


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@app.command()
def login(
    url: Annotated[str, typer.Argument(help="registry URL, e.g. http://127.0.0.1:8470")],
    token: Annotated[str, typer.Option(prompt=True, hide_input=True, help="API token (mir_...)")],
) -> None:
    """Save the registry URL and token for later commands (after checking they work)."""
    with _friendly_errors(), MirClient(url, token) as client:
        who = client.whoami()
    path = save_credentials(url, token)
    out.print(f"logged in to {url} as [bold]{who['name']}[/bold] ({', '.join(who['scopes'])}); saved to {path}")


@app.command()
def whoami() -> None:
    """Show which token the CLI uses and what it may do."""
    who = _with_client(lambda c: c.whoami())
    out.print(f"{who['name']} (token {who['token_id']}): {', '.join(who['scopes'])}")


@app.command()
def push(
    directory: Annotated[Path, typer.Argument(help="directory whose files become the version")],
    reference: Annotated[str, typer.Argument(help="namespace/name@version")],
    kind: Annotated[str, typer.Option(help="model or dataset")] = "model",
    description: Annotated[str | None, typer.Option(help="free text shown with the version")] = None,
    sign: Annotated[Path | None, typer.Option("--sign", help="sign the manifest with this private key (PEM)")] = None,
    passphrase_env: Annotated[str | None, typer.Option(help="environment variable with the key passphrase")] = None,
    parent: Annotated[list[str] | None, typer.Option("--parent", "-p", help=cli_lineage.PARENT_HELP)] = None,
    lineage_file: Annotated[Path | None, typer.Option("--lineage", help=cli_lineage.LINEAGE_FILE_HELP)] = None,
) -> None:
    """Hash DIR, upload only what the registry lacks, and commit it as namespace/name@version.

    Lineage is declared with the push and is immutable with the version:
    --parent trained_on:acme/corpus@2 --parent fine_tuned_from:hf:org/base@<sha>, or --lineage edges.json.
    """
    with _friendly_errors():
        parse_ref(reference, require_ref=True)
        if not directory.is_dir():
            raise NotADirectoryError(20, "not a directory", str(directory))
        try:
            private = load_signing_key(sign, passphrase_env) if sign is not None else None
            declared = cli_lineage.declarations_from_options(lineage_file, parent)
        except (UsageError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        bars = RichProgress()
        with bars.running(), MirClient() as client:
            result = client.push(  # hashes with a progress bar, sending large files meanwhile
                directory, reference, kind=kind, description=description, progress=bars, sign_with=private,
                lineage=declared, hash_progress=bars.hashing, check_paths=check_portable_paths,
            )
    out.print(
        f"[green]committed[/green] {result['artifact']}@{result['version']} "
        f"({result['file_count']} files, {_human(result['total_size'])}, "
        f"{result['uploaded_blobs']} uploaded, {result['reused_blobs']} already stored)\n"
        f"manifest {result['manifest_digest']}"
    )


@app.command()
def pull(
    reference: Annotated[str, typer.Argument(help="namespace/name[@version-or-alias] (default @latest)")],
    directory: Annotated[Path, typer.Argument(help="where to write the files")],
    override_quarantine: Annotated[
        bool, typer.Option("--override-quarantine", help="admin only, audited: pull a quarantined version anyway")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="pull into a directory holding other files: write the version's files "
                     "(replacing any that differ) and leave the others in place, listed"),
    ] = False,
) -> None:
    """Download a version, checking every file against the manifest digest. Quarantined versions are refused.

    DIR must be empty or hold only files of this version (a pull that was interrupted resumes, skipping
    the files that already verify; files that differ are replaced and listed). Other files: --force.
    """
    with _friendly_errors():
        parse_ref(reference)
        bars = RichProgress()
        with bars.running(), MirClient() as client:
            result = client.pull(
                reference, directory, progress=bars, override_quarantine=override_quarantine, force=force
            )
    cli_lineage.warn_if_flagged(result)
    out.print(
        f"[green]pulled[/green] {result['artifact']}@{result['version']} into {escape(str(directory))} "
        f"({result['file_count']} files verified, {result['downloaded_files']} downloaded)"
    )
    for key, what in (("replaced_files", "replaced (they differed)"), ("extra_files", "not in the version, left")):
        if result.get(key):
            shown = ", ".join(result[key][:10]) + (" ..." if len(result[key]) > 10 else "")
            err.print(f"[yellow]{len(result[key])} local file(s) {what}:[/yellow] {escape(shown)}")


@app.command()
def show(
    reference: Annotated[str, typer.Argument(help="namespace/name or namespace/name@ref")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show an artifact (its versions and aliases) or one version (its files)."""
    with _friendly_errors():
        ref = parse_ref(reference)
    if ref.ref is None:
        data = _with_client(lambda c: c.show_artifact(reference))
        if as_json:
            _print_json(data)
            return
        out.print(f"[bold]{data['artifact']}[/bold] ({data['kind']})")
        table = Table("version", "state", "files", "size", "aliases", "committed")
        for v in data["versions"]:
            table.add_row(
                v["version"], v["state"], str(v["file_count"]), _human(v["total_size"]),
                ", ".join(v["aliases"]), v["committed_at"] or "",
            )
        out.print(table)
        return
    data = _with_client(lambda c: c.show_version(reference))
    if as_json:
        _print_json(data)
        return
    out.print(f"[bold]{data['artifact']}@{data['version']}[/bold] ({data['kind']}, {data['state']})")
    out.print(f"manifest {data['manifest_digest']}  aliases: {', '.join(data['aliases']) or '-'}")
    out.print(f"scan: {data.get('scan_status') or 'not scanned'}")
    if data.get("synthetic"):
        from rich.markup import escape

        out.print(f"synthetic: {escape(one_line(data['synthetic']))}")
    table = Table("path", "size", "digest")
    for f in data["files"]:
        table.add_row(f["path"], _human(f["size"]), f["digest"])
    out.print(table)


@app.command("ls")
def list_artifacts(
    namespace: Annotated[str | None, typer.Argument(help="only this namespace")] = None,
    kind: Annotated[str | None, typer.Option(help="model or dataset")] = None,
) -> None:
    """List the artifacts this token may read."""
    items = _with_client(lambda c: c.list_artifacts(namespace, kind))
    table = Table("artifact", "kind", "aliases")
    for item in items:
        table.add_row(item["artifact"], item["kind"], ", ".join(f"@{a}→{v}" for a, v in item["aliases"].items()))
    out.print(table)


@alias_app.command("set")
def alias_set(
    reference: Annotated[str, typer.Argument(help="namespace/name@version")],
    alias: Annotated[str, typer.Argument(help="alias name, e.g. prod")],
    reason: Annotated[str | None, typer.Option(help="why (recorded with the move)")] = None,
) -> None:
    """Point ALIAS at a committed version (the move is recorded)."""
    with _friendly_errors():
        ref = parse_ref(reference, require_ref=True)
    result = _with_client(lambda c: c.set_alias(ref.repo, alias, ref.ref or "", reason))
    verb = "moved" if result["moved"] else "already at"
    out.print(f"@{alias} {verb} {ref.repo}@{result['version']}")


@alias_app.command("rm")
def alias_rm(repo: str, alias: str) -> None:
    """Remove an alias (recorded)."""
    _with_client(lambda c: c.delete_alias(repo, alias))
    out.print(f"removed @{alias} from {repo}")


@alias_app.command("history")
def alias_history(repo: str, alias: str) -> None:
    """Every move of an alias: when, who, from, to."""
    events = _with_client(lambda c: c.alias_history(repo, alias))
    table = Table("at", "actor", "from", "to", "reason")
    for e in events:
        table.add_row(e["at"], e["actor"] or "", e["from"] or "-", e["to"] or "-", e["reason"] or "")
    out.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="a label for the token")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="admin, metrics, read:NS, write:NS or trust:NS (keys, policy); repeatable"),
    ],
    expires_in_days: Annotated[int | None, typer.Option(help="expiry in days")] = None,
) -> None:
    """Create a token (admin only). The secret is printed once."""
    row = _with_client(lambda c: c.create_token(name, scope, expires_in_days))
    out.print(f"token {row['id']} ({name}): {', '.join(row['scopes'])}")
    out.print(row["token"], soft_wrap=True)


@token_app.command("list")
def token_list() -> None:
    """List tokens (admin only). Secrets are never shown again."""
    rows = _with_client(lambda c: c.list_tokens())
    table = Table("id", "name", "prefix", "scopes", "created", "last used", "revoked")
    for r in rows:
        table.add_row(
            str(r["id"]), r["name"], r["prefix"] + "…", ", ".join(r["scopes"]), r["created_at"][:19],
            (r["last_used_at"] or "")[:19], (r["revoked_at"] or "")[:19],
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: int, reason: Annotated[str | None, typer.Option(help="why (kept with the token)")] = None
) -> None:
    """Revoke a token; it stops working immediately."""
    _with_client(lambda c: c.revoke_token(token_id, reason))
    out.print(f"revoked token {token_id}")


cli_audit.register(app)
cli_deploy.register(app)
cli_keys.register(app)
cli_signing.register(app, online_verify=verify_online.run)
cli_scan.register(app)
cli_hf.register(app)
cli_lineage.register(app)
