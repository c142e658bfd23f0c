"""Persist a fingerprint index without pickle: .npy arrays plus a JSON manifest.

Layout of the index directory::

    index.json                      manifest: format, version, config, sources, files with digests
    signatures-<gen>.npy            (n, num_perm) uint32 MinHash signatures
    record_hashes-<gen>.npy         (n, 32) uint8 SHA-256 of the normalised text
    source_ids-<gen>.npy            (n,) uint32 index into the manifest's "sources"
    ordinals-<gen>.npy              (n,) int64 position of the record in its dataset
    permutations-<gen>.npy          (2, num_perm) uint32 MinHash permutation parameters
    passage_hashes-<gen>.npy        (m,) uint64 every record's passage sample, concatenated (version 2)
    passage_offsets-<gen>.npy       (n + 1,) int64 where each record's sample starts in it (version 2)

Version 2 adds the passage samples (``scanners.contamination.passages``) and
their ``PassageConfig`` (``"passages"``, null when the index has none); a
version 1 index still loads, matching at record level only.

Why this shape: the registry never unpickles (so datasketch's pickled LSH is
out), arrays load with ``allow_pickle=False``, and the LSH tables are rebuilt
from the signatures on load, which is a vectorised sort. A save writes every
array under a fresh generation name and then atomically replaces ``index.json``;
until that rename the previous index stays whole, and a crash leaves only
unreferenced files, removed by the next save. Loading reads each array once,
checks its SHA-256 against the manifest on those very bytes, then its dtype,
shape and ranges; it also recomputes the signature of a fixed probe text, so a
datasketch upgrade that changes signatures is caught instead of silently
matching nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanners.contamination.errors import IndexFormatError
from scanners.contamination.fingerprint import (
    HASH_BYTES,
    SCHEME,
    SHINGLE_HASH,
    SIGNATURE_DTYPE,
    FingerprintConfig,
)
from scanners.contamination.index import FingerprintIndex
from scanners.contamination.passages import Hashes, PassageConfig
from scanners.contamination.results import Source

MANIFEST = "index.json"
FORMAT = "mir.contamination.fingerprint-index"
VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
PROBE_TEXT = "the quick brown fox jumps over the lazy dog while five boxing wizards jump quickly"
_ARRAYS = ("signatures", "record_hashes", "source_ids", "ordinals", "permutations")
_PASSAGE_ARRAYS = ("passage_hashes", "passage_offsets")
_FILE_NAME = re.compile(
    r"^(signatures|record_hashes|source_ids|ordinals|permutations|passage_hashes|passage_offsets)-[0-9a-f]{16}\.npy$"
)


def save_index(index: FingerprintIndex, path: str | Path) -> None:
    """Write ``index`` into directory ``path`` (created if needed), replacing any index there atomically."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    generation = secrets.token_hex(8)
    arrays: dict[str, NDArray[Any]] = dict(index.arrays())
    arrays["permutations"] = index.fingerprinter.permutations
    names = list(_ARRAYS)
    passage_config = index.fingerprinter.passages
    if passage_config is not None:
        samples = index.passage_samples()
        sizes = np.fromiter((s.size for s in samples), dtype=np.int64, count=len(samples))
        arrays["passage_offsets"] = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(sizes)])
        arrays["passage_hashes"] = np.concatenate([np.empty(0, dtype=np.uint64), *samples])
        names += _PASSAGE_ARRAYS
    files: dict[str, dict[str, str]] = {}
    for name in names:
        file_name = f"{name}-{generation}.npy"
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
        data = buffer.getvalue()
        _write_atomic(root / file_name, data)
        files[name] = {"name": file_name, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "scheme": SCHEME,
        "shingle_hash": SHINGLE_HASH,
        "config": index.config.to_dict(),
        "passages": passage_config.to_dict() if passage_config is not None else None,
        "passage_entries": int(arrays["passage_hashes"].size) if passage_config is not None else 0,
        "records": len(index),
        "sources": [{"dataset_ref": s.dataset_ref, "generator_ref": s.generator_ref} for s in index.sources],
        "datasets": sorted(index.dataset_refs),
        "probe": {"text": PROBE_TEXT, "signature": index.fingerprinter.signature(PROBE_TEXT).tolist()},
        "files": files,
    }
    _write_atomic(root / MANIFEST, json.dumps(manifest, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    _fsync_dir(root)
    keep = {entry["name"] for entry in files.values()}
    for stale in root.iterdir():
        if _FILE_NAME.match(stale.name) and stale.name not in keep:
            with contextlib.suppress(OSError):
                stale.unlink()


def load_index(path: str | Path) -> FingerprintIndex:
    """Read, verify and rebuild an index saved by ``save_index``."""
    root = Path(path)
    manifest = _read_manifest(root)
    try:
        config = FingerprintConfig.from_dict(_field(manifest, "config", dict, root))
    except (TypeError, ValueError) as exc:
        raise IndexFormatError(root / MANIFEST, f"bad config: {exc}") from exc
    if manifest.get("scheme") != SCHEME or manifest.get("shingle_hash") != SHINGLE_HASH:
        raise IndexFormatError(
            root / MANIFEST,
            f"signature scheme {manifest.get('scheme')!r}/{manifest.get('shingle_hash')!r} is not "
            f"{SCHEME!r}/{SHINGLE_HASH!r}: rebuild the index",
        )
    n = _field(manifest, "records", int, root)
    sources = _parse_sources(_field(manifest, "sources", list, root), root)
    datasets = _field(manifest, "datasets", list, root)
    if not all(isinstance(d, str) and d for d in datasets):
        raise IndexFormatError(root / MANIFEST, "datasets must be non-empty strings")
    files = _field(manifest, "files", dict, root)
    p = config.num_perm
    arrays = {
        "signatures": _load_array(root, files, "signatures", SIGNATURE_DTYPE, (n, p)),
        "record_hashes": _load_array(root, files, "record_hashes", np.uint8, (n, HASH_BYTES)),
        "source_ids": _load_array(root, files, "source_ids", np.uint32, (n,)),
        "ordinals": _load_array(root, files, "ordinals", np.int64, (n,)),
        "permutations": _load_array(root, files, "permutations", SIGNATURE_DTYPE, (2, p)),
    }
    if n and int(arrays["source_ids"].max()) >= len(sources):
        raise IndexFormatError(root, "source_ids refer to sources the manifest does not list")
    if n and int(arrays["ordinals"].min()) < 0:
        raise IndexFormatError(root, "negative record ordinal")
    if not np.all(arrays["permutations"][0] & 1):
        raise IndexFormatError(root, "permutation multipliers must be odd")
    passage_config, samples = _passages(manifest, root, files, n)
    index = FingerprintIndex(config, arrays["permutations"], passages=passage_config)
    probe = _field(manifest, "probe", dict, root)
    expected = probe.get("signature")
    if probe.get("text") != PROBE_TEXT or not isinstance(expected, list):
        raise IndexFormatError(root / MANIFEST, "missing or altered signature probe")
    if index.fingerprinter.signature(PROBE_TEXT).tolist() != expected:
        raise IndexFormatError(
            root, "signatures computed by this datasketch version differ from the stored ones: rebuild the index"
        )
    index._restore_sources(sources)
    if n:
        index._add_restored(arrays["record_hashes"], arrays["signatures"], arrays["source_ids"], arrays["ordinals"],
                            samples)
    for dataset in datasets:
        index.mark_dataset(dataset)
    return index


def _read_manifest(root: Path) -> dict[str, Any]:
    manifest_path = root / MANIFEST
    try:
        with open(manifest_path, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise IndexFormatError(manifest_path, f"cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise IndexFormatError(manifest_path, f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise IndexFormatError(manifest_path, f"not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(manifest_path, "not a fingerprint index manifest")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise IndexFormatError(manifest_path, f"unsupported index version {manifest.get('version')!r}")
    return manifest


def _passages(
    manifest: dict[str, Any], root: Path, files: dict[str, Any], n: int
) -> tuple[PassageConfig | None, list[Hashes] | None]:
    """The passage config and per-record samples of a version 2 index (None, None: version 1 or none kept)."""
    if manifest.get("version") == 1:
        return None, None
    raw = manifest.get("passages", "missing")
    if raw is None:
        return None, None
    try:
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        config = PassageConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise IndexFormatError(root / MANIFEST, f"bad passages config: {exc}") from exc
    m = _field(manifest, "passage_entries", int, root)
    offsets = _load_array(root, files, "passage_offsets", np.int64, (n + 1,))
    hashes = _load_array(root, files, "passage_hashes", np.uint64, (m,))
    if int(offsets[0]) != 0 or int(offsets[-1]) != m or np.any(np.diff(offsets) < 0):
        raise IndexFormatError(root, "passage offsets are not a monotone cover of the passage hashes")
    return config, [hashes[offsets[i] : offsets[i + 1]] for i in range(n)]


def _field(manifest: dict[str, Any], key: str, kind: type, root: Path) -> Any:
    value: Any = manifest.get(key)
    negative = isinstance(value, int) and value < 0
    if not isinstance(value, kind) or isinstance(value, bool) or negative:
        raise IndexFormatError(root / MANIFEST, f"field {key!r} missing or not a {kind.__name__}")
    return value


def _parse_sources(raw: list[Any], root: Path) -> list[Source]:
    sources = []
    for entry in raw:
        if (
            not isinstance(entry, dict)
            or set(entry) != {"dataset_ref", "generator_ref"}
            or not all(isinstance(v, str) and v for v in entry.values())
        ):
            raise IndexFormatError(root / MANIFEST, f"malformed source entry {entry!r:.200}")
        sources.append(Source(entry["dataset_ref"], entry["generator_ref"]))
    if len(set(sources)) != len(sources):
        raise IndexFormatError(root / MANIFEST, "duplicate source entries")
    return sources


def _load_array(
    root: Path, files: dict[str, Any], name: str, dtype: type[np.generic], shape: tuple[int, ...]
) -> NDArray[Any]:
    entry = files.get(name)
    if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("sha256"), str)):
        raise IndexFormatError(root / MANIFEST, f"manifest lacks file entry {name!r}")
    file_name = entry["name"]
    match = _FILE_NAME.match(file_name)
    if match is None or match.group(1) != name:
        raise IndexFormatError(root / MANIFEST, f"unexpected file name {file_name!r:.100} for {name!r}")
    file_path = root / file_name
    expected_size = 1024 + int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        with open(file_path, "rb") as fh:
            data = fh.read(expected_size + 1)
    except OSError as exc:
        raise IndexFormatError(file_path, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > expected_size:
        raise IndexFormatError(file_path, "file larger than its declared shape allows")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise IndexFormatError(file_path, "SHA-256 differs from the manifest (torn write or tampering)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(file_path, f"not a valid .npy array: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind != np.dtype(dtype).kind:
        raise IndexFormatError(file_path, f"dtype {getattr(array, 'dtype', None)} is not {np.dtype(dtype)}")
    if array.dtype.itemsize != np.dtype(dtype).itemsize or array.shape != shape:
        raise IndexFormatError(file_path, f"array {array.dtype} {array.shape} is not {np.dtype(dtype)} {shape}")
    return np.ascontiguousarray(array, dtype=dtype)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
