"""The deploy gate from the command line: ``mir policy``, ``mir bundle``, ``mir run --verify``."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from registry.client import verify_online
from registry.client.http import MirClient, MirError
from registry.client.job_runner import run_job
from registry.client.private_copy import CopyRefused, PrivateCopy, make_private_copy, remove_copy
from registry.client.verify_online import OnlineReport
from registry.core.names import InvalidNameError, parse_ref
from signing.manifest import Manifest
from signing.tree import TreeError

policy_app = typer.Typer(help="Show and set a namespace's deploy policy", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@policy_app.command("show")
def policy_show(namespace: Annotated[str, typer.Argument(help="namespace")]) -> None:
    """Print the namespace policy (the built-in default if none is set)."""
    try:
        with MirClient() as client:
            answer = client.json("GET", f"/v1/namespaces/{namespace}/policy")
    except MirError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    out.print(f"{namespace}: {'built-in default' if answer['default'] else 'custom'} policy {answer['policy_digest']}")
    out.print_json(json.dumps(answer["policy"]))


@policy_app.command("set")
def policy_set(
    namespace: Annotated[str, typer.Argument(help="namespace")],
    policy_file: Annotated[Path, typer.Argument(help="policy JSON (see `mir policy show` for the fields)")],
) -> None:
    """Set the namespace policy (needs trust:NS or admin; recorded in the audit log)."""
    try:
        body = json.loads(policy_file.read_text())
        with MirClient() as client:
            answer = client.json("PUT", f"/v1/namespaces/{namespace}/policy", json=body)
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {policy_file}: {exc}")
        raise typer.Exit(2) from exc
    except MirError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    out.print(f"policy of {namespace} set: {answer['policy_digest']}")


def bundle_command(
    reference: Annotated[str, typer.Argument(help="namespace/name@version-or-alias")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the bundle JSON")],
) -> None:
    """Download a verification bundle to check this version later with no registry (mir verify --offline)."""
    try:
        ref = parse_ref(reference)
        with MirClient() as client:
            data = client.json("GET", f"/v1/artifacts/{ref.repo}/versions/{ref.ref or 'latest'}/bundle")
    except (MirError, InvalidNameError) as exc:
        err.print(f"[red]error:[/red] {getattr(exc, 'message', exc)}")
        raise typer.Exit(1) from exc
    output.write_text(json.dumps(data, indent=1))
    out.print(f"wrote verification bundle of {data['artifact']}@{data['version']} to {output}")


def run_command(
    ctx: typer.Context,
    verify: Annotated[str, typer.Option("--verify", help="namespace/name@ref the job must be running")],
    directory: Annotated[Path, typer.Argument(help="local copy of the version the job will load")],
    key: Annotated[list[Path] | None, typer.Option("--key", "-k", help="trusted signer key (PEM); repeatable")] = None,
    bundle: Annotated[Path | None, typer.Option(help="verify offline against this bundle (no registry)")] = None,
    registry_key: Annotated[Path | None, typer.Option(help="registry public key for --bundle")] = None,
    max_bundle_age: Annotated[str | None, typer.Option(
        help="oldest --bundle to accept, e.g. 12h or 30d (default: the attested policy's bundle_max_age)")] = None,
    copy_dir: Annotated[Path | None, typer.Option(
        help="where the private verified copy goes (default: /dev/shm when present, else the temp dir)")] = None,
    max_copy_bytes: Annotated[int | None, typer.Option(
        min=0, help="refuse to copy more than this (default: the free space where the copy goes)")] = None,
    allow_gap: Annotated[bool, typer.Option(
        "--allow-gap", help="when the copy would not fit, verify DIR in place and let the job read DIR again "
                            "(someone who can write DIR in between wins); said on stderr")] = False,
) -> None:
    """Verify DIR against a version and its policy, then run the command after `--` on the verified bytes.

    Each file of DIR is read once: hashed and copied into a private directory (files 0400, directories 0500,
    read-only mounted for a root job on Linux) that the command gets as MIR_VERIFIED_DIR and that is removed
    when it ends. It also sees MIR_VERIFIED_REF, MIR_VERIFIED_MANIFEST_DIGEST and, when the registry answered,
    MIR_VERIFICATION_RECEIPT (a file with the registry-signed receipt). Nothing runs if any check fails.
    """
    command = list(ctx.args)
    if not command:
        err.print("[red]error:[/red] give the command to run after --")
        raise typer.Exit(2)
    try:
        wanted = parse_ref(verify)
    except InvalidNameError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    previous = {sig: signal.signal(sig, _stop) for sig in _STOPS}
    copy: PrivateCopy | None = None
    receipt_file: Path | None = None
    try:
        copy = _private_copy(directory, copy_dir, max_copy_bytes, allow_gap)
        env = dict(os.environ)
        local = copy.manifest if copy is not None else None
        if bundle is not None:
            from registry.client import offline as verify_bundle_cli  # the policy engine: only for --bundle
            from registry.client.bundles import Subject

            code = verify_bundle_cli.run(
                bundle, directory, key_paths=key or [], revoked=[], registry_key_path=registry_key,
                max_bundle_age=max_bundle_age, subject=Subject(wanted.repo, wanted.ref or "latest"), local=local,
            )
            if code != 0:
                raise typer.Exit(code)
            data = json.loads(bundle.read_text())
            env.update(MIR_VERIFIED_REF=f"{data['artifact']}@{data['version']}",
                       MIR_VERIFIED_MANIFEST_DIGEST=data["manifest_digest"])
        else:
            report = _verify_online(verify, directory, key or [], local)
            receipt_file = Path(tempfile.mkstemp(prefix="mir-receipt-", suffix=".json")[1])
            receipt_file.write_text(json.dumps(report.receipt))
            env.update(MIR_VERIFIED_REF=report.reference, MIR_VERIFICATION_RECEIPT=str(receipt_file),
                       MIR_VERIFIED_MANIFEST_DIGEST=report.manifest_digest)
        env["MIR_VERIFIED_DIR"] = str(copy.root if copy is not None else directory.resolve())
        where = f" on the private copy {copy.root}" if copy is not None else f" on {directory} (--allow-gap)"
        err.print(f"[green]verified[/green] {env['MIR_VERIFIED_REF']}; running {' '.join(command)}{where}")
        try:
            code = run_job(command, env, readonly=copy.root if copy is not None else None,
                           note=lambda text: err.print(f"[yellow]note:[/yellow] {text}"))
        except OSError as exc:  # as a shell answers: 127 not found, 126 found but not runnable
            err.print(f"[red]error:[/red] cannot run {command[0]}: {exc.strerror or exc}")
            code = 127 if isinstance(exc, FileNotFoundError) else 126
    finally:
        if copy is not None:
            remove_copy(copy.root)
        if receipt_file is not None:
            receipt_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise typer.Exit(code)


_STOPS = (signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP while copying or verifying: leave through ``finally`` (the private copy, possibly
    gigabytes of RAM on /dev/shm, is removed) with status 128+N. While the job runs, it gets them instead."""
    raise typer.Exit(128 + signum)


