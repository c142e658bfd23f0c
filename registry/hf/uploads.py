"""Before a commit: which files travel inline, which through LFS, and the self-authorizing upload URLs.

The client PUTs LFS content to the ``href`` we hand out *without* any
Authorization header, so the URL itself carries the permission: an HMAC-SHA256
(server secret) over the object id, its size, the namespace, an expiry and the
id of the token that asked for it. The upload handler checks the signature and
that this token is still valid and may still write the namespace (a revoked
token's URLs stop working at once), then streams the body into the blob store,
which refuses content that does not hash to the oid or has the wrong size.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from registry.artifacts.holdings import CanRead, missing_for_push
from registry.artifacts.models import Version
from registry.auth.models import ApiToken
from registry.auth.tokens import Principal
from registry.core.blob_stores import BlobStore, read_all
from registry.core.tables import utcnow
from registry.hf.ids import SHA256_HEX, git_blob_sha1
from signing.paths import InvalidPathError, validate_relative_path

UPLOAD_PREFIX = "/api/mir-lfs/"
STREAMED_PATH = re.compile(r"^/api/mir-lfs/[0-9a-f]{64}$")
_DOMAIN = b"mir-hf-lfs-upload-v2\n"
_INT = re.compile(r"^[0-9]{1,20}$")


class UploadSignatureError(ValueError):
    """An upload URL whose signature is missing, altered or expired."""


def sign_upload(secret: bytes, oid: str, size: int, namespace: str, expires: int, token_id: int) -> str:
    message = _DOMAIN + f"{oid}\n{size}\n{namespace}\n{expires}\n{token_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_upload_url(
    base: str, secret: bytes, oid: str, size: int, namespace: str, *, token_id: int, now: float, ttl: int
) -> str:
    expires = int(now) + ttl
    signature = sign_upload(secret, oid, size, namespace, expires, token_id)
    query = urlencode({"size": size, "ns": namespace, "exp": expires, "tok": token_id, "sig": signature})
    return f"{base}{UPLOAD_PREFIX}{oid}?{query}"


def check_upload_signature(
    secret: bytes, oid: str, size: str, namespace: str, expires: str, signature: str, *, token: str, now: float
) -> int:
    """The signed size if the URL is genuine and unexpired; UploadSignatureError otherwise.

    The caller must still check that token ``token`` is valid and may write ``namespace``
    (:func:`check_upload_token`): the signature only proves that it once could.
    """
    if not all(_INT.fullmatch(v) for v in (size, expires, token)) or not SHA256_HEX.fullmatch(oid):
        raise UploadSignatureError("malformed upload URL")
    expected = sign_upload(secret, oid, int(size), namespace, int(expires), int(token))
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise UploadSignatureError("upload URL signature does not match; ask the batch endpoint for a new one")
    if int(expires) < now:
        raise UploadSignatureError("upload URL has expired; ask the batch endpoint for a new one")
    return int(size)


def check_upload_token(session: Session, token_id: int, namespace: str) -> None:
    """The token an upload URL was issued to must still be unrevoked, unexpired and allowed to write."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        raise UploadSignatureError("the token this upload URL was issued to has been revoked")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise UploadSignatureError("the token this upload URL was issued to has expired")
    if not Principal(token_id=row.id, name=row.name, scopes=frozenset(row.scopes)).can_write(namespace):
        raise UploadSignatureError(f"the token this upload URL was issued to may no longer write to {namespace}")


# -- preupload ------------------------------------------------------------------------------------------


def _remote_oid(blobs: BlobStore, entry: Any, size: int, regular: bool) -> str | None:
    """What the client compares with its local oid to skip unchanged files: sha256 (LFS) or git sha1 (regular)."""
    if entry is None or entry.size != size:
        return None
    if not regular:
        return str(entry.digest).removeprefix("sha256:")
    try:
        return git_blob_sha1(read_all(blobs, entry.digest, size))
    except (OSError, ValueError):
        return None


def preupload_modes(
    blobs: BlobStore, parent: Version | None, files: Sequence[Any], regular_max: int, inline_budget: int
) -> list[dict[str, Any]]:
    """``uploadMode`` per file: ``regular`` (inline in the commit) up to ``regular_max`` bytes, else ``lfs``.

    Inline content is capped at ``inline_budget`` bytes per answer (the commit body is parsed in memory);
    files past the budget go through LFS whatever their size. The client always sends empty files inline.
    """
    current = {f.path: f for f in parent.files} if parent is not None else {}
    answer = []
    inline = 0
    for item in files:
        try:
            validate_relative_path(item.path)
        except InvalidPathError as exc:
            raise ValueError(f"{item.path!r}: {exc}") from exc
        regular = item.size == 0 or (item.size <= regular_max and inline + item.size <= inline_budget)
        inline += item.size if regular else 0
        answer.append(
            {
                "path": item.path,
                "uploadMode": "regular" if regular else "lfs",
                "shouldIgnore": False,
                "oid": _remote_oid(blobs, current.get(item.path), item.size, regular),
            }
        )
    return answer


# -- LFS batch -----------------------------------------------------------------------------------------


def _echo(oid: object) -> str:
    """The oid as sent, when it can be written back as JSON text (a lone surrogate such as \\ud800 cannot)."""
    if not isinstance(oid, str):
        return ""
    try:
        oid.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return oid


def _object_error(oid: object, size: object, code: int, message: str) -> dict[str, Any]:
    return {
        "oid": _echo(oid),
        "size": size if isinstance(size, int) else 0,
        "error": {"code": code, "message": message},
    }


def batch_objects(
    session: Session,
    blobs: BlobStore,
    objects: Sequence[Any],
    *,
    base: str,
    secret: bytes,
    namespace: str,
    can_read: CanRead,
    token_id: int,
    ttl: int,
    max_size: int,
    now: float,
) -> list[dict[str, Any]]:
    """Git-LFS batch answer: no ``actions`` for objects the namespace holds (the client skips them), signed URLs
    for the rest. Objects stored only under namespaces the caller cannot read are asked for like new ones."""
    answer: list[dict[str, Any]] = []
    wanted: dict[str, int] = {}
    for obj in objects:
        oid = obj.get("oid") if isinstance(obj, dict) else None
        size = obj.get("size") if isinstance(obj, dict) else None
        if not isinstance(oid, str) or not SHA256_HEX.fullmatch(oid):
            answer.append(_object_error(oid, size, 422, f"invalid oid {str(oid)[:80]!r}: expected 64 lowercase hex"))
        elif not isinstance(size, int) or isinstance(size, bool) or size < 0:
            answer.append(_object_error(oid, size, 422, f"invalid size for {oid}"))
        elif size > max_size:
            answer.append(_object_error(oid, size, 422, f"{oid} is larger than the registry's blob limit"))
        else:
            wanted[oid] = size
            answer.append({"oid": oid, "size": size})
    missing = set(missing_for_push(session, blobs, namespace, {f"sha256:{o}": n for o, n in wanted.items()}, can_read))
    for item in answer:
        if "error" in item:
            continue
        digest, size = f"sha256:{item['oid']}", item["size"]
        if digest not in missing:
            continue
        href = signed_upload_url(base, secret, item["oid"], size, namespace, token_id=token_id, now=now, ttl=ttl)
        item["authenticated"] = True
        item["actions"] = {
            "upload": {"href": href, "expires_in": ttl},
            "verify": {"href": f"{base}{UPLOAD_PREFIX}{item['oid']}/verify?{urlencode({'ns': namespace})}"},
        }
    return answer
