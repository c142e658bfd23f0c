"""Signing keys: generation, PEM files (private keys encrypted at rest), key ids, sign/verify.

Supported: ECDSA on P-256 and P-384 (what OpenSSF model-signing accepts for key
signing; P-521 is accepted too for its bundles) and Ed25519 (ours only:
model-signing cannot verify Ed25519 bundles). Private keys are written as
PKCS#8 PEM encrypted with a passphrase; reading an unencrypted private key is
refused unless the caller explicitly asks for it, so a key that leaked to disk
in the clear is noticed rather than silently used.

Two identifiers exist for a public key, both SHA-256 hex strings:
:func:`key_id` hashes the DER SubjectPublicKeyInfo (ours, used for trust and
revocation lists); :func:`key_hint` hashes the PEM text, which is what
model-signing writes into a bundle's ``verificationMaterial.publicKey.hint``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

KEY_KINDS: tuple[str, ...] = ("ecdsa-p256", "ecdsa-p384", "ed25519")
_CURVES: dict[str, type[ec.EllipticCurve]] = {"ecdsa-p256": ec.SECP256R1, "ecdsa-p384": ec.SECP384R1}
# Curve name -> (kind, hash). The hash follows the curve size, as Sigstore and model-signing do.
_EC_KINDS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": ("ecdsa-p256", hashes.SHA256),
    "secp384r1": ("ecdsa-p384", hashes.SHA384),
    "secp521r1": ("ecdsa-p521", hashes.SHA512),
}
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFormatError(ValueError):
    """A key file or key object we cannot use; the message names the source and the reason."""


class UnsupportedKeyError(KeyFormatError):
    """A well-formed key of a type or curve we do not sign or verify with (RSA, secp256k1, ...)."""


class PassphraseError(KeyFormatError):
    """A missing or wrong passphrase for an encrypted private key."""


class UnencryptedKeyError(KeyFormatError):
    """An unencrypted private key read without ``allow_unencrypted=True``."""


def generate_private_key(kind: str = "ecdsa-p256") -> PrivateKey:
    """A new private key of ``kind`` (one of KEY_KINDS)."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curve = _CURVES.get(kind)
    if curve is None:
        raise UnsupportedKeyError(f"unknown key kind {kind!r}: expected one of {', '.join(KEY_KINDS)}")
    return ec.generate_private_key(curve())


def key_kind(key: PrivateKey | PublicKey) -> str:
    """``ecdsa-p256``, ``ecdsa-p384``, ``ecdsa-p521`` or ``ed25519``; raises for anything else."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        entry = _EC_KINDS.get(key.curve.name)
        if entry is not None:
            return entry[0]
        raise UnsupportedKeyError(f"unsupported elliptic curve {key.curve.name}: use P-256 or P-384")
    raise UnsupportedKeyError(f"unsupported key type {type(key).__name__}: use ECDSA P-256/P-384 or Ed25519")


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise PassphraseError("the passphrase must not be empty")
    return data


def private_key_to_pem(key: PrivateKey, passphrase: str | bytes) -> bytes:
    """PKCS#8 PEM of ``key`` encrypted with ``passphrase`` (required, non-empty)."""
    key_kind(key)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(_passphrase_bytes(passphrase)),
    )


def private_key_to_unencrypted_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, for handing a key to tools that cannot decrypt (never for storage)."""
    key_kind(key)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_to_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the form model-signing reads and hashes for its key hint."""
    key_kind(key)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PublicKey) -> str:
    """Our key identifier: SHA-256 (hex) of the DER SubjectPublicKeyInfo."""
    key_kind(key)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def key_hint(key: PublicKey) -> str:
    """model-signing's key hint: SHA-256 (hex) of the SubjectPublicKeyInfo PEM text."""
    return hashlib.sha256(public_key_to_pem(key)).hexdigest()


