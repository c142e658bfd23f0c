"""The Python client of mir (what the ``mir`` CLI uses), built on httpx.

Push hashes locally, opens the version, uploads only the blobs the server
lacks, then commits. Pull downloads each file to a temp file while hashing it
and only renames it into place when the digest matches the manifest: the
client never takes the server's word for content.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from registry.client.config import load_credentials
from registry.client.download import PART, DownloadError, Endpoint, FileJob, download_file
from registry.client.early_upload import EARLY_MIN, ChangedWhilePushed, EarlyUploads, Settled
from registry.client.progress import Advance, NoProgress, Progress
from registry.client.upload import UploadNetworkError, send_file
from registry.core.names import Ref, parse_ref
from registry.core.parent_specs import parse_parent_spec
from signing.hashing import HashProgress, hash_directory, hash_file
from signing.keys import PrivateKey
from signing.manifest import FileEntry, Manifest
from signing.paths import validate_relative_path
from signing.sign import sign_manifest
from signing.tree import TreeFile

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
        self._read_timeout = timeout.read or 300.0
        self._headers = headers
        self._registry_confirmed = False

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
            if response.status_code in (404, 405) and not self._answers_as_registry():
                raise self._not_a_registry(f"{method} {path} got HTTP {response.status_code}")
            raise _error_from(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise self._not_a_registry(f"{method} {path} answered something that is not JSON") from None

    def _answers_as_registry(self) -> bool:
        """Whether GET /v1/health answers the way mir does: asked only after a 404, to tell a missing
        artifact from a URL that points somewhere else (a wrong path prefix, another web server)."""
        if self._registry_confirmed:
            return True
        try:
            response = self._http.get("/v1/health")
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return False
        self._registry_confirmed = (
            response.status_code == 200 and isinstance(body, dict) and body.get("service") == "mir"
        )
        return self._registry_confirmed

    def _not_a_registry(self, what: str) -> MirError:
        return MirError(
            "not_a_registry",
            f"{self.url} does not answer as a mir registry ({what}, and GET {self.url}/v1/health did not answer "
            "as mir). Check MIR_URL, or run `mir login URL` with the registry's address",
        )

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

    # -- keys and signatures -------------------------------------------------------------------------

    def register_key(self, namespace: str, public_pem: str, label: str = "", artifacts: str = "*") -> dict[str, Any]:
        body = {"public_key": public_pem, "label": label, "artifacts": artifacts}
        return dict(self.json("POST", f"/v1/namespaces/{namespace}/keys", json=body))

    def list_keys(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.json("GET", f"/v1/namespaces/{namespace}/keys"))

    def revoke_key(self, namespace: str, key_id: str, reason: str) -> dict[str, Any]:
        return dict(self.json("POST", f"/v1/namespaces/{namespace}/keys/{key_id}/revoke", json={"reason": reason}))

    def signatures(self, reference: str) -> list[dict[str, Any]]:
        ref = parse_ref(reference)
        return list(self.json("GET", f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or 'latest')}/signatures"))

    def add_signature(self, reference: str, envelope: dict[str, Any]) -> dict[str, Any]:
        ref = parse_ref(reference)
        url = f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or 'latest')}/signatures"
        return dict(self.json("POST", url, json={"envelope": envelope}))

    # -- lineage and quarantine ---------------------------------------------------------------------

    def _version_url(self, reference: str | Ref, suffix: str = "") -> str:
        ref = parse_ref(reference) if isinstance(reference, str) else reference
        return f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or 'latest')}{suffix}"

    def lineage_page(
        self, reference: str, *, direction: str = "up", depth: int = 10, limit: int = 500, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of ancestors (``up``) or descendants (``down``): edges with attributes, and their nodes."""
        params: dict[str, Any] = {"direction": direction, "depth": depth, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        return dict(self.json("GET", self._version_url(reference, "/lineage"), params=params))

    def lineage(self, reference: str, *, direction: str = "up", depth: int = 10) -> dict[str, Any]:
        """Every page of a walk, merged: ``{"root", "direction", "depth", "edges", "nodes"}``."""
        page = self.lineage_page(reference, direction=direction, depth=depth, limit=1000)
        merged = {**page, "edges": list(page["edges"]), "nodes": dict(page["nodes"])}
        while page["next"]:
            page = self.lineage_page(reference, direction=direction, depth=depth, limit=1000, cursor=page["next"])
            merged["edges"].extend(page["edges"])
            merged["nodes"].update(page["nodes"])
        merged.pop("next", None)
        return merged

    def add_lineage(
        self, reference: str, edge_type: str, parent: str | dict[str, Any], attributes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add an edge to a committed version. ``parent``: ``ns/name@version``, ``hf:org/name@<sha>``,
        ``https://...#sha256=<hex>``, or a ``{"ref": ...}`` / ``{"external": {...}}`` body."""
        try:
            body_parent = parse_parent_spec(parent) if isinstance(parent, str) else parent
        except ValueError as exc:
            raise MirError("invalid_lineage", str(exc)) from exc
        body = {"type": edge_type, "parent": body_parent, "attributes": attributes or {}}
        return dict(self.json("POST", self._version_url(parse_ref(reference, require_ref=True), "/lineage"), json=body))

    def lineage_path(self, reference: str, other: str, *, max_depth: int = 100) -> dict[str, Any]:
        params = {"to": other, "max_depth": max_depth}
        return dict(self.json("GET", self._version_url(reference, "/lineage/path"), params=params))

    def impact(self, reference: str) -> dict[str, Any]:
        """Every committed descendant (all pages) and every alias pointing at one of them or at this version."""
        page = dict(self.json("GET", self._version_url(reference, "/impact"), params={"limit": 1000}))
        versions = list(page["versions"])
        while page["next"]:
            params = {"limit": 1000, "cursor": page["next"]}
            page = dict(self.json("GET", self._version_url(reference, "/impact"), params=params))
            versions.extend(page["versions"])
        return {**page, "versions": versions, "next": None}

    def export_lineage(self, reference: str, fmt: str = "prov", *, direction: str = "up", depth: int = 100) -> Any:
        """The ancestors (``up``) or descendants (``down``) as a PROV-JSON document (``prov``) or a list of
        OpenLineage RunEvents (``openlineage``)."""
        params = {"format": fmt, "direction": direction, "depth": depth}
        return self.json("GET", self._version_url(reference, "/lineage/export"), params=params)

    def quarantine_status(self, reference: str) -> dict[str, Any]:
        return dict(self.json("GET", self._version_url(reference, "/quarantine")))

    def quarantine(self, reference: str, reason: str) -> dict[str, Any]:
        ref = parse_ref(reference, require_ref=True)
        return dict(self.json("POST", self._version_url(ref, "/quarantine"), json={"reason": reason}))

    def unquarantine(self, reference: str, reason: str) -> dict[str, Any]:
        ref = parse_ref(reference, require_ref=True)
        return dict(self.json("POST", self._version_url(ref, "/quarantine/lift"), json={"reason": reason}))

    def list_quarantines(self, *, active: bool = True) -> list[dict[str, Any]]:
        return list(self.json("GET", "/v1/quarantines", params={"active": active}))

    # -- push ---------------------------------------------------------------------------------------

    def open_version(
        self, reference: str, manifest: Manifest, *, kind: str = "model", description: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        ref = parse_ref(reference, require_ref=True)
        body = {"version": ref.ref, "kind": kind, "manifest": manifest.to_dict(), "description": description, **extra}
        return dict(self.json("POST", f"/v1/artifacts/{ref.repo}/versions", json=body))

    def upload_blob(self, reference: str, digest: str, path: Path, advance: Advance | None = None) -> dict[str, Any]:
        ref = parse_ref(reference, require_ref=True)
        url = f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or '')}/blobs/{digest}"
        endpoint = self._endpoint()
        try:
            answer = send_file(endpoint, "PUT", url, path, advance)
        except UploadNetworkError as exc:
            raise MirError("unreachable", f"upload of {path.name} to {self.url} failed: {exc}") from exc
        if answer.status >= 400:
            err = _download_error(answer.status, answer.body, "")
            if err.code == "http_error" and answer.status in (404, 405) and not self._answers_as_registry():
                raise self._not_a_registry(f"PUT {url} got HTTP {answer.status}")
            raise MirError(err.code, err.message, err.status, err.detail)
        try:
            return dict(json.loads(answer.body))
        except ValueError:
            raise self._not_a_registry(f"PUT {url} answered something that is not JSON") from None

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
        sign_with: PrivateKey | None = None,
        inline_small_files: bool = True,
        upload_while_hashing: bool = True,
        hash_progress: HashProgress | None = None,
        check_paths: Callable[[list[str]], None] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Hash, (sign,) open, upload what is missing, commit. Safe to re-run after a crash: it resumes.

        Small files (``INLINE_FILE_MAX`` each, ``INLINE_TOTAL_MAX`` in all) travel inside the open request, and a
        version made only of them is opened, stored and committed by that one request. Unless a ``manifest`` is
        given or ``upload_while_hashing`` is off, large files start uploading while the tree is hashed (see
        ``registry.client.early_upload``); ``hash_progress`` and ``check_paths`` go to ``hash_directory``."""
        progress = progress or NoProgress()
        root = Path(directory)
        early: EarlyUploads | None = None
        if manifest is None:
            if upload_while_hashing:
                early = EarlyUploads(self._endpoint(), parse_ref(reference).namespace, parallel_uploads)
            try:
                manifest = hash_directory(root, progress=hash_progress, check_paths=check_paths,
                                          on_listed=self._early_starter(early, reference))
            except BaseException:
                if early is not None:
                    early.cancel()
                raise
        try:
            return self._push_hashed(root, reference, manifest, early, progress, parallel_uploads, sign_with,
                                     inline_small_files, kind=kind, description=description, **extra)
        except BaseException:
            if early is not None:
                early.cancel()
            raise

    def _early_starter(self, early: EarlyUploads | None, reference: str) -> Callable[[list[TreeFile]], None]:
        """Starts the early uploads once the tree is listed, skipping files the latest version has as they are."""

        def start(files: list[TreeFile]) -> None:
            if early is not None and any(f.size >= EARLY_MIN for f in files):
                early.start(files, self._latest_files(reference))

        return start

    def _latest_files(self, reference: str) -> set[tuple[str, int]]:
        """(path, size) of each file of the artifact's latest version; none when it has none (or is unreadable)."""
        try:
            latest = self.show_version(parse_ref(reference).repo)
        except MirError:
            return set()
        return {(str(f["path"]), int(f["size"])) for f in latest.get("files", ())}

    def _push_hashed(
        self, root: Path, reference: str, manifest: Manifest, early: EarlyUploads | None, progress: Progress,
        parallel_uploads: int, sign_with: PrivateKey | None, inline_small_files: bool, **fields: Any,
    ) -> dict[str, Any]:
        manifest.check_portable()
        if not manifest.files:
            raise MirError("empty_manifest", f"{root} holds no files to push; a version needs at least one")
        if sign_with is not None:
            envelope = sign_manifest(manifest, sign_with, model_name=parse_ref(reference).repo)
            fields["signatures"] = [*fields.get("signatures", []), envelope.to_dict()]
        inline = _small_files(root, manifest) if inline_small_files else {}
        if early is not None:
            early.opening()
        opened = self._open_for_push(reference, manifest, inline, **fields)
        sent_inline = list(opened.get("inline_stored", ()))  # inline contents the registry did not hold
        missing = set() if opened.get("committed") else set(opened["missing"])
        digest_of = {entry.path: entry.digest for entry in manifest.files}
        awaited = {digest_of[path] for path in (early.paths if early else ()) if digest_of.get(path) in missing}
        todo: dict[str, tuple[Path, int]] = {}
        for entry in manifest.files:
            if entry.digest in missing and entry.digest not in awaited and entry.digest not in todo:
                todo[entry.digest] = (root / entry.path, entry.size)
        sizes = {entry.digest: entry.size for entry in manifest.files}
        sent_early: set[str] = set()
        if sent_inline:
            progress.note(f"upload {len(sent_inline)} file(s): small, sent with the manifest")
        if todo or awaited:
            advance = progress.task(f"upload {len(todo) + len(awaited)} file(s)",
                                    sum(sizes[d] for d in {*todo, *awaited}))
            with ThreadPoolExecutor(max_workers=max(1, parallel_uploads)) as pool:
                futures = [pool.submit(self.upload_blob, reference, d, p, advance) for d, (p, _s) in todo.items()]
                if early is not None:
                    settled = self._settle(early, digest_of, missing, advance)
                    sent_early = set(settled.sent.values()) | {digest_of[path] for path in settled.still_missing}
                    futures += [pool.submit(self.upload_blob, reference, digest_of[path], root / path, advance)
                                for path in settled.still_missing]
                for future in futures:
                    future.result()
        else:
            if early is not None:
                sent_early = set(self._settle(early, digest_of, missing, lambda _n: None).sent.values())
            if not sent_inline and not sent_early:
                progress.note(f"nothing to upload: all {len(manifest.files)} file(s) already stored")
        committed = dict(opened["version"]) if opened.get("committed") else self.commit(reference)
        uploaded = {*todo, *sent_inline, *sent_early}
        committed["uploaded_blobs"] = len(uploaded)
        committed["reused_blobs"] = len(sizes) - len(uploaded)
        return committed

    @staticmethod
    def _settle(early: EarlyUploads, digest_of: dict[str, str], missing: set[str], advance: Advance) -> Settled:
        try:
            return early.settle(digest_of, missing, advance)
        except ChangedWhilePushed as exc:
            raise MirError("file_changed", str(exc)) from exc

    def _endpoint(self) -> Endpoint:
        return Endpoint(self.url, dict(self._headers), self._read_timeout)

    def _open_for_push(
        self, reference: str, manifest: Manifest, inline: dict[str, str], **fields: Any
    ) -> dict[str, Any]:
        """Open the version, sending the small files with it; when they are all its files, it commits too."""
        if not inline:
            return self.open_version(reference, manifest, **fields)
        everything = len(inline) == len({f.digest for f in manifest.files})
        try:
            return self.open_version(reference, manifest, inline=inline, commit=everything, **fields)
        except MirError as exc:
            if exc.status != 422 or "inline" not in exc.message:  # only "unknown field": an older registry
                raise
        return self.open_version(reference, manifest, **fields)  # a registry from before inline contents

    # -- pull ---------------------------------------------------------------------------------------

    def pull(
        self,
        reference: str,
        directory: str | Path,
        *,
        progress: Progress | None = None,
        override_quarantine: bool = False,
        parallel_downloads: int = 4,
        connections: int | None = None,
        part_size: int = PART,
        force: bool = False,
    ) -> dict[str, Any]:
        """Download a version into ``directory``, verifying every file against the manifest digest.

        Up to ``parallel_downloads`` files at once, over at most ``connections`` connections (default: one per
        core, 2 to 8; each hashes on a core of its own): a large file is fetched in parallel byte ranges of
        ``part_size`` (see ``registry.client.download``), each byte hashed as it arrives.

        A quarantined version is refused before anything is written unless ``override_quarantine`` (admin
        tokens only; the registry audits it). The result's ``quarantine`` says whether it is affected.

        ``directory`` must be empty or hold only paths of this version: then files that already verify are
        skipped (an interrupted pull resumes) and the others are replaced (``replaced_files``). Other files make
        the pull refuse (``directory_not_empty``) unless ``force``: they are then left as they are and listed in
        ``extra_files``. A directory or special file where a version's file goes is always refused.
        """
        progress = progress or NoProgress()
        version = self.show_version(reference)
        ref = parse_ref(reference)
        flagged = version.get("quarantine")
        if flagged and flagged.get("status") == "quarantined" and not override_quarantine:
            first = flagged["sources"][0]
            raise MirError(
                "version_quarantined",
                f"{version['artifact']}@{version['version']} is quarantined: {first.get('reason')} "
                f"(by {first.get('by')} at {first.get('at')}); nothing was downloaded",
                403,
                {"quarantine": flagged},
            )
        query = "?override_quarantine=true" if override_quarantine else ""
        manifest = Manifest.from_dict({"files": version["files"]})  # re-validates paths from the server
        root = Path(directory)
        label = f"{version['artifact']}@{version['version']}"
        extras = _check_pull_target(root, manifest, label, force=force)
        root.mkdir(parents=True, exist_ok=True)
        advance = progress.task(f"download {len(manifest.files)} file(s)", manifest.total_size)
        targets = [(entry, _safe_target(root, entry.path)) for entry in manifest.files]  # all checked before I/O
        replaced: list[str] = []
        endpoint = self._endpoint()
        files_at_once = max(1, min(parallel_downloads, len(targets)))
        if connections is None:
            connections = max(2, min(8, os.cpu_count() or 2))
        streams = max(1, connections // files_at_once)

        def fetch(entry: FileEntry, target: Path) -> bool:
            existed = target.is_file()
            if existed and target.stat().st_size == entry.size and hash_file(target) == entry.digest:
                advance(entry.size)
                return False
            url = f"/v1/artifacts/{ref.repo}/versions/{quote(version['version'])}/files/{quote(entry.path)}{query}"
            try:
                download_file(endpoint, FileJob(url, target, entry.digest, entry.size), advance, _download_error,
                              streams=streams, part_size=part_size)
            except DownloadError as exc:
                raise MirError(exc.code, exc.message, exc.status, exc.detail) from exc
            if existed:
                replaced.append(entry.path)
            return True

        # Several files at once (largest first), like the upload side: one stream rarely fills the link.
        order = sorted(targets, key=lambda t: t[0].size, reverse=True)
        with ThreadPoolExecutor(max_workers=files_at_once) as pool:
            fetched = sum(f.result() for f in [pool.submit(fetch, e, t) for e, t in order])
        return {**version, "downloaded_files": fetched, "replaced_files": sorted(replaced), "extra_files": extras}


def _part_name(path: str) -> str:
    """The temp file a download of ``path`` goes through (left behind only if the pull was killed)."""
    head, _, name = path.rpartition("/")
    return f"{head}/.{name}.mir-part" if head else f".{name}.mir-part"


def _local_files(root: Path) -> list[str]:
    """Every non-directory entry under ``root`` (symlinks listed, not followed), as relative POSIX paths."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]
        found.extend((here / name).relative_to(root).as_posix() for name in [*filenames, *links])
    return sorted(found)


def _check_pull_target(root: Path, manifest: Manifest, label: str, *, force: bool) -> list[str]:
    """Refuse a pull that would write over things that are not this version's files; return the extra files."""
    if root.exists() and not root.is_dir():
        raise MirError("not_a_directory", f"{root} exists and is not a directory; pull into a directory")
    if not root.exists():
        return []
    wanted = {entry.path for entry in manifest.files}
    for path in sorted(wanted):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            spot = root.joinpath(*parts[:depth])
            last = depth == len(parts)
            if spot.is_symlink() or not spot.exists():
                continue
            if last and not spot.is_file():
                raise MirError("path_conflict", f"{spot} is in the way: {path} of {label} is a file, and this is not")
            if not last and not spot.is_dir():
                raise MirError(
                    "path_conflict", f"{spot} is in the way: {label} needs a directory there (for {path})"
                )
    ours = wanted | {_part_name(p) for p in wanted}
    extras = [p for p in _local_files(root) if p not in ours]
    if extras and not force:
        shown = ", ".join(extras[:3]) + (", ..." if len(extras) > 3 else "")
        raise MirError(
            "directory_not_empty",
            f"{root} holds {len(extras)} file(s) that are not part of {label} ({shown}); pull into an empty "
            "directory, or pass --force to write the version's files and leave the others in place",
        )
    return extras


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


def _download_error(status: int, body: bytes, _content_type: str) -> DownloadError:
    """An error answer to a file download, as the registry worded it."""
    try:
        err = json.loads(body)["error"]
        return DownloadError(str(err["code"]), str(err["message"]), status, err)
    except (ValueError, KeyError, TypeError):
        return DownloadError("http_error", f"HTTP {status} for a file download", status)


def _error_from(response: httpx.Response) -> MirError:
    try:
        body = response.json()
        err = body["error"]
        return MirError(str(err["code"]), str(err["message"]), response.status_code, err)
    except (ValueError, KeyError, TypeError):
        return MirError("http_error", f"HTTP {response.status_code} from {response.request.url}", response.status_code)


INLINE_FILE_MAX = 64 << 10  # files up to this size travel inside the open request ...
INLINE_TOTAL_MAX = 1 << 20  # ... as long as they add up to at most this much
INLINE_FILES_MAX = 1000  # and are at most as many as the registry takes in one request


def _small_files(root: Path, manifest: Manifest) -> dict[str, str]:
    """Base64 contents, by digest, of the manifest's small files (smallest first, within the budget): a version
    of small files is pushed in one request instead of three or more. Read now, so a file changed since it was
    hashed is refused by the registry like any upload of the wrong bytes."""
    chosen: dict[str, str] = {}
    total = 0
    for entry in sorted(manifest.files, key=lambda f: (f.size, f.path)):
        if entry.digest in chosen:
            continue
        if entry.size > INLINE_FILE_MAX or total + entry.size > INLINE_TOTAL_MAX or len(chosen) == INLINE_FILES_MAX:
            break
        with (root / entry.path).open("rb") as fh:
            content = fh.read(entry.size + 1)  # a file grown since it was hashed is refused, never read whole
        chosen[entry.digest] = base64.b64encode(content).decode("ascii")
        total += entry.size
    return chosen
