"""The registry's own signing key: countersignatures, tree heads, verification receipts.

Generated on first start (ECDSA P-256: accepted by OpenSSF model-signing and by
our tree-head format), stored in the database as encrypted PKCS#8 so that every
replica shares it; the passphrase comes from ``MIR_SIGNING_PASSPHRASE`` or a
0600 file under the data directory. The private key is never logged or served.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.core.settings import Settings
from registry.core.tables import RegistryKey
from signing.keys import (
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_id,
    load_private_key_pem,
    private_key_to_pem,
    public_key_to_pem,
)

KEY_KIND = "ecdsa-p256"


@dataclass(frozen=True)
class RegistrySigner:
    private_key: PrivateKey
    public_key: PublicKey
    key_id: str
    public_pem: str


def _passphrase(settings: Settings) -> str:
    if settings.signing_passphrase:
        return settings.signing_passphrase
    path = settings.data_dir / "secrets" / "registry-key.passphrase"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Path(path).read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def load_or_create(session: Session, settings: Settings) -> RegistrySigner:
    """The active registry key, creating it on first start (the oldest unretired key wins a race)."""
    passphrase = _passphrase(settings)
    row = _active(session)
    if row is None:
        private = generate_private_key(KEY_KIND)
        public = private.public_key()
        candidate = RegistryKey(
            key_id=key_id(public),
            algorithm=KEY_KIND,
            public_pem=public_key_to_pem(public).decode(),
            encrypted_private_pem=private_key_to_pem(private, passphrase).decode(),
        )
        try:
            with session.begin_nested():
                session.add(candidate)
        except IntegrityError:
            pass
        row = _active(session)
        assert row is not None
    private = load_private_key_pem(row.encrypted_private_pem.encode(), passphrase, source="registry key")
    return RegistrySigner(private, private.public_key(), row.key_id, row.public_pem)


def _active(session: Session) -> RegistryKey | None:
    return session.scalar(
        select(RegistryKey).where(RegistryKey.retired_at.is_(None)).order_by(RegistryKey.created_at).limit(1)
    )
