"""``mir sign``, ``mir verify --offline`` and ``mir keygen``: signing with no server involved.

Bundles are Sigstore bundle v0.3 JSON, the format of OpenSSF model-signing, so
``model_signing verify key`` accepts what ``mir sign`` writes (ECDSA keys) and
``mir verify --offline`` accepts what ``model_signing sign key`` writes.

Default bundle location: ``<DIR>.sig`` beside the directory (``models/bert`` ->
``models/bert.sig``). Keeping it outside the tree means the signature never has
to exclude itself; model-signing's own default (``model.sig`` in the current
directory) needs ``--signature`` anyway. A bundle written inside DIR is left out
of what is signed and recorded in the statement's ``ignore_paths``.

Exit status: 0 everything verified; 1 verification failed (each failure printed);
2 usage or format errors (bad bundle, unreadable key, missing directory).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from registry.policy.statements import BUNDLE_MEDIA_TYPE
from signing.bundle import BundleFormatError, parse_bundle
from signing.compat import check_compat
from signing.hashing import ALGORITHMS, HashingError, UnsupportedAlgorithmError
from signing.intoto import StatementError, parse_statement
from signing.keys import (
    KEY_KINDS,
    KeyFormatError,
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_id,
    load_private_key_pem,
    load_public_key,
    save_private_key,
    save_public_key,
)
from signing.sharding import ShardFormatError
from signing.sign import sign_directory
from signing.tree import DEFAULT_IGNORE_PATHS, TreeError
from signing.verify import VerificationResult, verify_bundle

MAX_BUNDLE_FILE_BYTES = 64 << 20

# Called for ``mir verify NAME@REF DIR`` (no --offline); returns the exit status.
OnlineVerify = Callable[..., int]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class UsageError(Exception):
    """A problem with the command's input (exit status 2), already phrased for the user."""


def default_bundle_path(directory: Path) -> Path:
    """``<DIR>.sig`` beside the directory."""
    resolved = directory.resolve()
    return resolved.with_name(resolved.name + ".sig")


def relative_inside(path: Path, directory: Path) -> str | None:
    """``path`` relative to ``directory`` (POSIX) if it lies inside it, else None."""
    try:
        return path.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        return None


def read_passphrase(passphrase_env: str | None, *, confirm: bool = False) -> str:
    """From the named environment variable if given, else prompted for (never echoed)."""
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if value is None:
            raise UsageError(f"environment variable {passphrase_env} is not set")
        if not value:
            raise UsageError(f"environment variable {passphrase_env} is empty")
        return value
    try:
        value = typer.prompt("Key passphrase", hide_input=True, confirmation_prompt=confirm)
    except typer.Abort:  # end of input: no terminal, nothing piped in
        raise UsageError(
            "no passphrase: there is no terminal to ask on; put it in an environment variable and pass "
            "--passphrase-env NAME"
        ) from None
    if not value:
        raise UsageError("the passphrase must not be empty")
    return str(value)


