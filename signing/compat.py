"""Which of our bundles OpenSSF model-signing's own ``model_signing verify key`` command can check.

Our bundles use model-signing's format, but we sign with more than its
command verifies: Ed25519 keys (it assumes an elliptic-curve key), BLAKE3 file
digests and sharded digests (its command hashes whole files with SHA-256 and
takes no option to change that). ``mir sign`` warns about each of these, and
``--compat model-signing`` refuses them, so nobody ships a bundle believing
their users can check it with the reference tool.
"""

from __future__ import annotations

from signing.keys import PublicKey, key_kind

MODEL_SIGNING = "model-signing"
COMPAT_TARGETS = (MODEL_SIGNING,)


class IncompatibleBundleError(ValueError):
    """A signing option that the chosen ``--compat`` target cannot verify."""


def model_signing_gaps(key: PublicKey, *, algorithm: str = "sha256", shard_size: int | None = None) -> list[str]:
    """Why model-signing 1.1.1's ``verify key`` command would refuse a bundle made with these options."""
    gaps = []
    if key_kind(key) == "ed25519":
        gaps.append("ed25519 key: model-signing verifies ECDSA (P-256, P-384, P-521) keys only")
    if algorithm != "sha256":
        gaps.append(f"{algorithm} digests: model-signing's verify command hashes files with sha256 only")
    if shard_size is not None:
        gaps.append("--shard-size: model-signing's verify command checks whole-file digests only")
    return gaps


def check_compat(target: str | None, key: PublicKey, *, algorithm: str, shard_size: int | None) -> list[str]:
    """The gaps for model-signing; raises IncompatibleBundleError instead when ``target`` demands it."""
    if target is not None and target not in COMPAT_TARGETS:
        raise IncompatibleBundleError(f"unknown --compat {target!r}: expected {' or '.join(COMPAT_TARGETS)}")
    gaps = model_signing_gaps(key, algorithm=algorithm, shard_size=shard_size)
    if target == MODEL_SIGNING and gaps:
        raise IncompatibleBundleError(
            "--compat model-signing: this bundle could not be verified by model-signing: " + "; ".join(gaps)
        )
    return gaps
