"""``mir keys`` (trusted signer keys per namespace) and ``mir signature add`` (sign a committed version later)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from registry.cli.signing import UsageError, load_signing_key
from registry.client.http import MirClient, MirError
from registry.core.names import InvalidNameError, parse_ref
from signing.hashing import hash_directory
from signing.keys import KeyFormatError
from signing.manifest import Manifest
from signing.sign import sign_manifest
from signing.verify import compare_manifests

keys_app = typer.Typer(help="Trusted signer keys per namespace: add, list, revoke", no_args_is_help=True)
signature_app = typer.Typer(help="Add signatures to committed versions", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    message = exc.message if isinstance(exc, MirError) else str(exc)
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@keys_app.command("add")
def keys_add(
    public_key: Annotated[Path, typer.Argument(help="public key PEM (mir keygen writes NAME.pub)")],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="namespace that trusts the key")],
    label: Annotated[str, typer.Option(help="who or what holds the key")] = "",
    artifacts: Annotated[str, typer.Option(help="glob of artifact names it may sign")] = "*",
) -> None:
    """Trust a public key to sign artifacts of NAMESPACE (needs write on it)."""
    try:
        pem = public_key.read_text()
        with MirClient() as client:
            row = client.register_key(namespace, pem, label or public_key.stem, artifacts)
    except (MirError, OSError, UnicodeDecodeError) as exc:
        raise _fail(exc) from exc
    out.print(f"trusted key {row['key_id']} ({row['algorithm']}) in {namespace} for artifacts {row['artifacts']!r}")
    out.print(f"  model-signing names it by its hint {row['key_hint']}")


@keys_app.command("list")
def keys_list(namespace: Annotated[str, typer.Argument(help="namespace")]) -> None:
    """Keys a namespace trusts, revoked ones included (with reason and time)."""
    try:
        with MirClient() as client:
            rows = client.list_keys(namespace)
    except MirError as exc:
        raise _fail(exc) from exc
    table = Table("key id (mir)", "hint (model-signing)", "label", "algorithm", "artifacts", "added", "revoked",
                  "reason")
    for r in rows:
        table.add_row(r["key_id"], r["key_hint"], r["label"], r["algorithm"], r["artifacts"], r["created_at"][:19],
                      (r["revoked_at"] or "")[:19], r["revoked_reason"] or "")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    namespace: Annotated[str, typer.Argument(help="namespace")],
    key_id: Annotated[str, typer.Argument(help="key id (see mir keys list)")],
    reason: Annotated[str, typer.Option(help="why; recorded with the revocation")],
) -> None:
    """Revoke a key: its signatures stop counting from now on (recorded in the audit log)."""
    try:
        with MirClient() as client:
            client.revoke_key(namespace, key_id, reason)
    except MirError as exc:
        raise _fail(exc) from exc
    out.print(f"revoked key {key_id} in {namespace}: {reason}")


@signature_app.command("add")
def signature_add(
    reference: Annotated[str, typer.Argument(help="namespace/name@version")],
    directory: Annotated[Path, typer.Argument(help="local copy of the version (checked before signing)")],
    key: Annotated[Path, typer.Option("--key", "-k", help="private key PEM")],
    passphrase_env: Annotated[str | None, typer.Option(help="environment variable holding the passphrase")] = None,
) -> None:
    """Sign a committed version: DIR must match its manifest exactly, then the signature is added (audited)."""
    try:
        parse_ref(reference, require_ref=True)
        private = load_signing_key(key, passphrase_env)
        with MirClient() as client:
            version = client.show_version(reference)
            manifest = Manifest.from_dict({"files": version["files"]})
            problems = compare_manifests(manifest, hash_directory(directory))
            if problems:
                err.print("[red]error:[/red] DIR does not match the version; refusing to sign:")
                for p in problems[:20]:
                    err.print(f"  {p}")
                raise typer.Exit(1)
            envelope = sign_manifest(manifest, private, model_name=f"{version['artifact']}")
            added = client.add_signature(f"{version['artifact']}@{version['version']}", envelope.to_dict())
    except (MirError, InvalidNameError, KeyFormatError, UsageError, OSError) as exc:
        raise _fail(exc) from exc
    out.print(f"signed {version['artifact']}@{version['version']} with key {', '.join(added['key_ids'])}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(signature_app, name="signature")