def _private_copy(directory: Path, root: Path | None, max_bytes: int | None, allow_gap: bool) -> PrivateCopy | None:
    """The verified private copy of DIR, or None when it would not fit and ``--allow-gap`` was given."""
    try:
        return make_private_copy(directory, root=root, max_bytes=max_bytes)
    except CopyRefused as exc:
        if not allow_gap:
            err.print(f"[red]error:[/red] {exc}: not running the job. Free space, lower the model size, point "
                      "--copy-dir elsewhere, or accept verifying in place with --allow-gap")
            raise typer.Exit(2) from exc
        err.print(f"[yellow]warning:[/yellow] {exc}; --allow-gap given: verifying {directory} in place, and the job "
                  "reads it again afterwards (a writer of that directory could change it in between)")
        return None
    except (TreeError, OSError) as exc:
        err.print(f"[red]error:[/red] cannot copy {directory}: {exc}: not running the job")
        raise typer.Exit(1) from exc


def _verify_online(reference: str, directory: Path, keys: list[Path], local: Manifest | None) -> OnlineReport:
    try:
        with MirClient() as client:
            report = verify_online.verify(client, reference, directory, keys=keys, revoked_key_ids=[], policy=True,
                                          local=local)
    except MirError as exc:
        err.print(f"[red]error:[/red] {exc.message} — not running the job (use --bundle to verify offline)")
        raise typer.Exit(1) from exc
    for check in report.checks:
        if not check.ok:
            err.print(f"[red]FAIL[/red] {check.name}: {check.detail}")
    if not report.ok:
        err.print("[red]verification failed: not running the job[/red]")
        raise typer.Exit(1)
    return report


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    app.command("bundle")(bundle_command)
    app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run_command)