def load_signing_key(path: Path, passphrase_env: str | None, *, allow_unencrypted: bool = False) -> PrivateKey:
    """Read a private key, asking for the passphrase only if the key is encrypted."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read key: {exc.strerror or exc}") from exc
    encrypted = b"ENCRYPTED" in data
    passphrase = read_passphrase(passphrase_env) if encrypted else None
    try:
        return load_private_key_pem(data, passphrase, allow_unencrypted=allow_unencrypted, source=str(path))
    except KeyFormatError as exc:
        raise UsageError(str(exc)) from exc


def load_trusted_keys(paths: Iterable[Path]) -> list[PublicKey]:
    keys = []
    for path in paths:
        try:
            keys.append(load_public_key(path))
        except KeyFormatError as exc:
            raise UsageError(str(exc)) from exc
    if not keys:
        raise UsageError("give at least one trusted public key with --key")
    return keys


def print_result(result: VerificationResult, directory: Path, console: Console = out) -> None:
    """Say exactly what held or what failed."""
    if result.ok:
        console.print(
            Text.assemble(
                ("verified: ", "bold green"),
                f"{result.files_checked} files in {directory} match the signature by key ",
                ", ".join(result.signer_key_ids),
            )
        )
        return
    console.print(Text(f"verification FAILED for {directory}: {len(result.failures)} problem(s)", style="bold red"))
    table = Table(show_header=True, header_style="bold")
    table.add_column("failure")
    table.add_column("path")
    table.add_column("detail", overflow="fold")
    for failure in result.failures:
        table.add_row(Text(failure.kind.value, style="red"), Text(failure.path or "-"), Text(failure.message))
    if not result.failures:  # pragma: no cover - ok is False only with failures or no signer
        table.add_row(Text("untrusted_key", style="red"), Text("-"), Text("no trusted signature"))
    console.print(table)


def run_offline_verify(
    bundle_path: Path,
    directory: Path,
    key_paths: Sequence[Path],
    revoked_key_ids: Sequence[str] = (),
    *,
    workers: int | None = None,
    extra_ignore_paths: Sequence[str] = (),
    console: Console = out,
    error_console: Console = err,
) -> int:
    """Verify ``directory`` against a bundle with local keys only; print the outcome; return 0/1/2."""
    try:
        if not directory.is_dir():
            raise UsageError(f"{directory}: not a directory")
        keys = load_trusted_keys(key_paths)
        try:
            with open(bundle_path, "rb") as handle:
                data = handle.read(MAX_BUNDLE_FILE_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"{bundle_path}: cannot read bundle: {exc.strerror or exc}") from exc
        bundle = parse_bundle(data, source=str(bundle_path))
        ignore = [*DEFAULT_IGNORE_PATHS, *extra_ignore_paths]
        inside = relative_inside(bundle_path, directory)
        if inside is not None:
            ignore.append(inside)
        result = verify_bundle(bundle, directory, keys, revoked_key_ids, ignore_paths=ignore, workers=workers)
    except (UsageError, BundleFormatError, TreeError) as exc:
        error_console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return 2
    print_result(result, directory, console)
    return 0 if result.ok else 1


def run_sign(
    directory: Path,
    key_path: Path,
    output: Path | None = None,
    *,
    passphrase_env: str | None = None,
    algorithm: str = "sha256",
    shard_size: int | None = None,
    workers: int | None = None,
    model_name: str | None = None,
    allow_unencrypted_key: bool = False,
    compat: str | None = None,
    console: Console = out,
    error_console: Console = err,
) -> int:
    """Sign ``directory`` into a bundle file; print where it went; return 0 or 2.

    Options model-signing cannot verify are refused with ``compat="model-signing"``, else warned about.
    """
    try:
        if not directory.is_dir():
            raise UsageError(f"{directory}: not a directory")
        private_key = load_signing_key(key_path, passphrase_env, allow_unencrypted=allow_unencrypted_key)
        gaps = check_compat(compat, private_key.public_key(), algorithm=algorithm, shard_size=shard_size)
        target = output if output is not None else default_bundle_path(directory)
        ignore = list(DEFAULT_IGNORE_PATHS)
        inside = relative_inside(target, directory)
        if inside is not None:
            ignore.append(inside)
        data = sign_directory(
            directory,
            private_key,
            algorithm=algorithm,
            shard_size=shard_size,
            workers=workers,
            ignore_paths=ignore,
            model_name=model_name,
        )
        _write_atomically(target, data)
    except (UsageError, TreeError, HashingError, ShardFormatError, UnsupportedAlgorithmError, ValueError) as exc:
        error_console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return 2
    for gap in gaps:
        error_console.print(Text.assemble(
            ("warning: ", "bold yellow"),
            f"model-signing cannot verify this bundle ({gap}); `mir verify --offline` can. "
            "--compat model-signing refuses such options",
        ))
    try:
        statement = parse_statement(parse_bundle(data).envelope.payload)
        count = len(statement.paths())
    except (BundleFormatError, StatementError):  # pragma: no cover - we just made it
        count = 0
    console.print(
        Text.assemble(
            ("signed: ", "bold green"),
            f"{count} files in {directory} with key {key_id(private_key.public_key())} -> {target}",
        )
    )
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write bundle: {exc.strerror or exc}") from exc


def run_keygen(
    output: Path,
    *,
    kind: str = "ecdsa-p256",
    passphrase_env: str | None = None,
    force: bool = False,
    console: Console = out,
    error_console: Console = err,
) -> int:
    """Write ``<output>.pem`` (private, encrypted) and ``<output>.pub``; return 0 or 2."""
    private_path = output.with_name(output.name + ".pem")
    public_path = output.with_name(output.name + ".pub")
    try:
        if kind not in KEY_KINDS:
            raise UsageError(f"unknown key kind {kind!r}: expected one of {', '.join(KEY_KINDS)}")
        for path in (private_path, public_path):
            if path.exists() and not force:
                raise UsageError(f"{path}: already exists (use --force to overwrite)")
        passphrase = read_passphrase(passphrase_env, confirm=True)
        key = generate_private_key(kind)
        save_private_key(key, private_path, passphrase, overwrite=force)
        save_public_key(key.public_key(), public_path, overwrite=force)
    except (UsageError, KeyFormatError) as exc:
        error_console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return 2
    except OSError as exc:
        error_console.print(Text.assemble(("error: ", "bold red"), f"cannot write key: {exc}"))
        return 2
    console.print(
        Text.assemble(
            ("key pair: ", "bold green"),
            f"{kind}, key id {key_id(key.public_key())}\n"
            f"  private (encrypted): {private_path}\n  public: {public_path}",
        )
    )
    return 0


def _is_mir_bundle(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return BUNDLE_MEDIA_TYPE.encode() in handle.read(4096)
    except OSError:
        return False


def register(app: typer.Typer, *, online_verify: OnlineVerify | None = None) -> None:
    """Add ``sign``, ``verify`` and ``keygen`` to ``app``.

    ``online_verify(reference, directory, keys=..., revoked_key_ids=..., workers=...)``
    handles ``mir verify NAME@REF DIR`` when given; without it only ``--offline`` works.
    """

    @app.command("sign")
    def sign_command(
        directory: Annotated[Path, typer.Argument(help="directory to sign")],
        key: Annotated[Path, typer.Option("--key", "-k", help="private key (PEM, encrypted)")],
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="bundle to write (default: <DIR>.sig beside DIR)")
        ] = None,
        passphrase_env: Annotated[
            str | None, typer.Option(help="read the key passphrase from this environment variable")
        ] = None,
        algorithm: Annotated[str, typer.Option(help=f"file digest: {' or '.join(ALGORITHMS)}")] = "sha256",
        shard_size: Annotated[
            int | None, typer.Option(min=1, help="sha256 over shards of this many bytes (all cores on one file)")
        ] = None,
        workers: Annotated[int | None, typer.Option(min=1, help="hashing threads (default: all cores)")] = None,
        model_name: Annotated[str | None, typer.Option(help="subject name (default: the directory's name)")] = None,
        allow_unencrypted_key: Annotated[
            bool, typer.Option(help="accept a private key stored without encryption")
        ] = False,
        compat: Annotated[
            str | None,
            typer.Option(help="model-signing: refuse options its `verify key` command cannot check "
                              "(Ed25519 keys, blake3, --shard-size)"),
        ] = None,
    ) -> None:
        """Sign DIR into a Sigstore bundle.

        With an ECDSA key, sha256 and no --shard-size (the defaults), OpenSSF model-signing can verify it too;
        Ed25519 keys, blake3 and sharding make bundles only mir verifies (a warning says so).
        """
        code = run_sign(
            directory,
            key,
            output,
            passphrase_env=passphrase_env,
            algorithm=algorithm,
            shard_size=shard_size,
            workers=workers,
            model_name=model_name,
            allow_unencrypted_key=allow_unencrypted_key,
            compat=compat,
        )
        raise typer.Exit(code)

    @app.command("verify")
    def verify_command(
        target: Annotated[str, typer.Argument(help="DIR (with --offline) or NAME@REF (then DIR)")],
        directory: Annotated[Path | None, typer.Argument(help="local directory (online mode)")] = None,
        offline: Annotated[bool, typer.Option("--offline", help="verify against a bundle file only")] = False,
        bundle: Annotated[Path | None, typer.Option("--bundle", "-b", help="bundle file (--offline)")] = None,
        key: Annotated[
            list[Path] | None, typer.Option("--key", "-k", help="trusted public key (PEM); repeatable")
        ] = None,
        revoked_key_id: Annotated[
            list[str] | None, typer.Option("--revoked-key-id", help="key id or key hint to refuse; repeatable")
        ] = None,
        ignore_path: Annotated[
            list[str] | None, typer.Option("--ignore-path", help="extra path inside DIR to leave out; repeatable")
        ] = None,
        workers: Annotated[int | None, typer.Option(min=1, help="hashing threads (default: all cores)")] = None,
        policy: Annotated[
            bool, typer.Option("--policy", help="also require the namespace policy to allow it (signed receipt)")
        ] = False,
        registry_key: Annotated[
            Path | None, typer.Option(help="registry public key for mir verification bundles (default: pinned)")
        ] = None,
        max_bundle_age: Annotated[
            str | None, typer.Option(help="oldest mir verification bundle to accept, e.g. 12h or 30d (default: "
                                          "the attested policy's bundle_max_age)")
        ] = None,
    ) -> None:
        """Check that DIR is exactly what a trusted key signed. Exit 0 only if everything holds."""
        if offline and bundle is not None and directory is None and _is_mir_bundle(bundle):
            from registry.client import offline as verify_bundle_cli  # the policy engine: only for mir bundles

            raise typer.Exit(verify_bundle_cli.run(bundle, Path(target), key_paths=key or [],
                                                   revoked=revoked_key_id or [], registry_key_path=registry_key,
                                                   workers=workers, max_bundle_age=max_bundle_age))
        if offline:
            if directory is not None:
                err.print("[red]error:[/red] with --offline give only DIR")
                raise typer.Exit(2)
            if bundle is None:
                err.print("[red]error:[/red] --offline needs --bundle FILE")
                raise typer.Exit(2)
            code = run_offline_verify(
                bundle,
                Path(target),
                key or [],
                revoked_key_id or [],
                workers=workers,
                extra_ignore_paths=ignore_path or [],
            )
            raise typer.Exit(code)
        if online_verify is None or directory is None:
            err.print("[red]error:[/red] online verification needs NAME@REF DIR and a registry; use --offline --bundle")
            raise typer.Exit(2)
        raise typer.Exit(
            online_verify(target, directory, keys=key or [], revoked_key_ids=revoked_key_id or [], workers=workers,
                          policy=policy)
        )

    @app.command("keygen")
    def keygen_command(
        output: Annotated[
            Path, typer.Option("--output", "-o", help="writes OUTPUT.pem (private) and OUTPUT.pub")
        ] = Path("mir-signing-key"),
        kind: Annotated[str, typer.Option(help=f"key type: {', '.join(KEY_KINDS)}")] = "ecdsa-p256",
        passphrase_env: Annotated[
            str | None, typer.Option(help="read the new key's passphrase from this environment variable")
        ] = None,
        force: Annotated[bool, typer.Option(help="overwrite existing key files")] = False,
    ) -> None:
        """Generate a signing key pair; the private key is encrypted with a passphrase."""
        raise typer.Exit(run_keygen(output, kind=kind, passphrase_env=passphrase_env, force=force))


if __name__ == "__main__":  # pragma: no cover - manual use before the main CLI wires us in
    _app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(_app)
    sys.exit(_app())
