"""Reading a Hugging Face snapshot from disk and checking it against what the HF cache recorded.

Sources, as ``mir import hf SRC`` accepts them:

- a repo id (``org/name``) looked up in the local HF cache with ``scan_cache_dir``;
- a cache repo folder (``.../hub/models--org--name``) or one of its ``snapshots/<commit>``;
- a ``local_dir`` download (``hf download --local-dir``), which keeps per-file
  metadata under ``.cache/huggingface/`` (it does not record the repo id: pass it).

Every file is hashed and compared with the cache's own record of it: the blob
name (64 hex = sha256, 40 hex = git blob sha1 of the content), the ``etag`` of a
``local_dir`` metadata file, and the ``trees/<commit>.json`` listing (sizes,
sha256 / git sha1) where the client wrote one. The tree listing also reveals a
partial snapshot (a file of the commit that was never downloaded). A file with
no record at all cannot be checked and is refused: the import fails closed.

What this proves is that the snapshot is internally consistent, not where it
came from: the cache does not record the endpoint, only the commit the server
announced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signing.hashing import default_workers, run_parallel
from signing.manifest import FileEntry, Manifest
from signing.paths import InvalidPathError, validate_relative_path
from signing.tree import DEFAULT_IGNORE_PATHS, TreeError, is_ignored, list_files

COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
LOCAL_DIR_META = Path(".cache") / "huggingface"
REPO_TYPES = ("model", "dataset", "space")
_CHUNK = 4 << 20


class HfImportError(ValueError):
    """A snapshot that cannot be imported as it is; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What the cache recorded about one file (any field may be unknown)."""

    blob_name: str | None = None
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    record: str = ""


@dataclass(frozen=True, slots=True)
class CandidateFile:
    path: str
    source: Path
    expected: Expected


@dataclass(frozen=True, slots=True)
class CheckedFile:
    path: str
    source: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Snapshot:
    """A verified snapshot: which HF repo and commit, where its files are, and how it was checked."""

    repo_id: str
    repo_type: str
    commit: str
    root: Path
    origin: str
    files: tuple[CheckedFile, ...]
    skipped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    tree_checked: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def manifest(self) -> Manifest:
        return Manifest.from_entries(FileEntry(f.path, f.size, f"sha256:{f.sha256}") for f in self.files)

    def lineage(self) -> dict[str, Any]:
        """The ``imported_from`` declaration: an external Hugging Face node pinned to the commit."""
        return {
            "type": "imported_from",
            "parent": {
                "external": {
                    "kind": "huggingface",
                    "repo": self.repo_id,
                    "revision": self.commit,
                    "repo_type": self.repo_type,
                }
            },
            "attributes": {
                "source": self.origin,
                "files_checked": len(self.files),
                "tree_checked": self.tree_checked,
                "partial": self.partial,
            },
        }


# -- hashing ------------------------------------------------------------------------------------------


def _hash(candidate: CandidateFile) -> CheckedFile:
    """Hash the file once (sha256, plus git sha1 when the record needs it) and compare with every record."""
    exp = candidate.expected
    want_git = exp.git_sha1 is not None or (exp.blob_name is not None and len(exp.blob_name) == 40)
    try:
        with open(candidate.source, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            sha = hashlib.sha256()
            git = hashlib.sha1(b"blob %d\x00" % size, usedforsecurity=False) if want_git else None
            read = 0
            while chunk := fh.read(_CHUNK):
                read += len(chunk)
                sha.update(chunk)
                if git is not None:
                    git.update(chunk)
    except OSError as exc:
        raise HfImportError(f"{candidate.path}: cannot read {candidate.source}: {exc.strerror or exc}") from exc
    if read != size:
        raise HfImportError(f"{candidate.path}: the file changed while it was read")
    sha256 = sha.hexdigest()
    git_sha1 = git.hexdigest() if git is not None else None

    def refuse(what: str, recorded: str, actual: str) -> HfImportError:
        return HfImportError(
            f"refusing to import: {candidate.path} does not match the cache's record ({what}): "
            f"recorded {recorded}, content has {actual}; the cached copy is corrupt or was tampered with"
        )

    if exp.blob_name is not None:
        if SHA256.fullmatch(exp.blob_name) and exp.blob_name != sha256:
            raise refuse(f"blob name in {exp.record}", f"sha256 {exp.blob_name}", f"sha256 {sha256}")
        if COMMIT.fullmatch(exp.blob_name) and exp.blob_name != git_sha1:
            raise refuse(f"blob name in {exp.record}", f"git sha1 {exp.blob_name}", f"git sha1 {git_sha1}")
    if exp.size is not None and exp.size != size:
        raise refuse("tree listing", f"{exp.size} bytes", f"{size} bytes")
    if exp.sha256 is not None and exp.sha256 != sha256:
        raise refuse("tree listing", f"sha256 {exp.sha256}", f"sha256 {sha256}")
    if exp.git_sha1 is not None and exp.git_sha1 != git_sha1:
        raise refuse("tree listing", f"git sha1 {exp.git_sha1}", f"git sha1 {git_sha1}")
    return CheckedFile(candidate.path, candidate.source, size, sha256)


def check_files(candidates: Sequence[CandidateFile], workers: int | None = None) -> list[CheckedFile]:
    for c in candidates:
        known = c.expected
        if not (
            (known.blob_name is not None and (SHA256.fullmatch(known.blob_name) or COMMIT.fullmatch(known.blob_name)))
            or known.sha256 is not None
            or known.git_sha1 is not None
        ):
            raise HfImportError(
                f"refusing to import: {c.path} has no digest recorded by the cache (no blob name, metadata or "
                "tree entry), so it cannot be checked"
            )
    return sorted(run_parallel(_hash, list(candidates), workers or default_workers()), key=lambda f: f.path)


# -- tree listings ------------------------------------------------------------------------------------


def read_tree_listing(path: Path) -> dict[str, Expected] | None:
    """``trees/<commit>.json`` (hub >= 1.22) as path -> Expected; None when absent. Malformed: refused."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise HfImportError(f"{path}: cannot read the tree listing: {exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise HfImportError(f"{path}: the tree listing is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format_version") != 1 or not isinstance(data.get("files"), dict):
        raise HfImportError(f"{path}: not a tree listing of format_version 1")
    listing: dict[str, Expected] = {}
    for name, info in data["files"].items():
        if not isinstance(info, dict):
            raise HfImportError(f"{path}: entry {str(name)[:100]!r} is not an object")
        size, blob_id, lfs = info.get("size"), info.get("blob_id"), info.get("lfs_sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise HfImportError(f"{path}: entry {name!r} has no valid size")
        if lfs is not None and (not isinstance(lfs, str) or not SHA256.fullmatch(lfs)):
            raise HfImportError(f"{path}: entry {name!r} has a malformed lfs_sha256")
        if lfs is None and (not isinstance(blob_id, str) or not COMMIT.fullmatch(blob_id)):
            raise HfImportError(f"{path}: entry {name!r} has neither lfs_sha256 nor a git blob id")
        listing[name] = Expected(
            size=size, sha256=lfs, git_sha1=None if lfs is not None else blob_id, record=f"trees/{path.name}"
        )
    return listing


def _merge(a: Expected, b: Expected | None) -> Expected:
    if b is None:
        return a
    return Expected(a.blob_name, b.size, b.sha256, b.git_sha1, record=a.record or b.record)


def _reconcile(
    present: dict[str, CandidateFile], listing: dict[str, Expected] | None, allow_partial: bool, where: str
) -> tuple[list[CandidateFile], tuple[str, ...], tuple[str, ...]]:
    """Attach tree records to files; find ignored, extra and missing paths."""
    skipped = tuple(sorted(p for p in present if is_ignored(p, DEFAULT_IGNORE_PATHS)))
    files = {p: c for p, c in present.items() if p not in skipped}
    if listing is None:
        return list(files.values()), skipped, ()
    extra = sorted(p for p in files if p not in listing)
    if extra:
        raise HfImportError(
            f"refusing to import: {', '.join(extra[:5])} {'is' if len(extra) == 1 else 'are'} not part of commit "
            f"{where} according to its tree listing"
        )
    missing = tuple(sorted(p for p in listing if p not in files and not is_ignored(p, DEFAULT_IGNORE_PATHS)))
    if missing and not allow_partial:
        raise HfImportError(
            f"partial snapshot: {len(missing)} file(s) of {where} were never downloaded "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); download the whole snapshot "
            "(snapshot_download) or pass --allow-partial"
        )
    merged = [CandidateFile(c.path, c.source, _merge(c.expected, listing.get(p))) for p, c in files.items()]
    return merged, skipped, missing


# -- the HF cache -------------------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def _cache_candidates(revision: Any, cache_root: Path) -> dict[str, CandidateFile]:
    files: dict[str, CandidateFile] = {}
    snapshot = Path(revision.snapshot_path)
    for info in revision.files:
        file_path = Path(info.file_path)
        rel = file_path.relative_to(snapshot).as_posix()
        try:
            validate_relative_path(rel)
        except InvalidPathError as exc:
            raise HfImportError(f"{file_path}: file name not allowed in a manifest: {exc}") from exc
        if not _inside(file_path, cache_root):
            target = os.path.realpath(file_path)
            raise HfImportError(f"refusing to import: {rel} points outside the HF cache ({target})")
        blob_name = Path(info.blob_path).name if file_path.is_symlink() else None
        files[rel] = CandidateFile(rel, file_path, Expected(blob_name=blob_name, record="the cache's blobs/"))
    return files


def _pick_revision(repo: Any, revision: str | None) -> Any:
    revisions = sorted(repo.revisions, key=lambda r: r.commit_hash)
    if revision is not None:
        for rev in revisions:
            if rev.commit_hash == revision or revision in rev.refs:
                return rev
        raise HfImportError(f"{repo.repo_id}: revision {revision!r} is not in the cache")
    for rev in revisions:
        if "main" in rev.refs:
            return rev
    if len(revisions) == 1:
        return revisions[0]
    listed = ", ".join(f"{r.commit_hash[:12]} ({', '.join(sorted(r.refs)) or 'no ref'})" for r in revisions)
    raise HfImportError(f"{repo.repo_id} has {len(revisions)} cached revisions and none is main: {listed}; "
                        "pick one with --revision")


def _scan(cache_dir: Path) -> Any:
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError as exc:  # pragma: no cover - huggingface_hub ships with the test extras
        raise HfImportError("importing from the HF cache needs the huggingface_hub package") from exc
    try:
        return scan_cache_dir(cache_dir)
    except (CacheNotFound, ValueError) as exc:
        raise HfImportError(f"{cache_dir}: not a Hugging Face cache ({exc})") from exc


def from_cache(
    cache_dir: Path,
    *,
    repo_id: str | None = None,
    repo_type: str = "model",
    repo_path: Path | None = None,
    revision: str | None = None,
    allow_partial: bool = False,
) -> Snapshot:
    """A verified snapshot of a repo in the HF cache, chosen by repo id or by its folder."""
    info = _scan(cache_dir)
    cache_root = Path(os.path.realpath(cache_dir))
    wanted = Path(os.path.realpath(repo_path)) if repo_path is not None else None
    for repo in info.repos:
        if wanted is not None:
            if Path(os.path.realpath(repo.repo_path)) == wanted:
                break
        elif repo.repo_id == repo_id and repo.repo_type == repo_type:
            break
    else:
        what = str(repo_path) if repo_path is not None else f"{repo_type} {repo_id}"
        for warning in info.warnings:
            if (repo_path is not None and str(repo_path) in str(warning)) or (
                repo_id is not None and repo_id.replace("/", "--") in str(warning)
            ):
                raise HfImportError(f"{what}: the cache entry is corrupt: {warning}")
        raise HfImportError(f"{what} is not in the Hugging Face cache at {cache_dir}")
    rev = _pick_revision(repo, revision)
    where = f"{repo.repo_id}@{rev.commit_hash}"
    listing = read_tree_listing(Path(repo.repo_path) / "trees" / f"{rev.commit_hash}.json")
    present = _cache_candidates(rev, cache_root)
    candidates, skipped, missing = _reconcile(present, listing, allow_partial, where)
    if not candidates:
        raise HfImportError(f"{where}: the cached snapshot holds no files to import")
    return Snapshot(
        repo_id=repo.repo_id,
        repo_type=repo.repo_type,
        commit=rev.commit_hash,
        root=Path(rev.snapshot_path),
        origin="hf-cache",
        files=tuple(check_files(candidates)),
        skipped=skipped,
        missing=missing,
        tree_checked=listing is not None,
    )


# -- local_dir downloads ------------------------------------------------------------------------------


def _read_metadata(path: Path) -> tuple[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise HfImportError(f"{path}: cannot read download metadata: {exc}") from exc
    if len(lines) < 2 or not COMMIT.fullmatch(lines[0].strip()):
        raise HfImportError(f"{path}: malformed download metadata (expected commit and etag lines)")
    return lines[0].strip(), lines[1].strip()


def from_local_dir(
    root: Path, *, repo_id: str | None, repo_type: str = "model", allow_partial: bool = False
) -> Snapshot:
    """A verified ``local_dir`` download; its metadata names the commit and each file's etag, not the repo."""
    if not repo_id:
        raise HfImportError(
            f"{root} is a local_dir download, which does not record its repo id: pass --repo-id org/name"
        )
    meta_root = root / LOCAL_DIR_META
    try:
        listed = list_files(root, (*DEFAULT_IGNORE_PATHS, LOCAL_DIR_META.as_posix()))
    except TreeError as exc:
        raise HfImportError(str(exc)) from exc
    present: dict[str, CandidateFile] = {}
    commits: set[str] = set()
    for tree_file in listed:
        meta = meta_root / "download" / f"{tree_file.path}.metadata"
        if not meta.is_file():
            raise HfImportError(
                f"refusing to import: {tree_file.path} was not downloaded from the hub (no {meta.name} metadata)"
            )
        commit, etag = _read_metadata(meta)
        commits.add(commit)
        expected = Expected(blob_name=etag, record=f"{LOCAL_DIR_META.as_posix()}/download metadata")
        present[tree_file.path] = CandidateFile(tree_file.path, tree_file.source, expected)
    if not present:
        raise HfImportError(f"{root}: no downloaded files to import")
    if len(commits) != 1:
        raise HfImportError(f"{root} mixes files of several commits ({', '.join(sorted(commits))}); refusing")
    commit = commits.pop()
    where = f"{repo_id}@{commit}"
    listing = read_tree_listing(meta_root / "trees" / f"{commit}.json")
    candidates, skipped, missing = _reconcile(present, listing, allow_partial, where)
    return Snapshot(
        repo_id=repo_id,
        repo_type=repo_type,
        commit=commit,
        root=root,
        origin="hf-local-dir",
        files=tuple(check_files(candidates)),
        skipped=skipped,
        missing=missing,
        tree_checked=listing is not None,
    )


# -- dispatch -----------------------------------------------------------------------------------------


def _cache_repo_folder(path: Path) -> tuple[str, str] | None:
    """(repo type, repo id) if ``path`` is named like an HF cache repo folder (``models--org--name``)."""
    prefix, sep, rest = path.name.partition("--")
    types = {"models": "model", "datasets": "dataset", "spaces": "space"}
    if not sep or prefix not in types or not rest:
        return None
    return types[prefix], rest.replace("--", "/")


def load_snapshot(
    src: str,
    *,
    cache_dir: Path | None = None,
    revision: str | None = None,
    repo_type: str = "model",
    repo_id: str | None = None,
    allow_partial: bool = False,
) -> Snapshot:
    """Find and verify the snapshot ``src`` names (see the module docstring for the accepted forms)."""
    if repo_type not in REPO_TYPES:
        raise HfImportError(f"repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
    path = Path(src).expanduser()
    if path.is_dir():
        if path.parent.name == "snapshots" and _cache_repo_folder(path.parent.parent) is not None:
            if revision is not None and revision != path.name:
                raise HfImportError(f"{path} is snapshot {path.name}, not revision {revision!r}")
            repo_folder = path.parent.parent
            return from_cache(repo_folder.parent, repo_path=repo_folder, revision=path.name,
                              allow_partial=allow_partial)
        if _cache_repo_folder(path) is not None and (path / "snapshots").is_dir():
            return from_cache(path.parent, repo_path=path, revision=revision, allow_partial=allow_partial)
        if (path / LOCAL_DIR_META / "download").is_dir():
            return from_local_dir(path, repo_id=repo_id, repo_type=repo_type, allow_partial=allow_partial)
        raise HfImportError(
            f"{path} is neither an HF cache entry nor a local_dir download (no {LOCAL_DIR_META.as_posix()}/ "
            "metadata), so nothing records what its files should hash to; use `mir push` for plain folders"
        )
    if path.exists():
        raise HfImportError(f"{path} is not a directory")
    if src.count("/") != 1 or not all(src.split("/")):
        raise HfImportError(f"{src!r} is neither a folder nor an HF repo id (org/name)")
    if cache_dir is None:
        from huggingface_hub import constants

        cache_dir = Path(constants.HF_HUB_CACHE)
    return from_cache(cache_dir, repo_id=src, repo_type=repo_type, revision=revision, allow_partial=allow_partial)
