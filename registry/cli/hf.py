"""``mir import hf``: a Hugging Face snapshot becomes a version, with an ``imported_from`` lineage edge.

The files are checked against what the HF cache recorded about them (see
:mod:`registry.hf.cache_import`) before anything is sent, and pushed like
``mir push`` (the registry re-hashes every uploaded byte). The edge points at an
external node ``hf:<repo>@<commit>``.

Exit status: 0 imported; 1 refused (a file does not match its record, partial
snapshot, registry error); 2 usage errors (bad reference, unknown folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from registry.client.hf_import import HfImportError, load_snapshot
from registry.client.http import MirClient, MirError
from registry.client.progress import RichProgress
from registry.core.names import InvalidNameError, parse_ref

import_app = typer.Typer(help="Import artifacts from other ecosystems, keeping their provenance", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
KIND_BY_REPO_TYPE = {"model": "model", "dataset": "dataset"}


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")


@import_app.command("hf")
def import_hf(
    src: Annotated[str, typer.Argument(help="repo id in the local HF cache (org/name), a cache folder or a local_dir")],
    reference: Annotated[str, typer.Argument(help="namespace/name@version to create")],
    revision: Annotated[str | None, typer.Option(help="branch, tag or commit in the cache (default: main)")] = None,
    repo_type: Annotated[str, typer.Option(help="model, dataset or space")] = "model",
    repo_id: Annotated[str | None, typer.Option(help="HF repo id (required for local_dir downloads)")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="HF hub cache (default: $HF_HUB_CACHE)")] = None,
    kind: Annotated[str | None, typer.Option(help="artifact kind (default: from the repo type)")] = None,
    allow_partial: Annotated[bool, typer.Option(help="import a snapshot that lacks some files of its commit")] = False,
    description: Annotated[str | None, typer.Option(help="free text shown with the version")] = None,
) -> None:
    """Import a Hugging Face snapshot as namespace/name@version, checked against the HF cache's records."""
    try:
        parse_ref(reference, require_ref=True)
    except InvalidNameError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    try:
        snapshot = load_snapshot(
            src, cache_dir=cache_dir, revision=revision, repo_type=repo_type, repo_id=repo_id,
            allow_partial=allow_partial,
        )
    except HfImportError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    artifact_kind = kind or KIND_BY_REPO_TYPE.get(snapshot.repo_type)
    if artifact_kind is None:
        err.print(f"[red]error:[/red] {snapshot.repo_type} repos have no default artifact kind: pass --kind")
        raise typer.Exit(2)
    prefix = "" if snapshot.repo_type == "model" else f"{snapshot.repo_type}s/"
    source = f"hf:{prefix}{snapshot.repo_id}@{snapshot.commit}"
    text = description or f"imported from {source}"
    try:
        bars = RichProgress()
        with bars.running(), MirClient() as client:
            result = client.push(
                snapshot.root, reference, kind=artifact_kind, description=text, progress=bars,
                manifest=snapshot.manifest(), lineage=[snapshot.lineage()],
            )
    except MirError as exc:
        err.print(f"[red]error:[/red] {exc.message} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from exc
    checked = "files and tree listing" if snapshot.tree_checked else "file records"
    out.print(
        f"[green]imported[/green] {source} as {result['artifact']}@{result['version']} "
        f"({result['file_count']} files checked against the cache's {checked}; "
        f"{result['uploaded_blobs']} uploaded, {result['reused_blobs']} already stored)\n"
        f"lineage: imported_from {source}\nmanifest {result['manifest_digest']}"
    )
    if snapshot.skipped:
        out.print(f"not imported (git metadata): {', '.join(snapshot.skipped)}")
    if snapshot.missing:
        out.print(f"[yellow]partial:[/yellow] {len(snapshot.missing)} file(s) of the commit were never downloaded")