def _write_new_file(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    """Write atomically (temp file, fsync, rename) with ``mode`` from the start; refuse to clobber."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; refusing to overwrite a key file")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_private_key(
    key: PrivateKey, path: str | os.PathLike[str], passphrase: str | bytes, *, overwrite: bool = False
) -> None:
    """Write ``key`` encrypted with ``passphrase`` to ``path``, readable by the owner only."""
    _write_new_file(Path(path), private_key_to_pem(key, passphrase), 0o600, overwrite)


def save_public_key(key: PublicKey, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write the public key as SubjectPublicKeyInfo PEM."""
    _write_new_file(Path(path), public_key_to_pem(key), 0o644, overwrite)


def _check_private(key: object, source: str) -> PrivateKey:
    if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        try:
            key_kind(key)
        except UnsupportedKeyError as exc:
            raise UnsupportedKeyError(f"{source}: {exc}") from exc
        return key
    raise UnsupportedKeyError(
        f"{source}: unsupported private key type {type(key).__name__}: use ECDSA P-256/P-384 or Ed25519"
    )


def load_private_key_pem(
    data: bytes,
    passphrase: str | bytes | None = None,
    *,
    allow_unencrypted: bool = False,
    source: str = "private key",
) -> PrivateKey:
    """Parse a PEM private key. Encrypted keys need ``passphrase``; unencrypted ones need the flag."""
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFormatError(f"{source}: too large to be a key ({len(data)} bytes)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        pass  # encrypted: handled below
    except UnsupportedAlgorithm as exc:
        raise UnsupportedKeyError(f"{source}: unsupported key algorithm ({exc})") from exc
    except ValueError as exc:
        raise KeyFormatError(f"{source}: not a PEM private key ({exc})") from exc
    else:
        if not allow_unencrypted:
            raise UnencryptedKeyError(
                f"{source}: private key is not encrypted; refusing to use it "
                "(re-save it with a passphrase, or explicitly allow unencrypted keys)"
            )
        return _check_private(key, source)
    if not passphrase:
        raise PassphraseError(f"{source}: private key is encrypted and no passphrase was given")
    try:
        key = serialization.load_pem_private_key(data, password=_passphrase_bytes(passphrase))
    except UnsupportedAlgorithm as exc:
        raise UnsupportedKeyError(f"{source}: unsupported key algorithm ({exc})") from exc
    except (ValueError, TypeError) as exc:
        raise PassphraseError(f"{source}: wrong passphrase or corrupt encrypted key") from exc
    return _check_private(key, source)


def load_private_key(
    path: str | os.PathLike[str], passphrase: str | bytes | None = None, *, allow_unencrypted: bool = False
) -> PrivateKey:
    """Read a PEM private key file (see :func:`load_private_key_pem`)."""
    return load_private_key_pem(
        _read_key_file(Path(path)), passphrase, allow_unencrypted=allow_unencrypted, source=str(path)
    )


def load_public_key_pem(data: bytes, *, source: str = "public key") -> PublicKey:
    """Parse a SubjectPublicKeyInfo PEM public key of a supported type."""
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFormatError(f"{source}: too large to be a key ({len(data)} bytes)")
    try:
        key = serialization.load_pem_public_key(data)
    except UnsupportedAlgorithm as exc:
        raise UnsupportedKeyError(f"{source}: unsupported key algorithm ({exc})") from exc
    except ValueError as exc:
        raise KeyFormatError(f"{source}: not a PEM public key ({exc})") from exc
    if isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        try:
            key_kind(key)
        except UnsupportedKeyError as exc:
            raise UnsupportedKeyError(f"{source}: {exc}") from exc
        return key
    raise UnsupportedKeyError(
        f"{source}: unsupported public key type {type(key).__name__}: use ECDSA P-256/P-384 or Ed25519"
    )


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Read a PEM public key file."""
    return load_public_key_pem(_read_key_file(Path(path)), source=str(path))


def _read_key_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFormatError(f"{path}: cannot read key file: {exc.strerror or exc}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFormatError(f"{path}: too large to be a key file")
    return data


def sign_message(key: PrivateKey, message: bytes) -> bytes:
    """Sign ``message``: ECDSA (DER signature, hash by curve size) or pure Ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    kind = key_kind(key)
    algo = next(h for k, h in _EC_KINDS.values() if k == kind)
    return key.sign(message, ec.ECDSA(algo()))


def verify_message(key: PublicKey, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` is ``key``'s signature over ``message``; never raises for a bad one."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            kind = key_kind(key)
            algo = next(h for k, h in _EC_KINDS.values() if k == kind)
            key.verify(signature, message, ec.ECDSA(algo()))
    except (InvalidSignature, ValueError):
        return False
    return True
