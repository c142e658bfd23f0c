"""The Python client of mir (what the ``mir`` CLI uses), built on httpx.

Push hashes locally, opens the version, uploads only the blobs the server
lacks, then commits. Pull downloads each file to a temp file while hashing it
and only renames it into place when the digest matches the manifest: the
client never takes the server's word for content.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from registry.config import load_credentials
from registry.names import Ref, parse_ref
from registry.progress import Advance, NoProgress, Progress
from signing.hashing import hash_directory
from signing.manifest import Manifest
from signing.paths import validate_relative_path

CHUNK = 1 << 20
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=300.0)


class MirError(Exception):
    """An error answered by the registry (or a failed local check), with a stable code."""

    def __init__(self, code: str, message: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.status = status
        self.detail = detail


class MirClient:
    """Talks to one registry with one token. URL and token default to the saved credentials."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT
    ) -> None:
        creds = load_credentials()
        self.url = (url or creds.url).rstrip("/")
        self.token = token if token is not None else creds.token
        headers = {"User-Agent": "mir-client/0.1"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MirClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise MirError("unreachable", f"cannot reach the registry at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    # -- reads --------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return dict(self.json("GET", "/v1/health"))

    def whoami(self) -> dict[str, Any]:
        return dict(self.json("GET", "/v1/whoami"))

    def list_artifacts(self, namespace: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        after = 0
        while True:
            params: dict[str, Any] = {"after": after, "limit": 500}
            if namespace:
                params["namespace"] = namespace
            if kind:
                params["kind"] = kind
            page = self.json("GET", "/v1/artifacts", params=params)
            items.extend(page["items"])
            if page["next"] is None:
                return items
            after = page["next"]

    def show_artifact(self, repo: str) -> dict[str, Any]:
        ref = parse_ref(repo)
        return dict(self.json("GET", f"/v1/artifacts/{ref.repo}"))

    def show_version(self, reference: str | Ref) -> dict[str, Any]:
        ref = parse_ref(reference) if isinstance(reference, str) else reference
        return dict(self.json("GET", f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or 'latest')}"))

    # -- aliases and tokens -------------------------------------------------------------------------

    def set_alias(self, repo: str, alias: str, version: str, reason: str | None = None) -> dict[str, Any]:
        body = {"version": version, "reason": reason}
        return dict(self.json("PUT", f"/v1/artifacts/{parse_ref(repo).repo}/aliases/{alias}", json=body))

    def delete_alias(self, repo: str, alias: str) -> None:
        self.request("DELETE", f"/v1/artifacts/{parse_ref(repo).repo}/aliases/{alias}")

    def alias_history(self, repo: str, alias: str) -> list[dict[str, Any]]:
        return list(self.json("GET", f"/v1/artifacts/{parse_ref(repo).repo}/aliases/{alias}/history"))

    def create_token(self, name: str, scopes: list[str], expires_in_days: int | None = None) -> dict[str, Any]:
        body = {"name": name, "scopes": scopes, "expires_in_days": expires_in_days}
        return dict(self.json("POST", "/v1/tokens", json=body))

    def list_tokens(self) -> list[dict[str, Any]]:
        return list(self.json("GET", "/v1/tokens"))

    def revoke_token(self, token_id: int, reason: str | None = None) -> dict[str, Any]:
        return dict(self.json("POST", f"/v1/tokens/{token_id}/revoke", json={"reason": reason}))

    # -- push ---------------------------------------------------------------------------------------

    def open_version(
        self, reference: str, manifest: Manifest, *, kind: str = "model", description: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        ref = parse_ref(reference, require_ref=True)
        body = {"version": ref.ref, "kind": kind, "manifest": manifest.to_dict(), "description": description, **extra}
        return dict(self.json("POST", f"/v1/artifacts/{ref.repo}/versions", json=body))

    def upload_blob(self, reference: str, digest: str, path: Path, advance: Advance | None = None) -> dict[str, Any]:
        ref = parse_ref(reference, require_ref=True)
        size = path.stat().st_size
        url = f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or '')}/blobs/{digest}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        return dict(self.json("PUT", url, content=_read_chunks(path, advance), headers=headers))

    def commit(self, reference: str) -> dict[str, Any]:
        ref = parse_ref(reference, require_ref=True)
        return dict(self.json("POST", f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or '')}/commit"))

    def abort(self, reference: str) -> None:
        ref = parse_ref(reference, require_ref=True)
        self.request("DELETE", f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or '')}")

    def push(
        self,
        directory: str | Path,
        reference: str,
        *,
        kind: str = "model",
        description: str | None = None,
        progress: Progress | None = None,
        parallel_uploads: int = 4,
        manifest: Manifest | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Hash, open, upload what is missing, commit. Safe to re-run after a crash: it resumes."""
        progress = progress or NoProgress()
        root = Path(directory)
        if manifest is None:
            manifest = hash_directory(root)
        opened = self.open_version(reference, manifest, kind=kind, description=description, **extra)
        missing = set(opened["missing"])
        todo: dict[str, tuple[Path, int]] = {}
        for entry in manifest.files:
            if entry.digest in missing and entry.digest not in todo:
                todo[entry.digest] = (root / entry.path, entry.size)
        advance = progress.task(f"upload {len(todo)} file(s)", sum(size for _p, size in todo.values()))
        with ThreadPoolExecutor(max_workers=max(1, parallel_uploads)) as pool:
            futures = [pool.submit(self.upload_blob, reference, d, p, advance) for d, (p, _s) in todo.items()]
            for future in futures:
                future.result()
        committed = self.commit(reference)
        committed["uploaded_blobs"] = len(todo)
        committed["reused_blobs"] = len({f.digest for f in manifest.files}) - len(todo)
        return committed

    # -- pull ---------------------------------------------------------------------------------------

    def pull(self, reference: str, directory: str | Path, *, progress: Progress | None = None) -> dict[str, Any]:
        """Download a version into ``directory``, verifying every file against the manifest digest."""
        progress = progress or NoProgress()
        version = self.show_version(reference)
        ref = parse_ref(reference)
        manifest = Manifest.from_dict({"files": version["files"]})  # re-validates paths from the server
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        advance = progress.task(f"download {len(manifest.files)} file(s)", manifest.total_size)
        fetched = 0
        for entry in manifest.files:
            target = _safe_target(root, entry.path)
            if target.is_file() and target.stat().st_size == entry.size and _sha256_file(target) == entry.digest:
                advance(entry.size)
                continue
            url = f"/v1/artifacts/{ref.repo}/versions/{quote(version['version'])}/files/{quote(entry.path)}"
            self._download(url, target, entry.digest, entry.size, advance)
            fetched += 1
        return {**version, "downloaded_files": fetched}

    def _download(self, url: str, target: Path, digest: str, size: int, advance: Advance) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.mir-part")
        hasher = hashlib.sha256()
        written = 0
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                with open(tmp, "wb") as fh:
                    for chunk in response.iter_raw(CHUNK):
                        written += len(chunk)
                        if written > size:
                            raise MirError("size_mismatch", f"{target}: server sent more than {size} bytes")
                        hasher.update(chunk)
                        fh.write(chunk)
                        advance(len(chunk))
                    fh.flush()
                    os.fsync(fh.fileno())
            actual = "sha256:" + hasher.hexdigest()
            if written != size or actual != digest:
                raise MirError(
                    "digest_mismatch",
                    f"{target}: downloaded content ({written} bytes, {actual}) does not match the manifest "
                    f"({size} bytes, {digest}); nothing was written",
                )
            os.replace(tmp, target)
        except httpx.TransportError as exc:
            raise MirError("unreachable", f"download of {target.name} failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)


def _read_chunks(path: Path, advance: Advance | None) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            if advance is not None:
                advance(len(chunk))
            yield chunk


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def _safe_target(root: Path, relative: str) -> Path:
    """Where a manifest path lands under ``root``; refuses anything that would escape it (e.g. via symlinks)."""
    validate_relative_path(relative)
    resolved_root = root.resolve()
    target = (root / relative).resolve()
    if resolved_root != target and resolved_root not in target.parents:
        raise MirError("invalid_path", f"{relative!r} would be written outside {root}")
    if (root / relative).is_symlink():
        raise MirError("invalid_path", f"{relative!r} is a symlink in the target directory; refusing to follow it")
    return root / relative


def _error_from(response: httpx.Response) -> MirError:
    try:
        body = response.json()
        err = body["error"]
        return MirError(str(err["code"]), str(err["message"]), response.status_code, err)
    except (ValueError, KeyError, TypeError):
        return MirError("http_error", f"HTTP {response.status_code} from {response.request.url}", response.status_code)
