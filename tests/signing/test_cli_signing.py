"""``keygen``, ``sign`` and ``verify --offline`` through a Typer app, exit codes included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from registry.cli.signing import register
from signing.bundle import parse_bundle
from signing.keys import key_hint, key_id, load_private_key, load_public_key
from signing.verify import verify_bundle
from tests.signing.conftest import MODEL_SIGNING_CLI, PASSPHRASE, KeyFiles

ENV = {"MIR_TEST_PASSPHRASE": PASSPHRASE}
runner = CliRunner()


def make_app(**kwargs: Any) -> typer.Typer:
    app = typer.Typer()
    register(app, **kwargs)
    return app


APP = make_app()


def invoke(*args: str | Path, input: str | None = None, app: typer.Typer = APP) -> Any:
    return runner.invoke(app, [str(a) for a in args], env=ENV, input=input)


def test_keygen(tmp_path: Path) -> None:
    prefix = tmp_path / "release"
    result = invoke("keygen", "-o", prefix, "--kind", "ecdsa-p384", "--passphrase-env", "MIR_TEST_PASSPHRASE")
    assert result.exit_code == 0, result.output
    private = load_private_key(tmp_path / "release.pem", PASSPHRASE)
    public = load_public_key(tmp_path / "release.pub")
    assert key_id(private.public_key()) == key_id(public)
    assert key_id(public) in result.output
    again = invoke("keygen", "-o", prefix, "--passphrase-env", "MIR_TEST_PASSPHRASE")
    assert again.exit_code == 2 and "already exists" in again.stderr
    forced = invoke("keygen", "-o", prefix, "--force", "--passphrase-env", "MIR_TEST_PASSPHRASE")
    assert forced.exit_code == 0


def test_keygen_prompts_and_refuses_bad_input(tmp_path: Path) -> None:
    result = invoke("keygen", "-o", tmp_path / "k", "--kind", "ed25519", input="pw\npw\n")
    assert result.exit_code == 0, result.output
    assert load_private_key(tmp_path / "k.pem", "pw")
    assert invoke("keygen", "-o", tmp_path / "x", "--kind", "rsa").exit_code == 2
    missing = invoke("keygen", "-o", tmp_path / "y", "--passphrase-env", "NOT_SET_ANYWHERE")
    assert missing.exit_code == 2 and "NOT_SET_ANYWHERE" in missing.stderr


def test_keygen_without_a_terminal_says_what_it_needs(tmp_path: Path) -> None:
    """The real program with nothing on stdin used to print only ``Aborted.``"""
    done = subprocess.run(
        [sys.executable, "-m", "registry.main", "keygen", "-o", str(tmp_path / "k")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done
    assert "--passphrase-env" in done.stderr and "terminal" in done.stderr, done.stderr
    assert "Aborted" not in done.stderr + done.stdout
    assert not list(tmp_path.iterdir())


def sign(model: Path, key: KeyFiles, *extra: str | Path) -> Any:
    return invoke("sign", model, "--key", key.private_path, "--passphrase-env", "MIR_TEST_PASSPHRASE", *extra)


def test_sign_then_verify(model_tree: Path, p256: KeyFiles) -> None:
    result = sign(model_tree, p256)
    assert result.exit_code == 0, result.output
    bundle = model_tree.parent / "model.sig"  # default: <DIR>.sig beside DIR
    assert bundle.exists()
    assert "7 files" in result.output
    ok = invoke("verify", "--offline", "--bundle", bundle, model_tree, "--key", p256.public_path)
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output

    (model_tree / "a.txt").write_bytes(b"changed")
    (model_tree / "z.bin").write_bytes(b"new")
    bad = invoke("verify", "--offline", "--bundle", bundle, model_tree, "--key", p256.public_path)
    assert bad.exit_code == 1
    for text in ("FAILED", "modified", "a.txt", "extra", "z.bin"):
        assert text in bad.output


def test_sign_options_and_bundle_inside_the_directory(model_tree: Path, p256: KeyFiles, other_p256: KeyFiles) -> None:
    bundle = model_tree / "model.sig"
    result = sign(model_tree, p256, "-o", bundle, "--shard-size", "65536", "--workers", "2")
    assert result.exit_code == 0, result.output
    keys = ("--key", other_p256.public_path, "--key", p256.public_path)
    ok = invoke("verify", "--offline", "--bundle", bundle, model_tree, *keys)
    assert ok.exit_code == 0, ok.output
    revoked = invoke(
        "verify", "--offline", "--bundle", bundle, model_tree, *keys, "--revoked-key-id", key_id(p256.public)
    )
    assert revoked.exit_code == 1 and "revoked_key" in revoked.output
    wrong = invoke("verify", "--offline", "--bundle", bundle, model_tree, "--key", other_p256.public_path)
    assert wrong.exit_code == 1 and "untrusted_key" in wrong.output


@pytest.mark.parametrize(
    ("key_name", "extra", "gap"),
    [("ed25519_key", (), "ed25519 key"), ("p256", ("--algorithm", "blake3"), "blake3 digests"),
     ("p256", ("--shard-size", "65536"), "--shard-size")],
)
def test_bundles_model_signing_cannot_verify_are_warned_or_refused(
    model_tree: Path, tmp_path: Path, key_name: str, extra: tuple[str, ...], gap: str, request: pytest.FixtureRequest
) -> None:
    key: KeyFiles = request.getfixturevalue(key_name)
    warned = sign(model_tree, key, "-o", tmp_path / "warned.sig", *extra)
    assert warned.exit_code == 0, warned.output
    assert "model-signing cannot verify this bundle" in warned.stderr and gap in warned.stderr, warned.stderr
    refused = sign(model_tree, key, "-o", tmp_path / "refused.sig", "--compat", "model-signing", *extra)
    assert refused.exit_code == 2 and gap in refused.stderr, refused.output
    assert not (tmp_path / "refused.sig").exists()


def test_a_bundle_model_signing_can_verify_gets_no_warning(model_tree: Path, tmp_path: Path, p256: KeyFiles) -> None:
    for compat in ((), ("--compat", "model-signing")):
        result = sign(model_tree, p256, "-o", tmp_path / "ok.sig", *compat)
        assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    assert invoke("sign", model_tree, "--key", p256.plain_path, "--compat", "sigstore").exit_code == 2
    help_text = invoke("sign", "--help").output
    assert "--compat" in help_text and "Ed25519" in help_text


def test_an_untrusted_signer_is_named_in_both_key_id_forms(
    model_tree: Path, tmp_path: Path, p256: KeyFiles, other_p256: KeyFiles
) -> None:
    """mir's key id hashes the DER key, model-signing's hint the PEM text: the message labels each."""
    bundle = tmp_path / "b.sig"
    assert sign(model_tree, p256, "-o", bundle).exit_code == 0
    result = verify_bundle(parse_bundle(bundle.read_bytes()), model_tree, [other_p256.public])
    [failure] = result.failures
    assert f"the bundle names key id {key_id(p256.public)}, hint {key_hint(p256.public)}" in failure.message
    assert f"trusted: key id {key_id(other_p256.public)} / hint {key_hint(other_p256.public)}" in failure.message
    wrong = invoke("verify", "--offline", "--bundle", bundle, model_tree, "--key", other_p256.public_path)
    assert wrong.exit_code == 1 and "untrusted_key" in wrong.output


def test_sign_errors(model_tree: Path, tmp_path: Path, p256: KeyFiles) -> None:
    wrong = runner.invoke(
        APP,
        ["sign", str(model_tree), "--key", str(p256.private_path), "--passphrase-env", "P"],
        env={"P": "not it"},
    )
    assert wrong.exit_code == 2 and "wrong passphrase" in wrong.stderr
    plain = invoke("sign", model_tree, "--key", p256.plain_path)
    assert plain.exit_code == 2 and "not encrypted" in plain.stderr
    assert invoke("sign", model_tree, "--key", p256.plain_path, "--allow-unencrypted-key").exit_code == 0
    assert invoke("sign", tmp_path / "nope", "--key", p256.plain_path).exit_code == 2
    assert sign(model_tree, p256, "--algorithm", "md5").exit_code == 2
    prompted = invoke("sign", model_tree, "--key", p256.private_path, input=PASSPHRASE + "\n")
    assert prompted.exit_code == 0, prompted.output


def test_verify_usage_and_format_errors(model_tree: Path, tmp_path: Path, p256: KeyFiles) -> None:
    assert sign(model_tree, p256).exit_code == 0
    bundle = model_tree.parent / "model.sig"
    truncated = tmp_path / "truncated.sig"
    truncated.write_bytes(bundle.read_bytes()[:100])
    result = invoke("verify", "--offline", "--bundle", truncated, model_tree, "--key", p256.public_path)
    assert result.exit_code == 2 and "truncated" in result.stderr
    cases = [
        ("verify", "--offline", "--bundle", tmp_path / "none.sig", model_tree, "--key", p256.public_path),
        ("verify", "--offline", "--bundle", bundle, model_tree, "--key", tmp_path / "none.pub"),
        ("verify", "--offline", "--bundle", bundle, model_tree, "--key", p256.private_path),
        ("verify", "--offline", "--bundle", bundle, model_tree),
        ("verify", "--offline", model_tree, "--key", p256.public_path),
        ("verify", "--offline", "--bundle", bundle, tmp_path / "none", "--key", p256.public_path),
        ("verify", "acme/bert@1.0", model_tree, "--key", p256.public_path),
    ]
    for args in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_online_hook(model_tree: Path, p256: KeyFiles) -> None:
    calls: list[tuple[Any, ...]] = []

    def online(reference: str, directory: Path, **kwargs: Any) -> int:
        calls.append((reference, directory, kwargs))
        return 1

    result = invoke(
        "verify", "acme/bert@1.0", model_tree, "--key", p256.public_path, app=make_app(online_verify=online)
    )
    assert result.exit_code == 1
    assert calls[0][0] == "acme/bert@1.0" and calls[0][2]["keys"] == [p256.public_path]


def model_signing_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MODEL_SIGNING_CLI), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_round_trip_with_model_signing(model_tree: Path, tmp_path: Path, p256: KeyFiles) -> None:
    """mir sign -> model_signing verify key, and model_signing sign key -> mir verify --offline."""
    assert sign(model_tree, p256, "-o", tmp_path / "ours.sig").exit_code == 0
    ours_sig = ("--signature", tmp_path / "ours.sig", model_tree)
    theirs = model_signing_cli("verify", "key", "--public_key", p256.public_path, *ours_sig)
    assert theirs.returncode == 0, theirs.stderr
    their_sig = ("--signature", tmp_path / "theirs.sig", model_tree)
    signed = model_signing_cli("sign", "key", "--private_key", p256.plain_path, *their_sig)
    assert signed.returncode == 0, signed.stderr
    ours = invoke("verify", "--offline", "--bundle", tmp_path / "theirs.sig", model_tree, "--key", p256.public_path)
    assert ours.exit_code == 0, ours.output
