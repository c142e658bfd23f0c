"""The core of the verified loader: read a model directory once, hash the very bytes that become tensors.

Hash-then-load (hash the files, then call ``safetensors.torch.load_file``) reads
every file twice, and whoever can write the directory between the two reads
gets unverified tensors loaded under a verified digest. Here every file is read
exactly once, into memory this process owns and nobody else writes (never an
mmap of the file, whose pages follow later writes), those bytes are hashed, and
tensors are built from those same bytes only after the digest matched.

How the bytes flow, per file (files run in parallel on ``workers`` threads):

* the first 4 KiB and the safetensors header are read into private ``bytes``,
  hashed, and the format is decided from that content (never from the name);
* on CPU the tensor data is read with ``preadv`` straight into freshly
  allocated per-tensor buffers (one copy, separate storages as with
  ``load_file``) and hashed from there, on a helper thread so hashing chunk k
  overlaps reading chunk k+1 (``hashlib`` and ``blake3`` release the GIL);
* on an accelerator the data goes through a small ring of pinned staging
  buffers: read into a slot, copied to the device with ``non_blocking`` on a
  side stream, hashed from the same slot; a slot is reused only after both its
  hash and its copy finished. Device memory that received bytes of a file is
  private until that file's digest matched; on any failure it is dropped and
  nothing is returned. Host memory stays bounded by the ring, not the shard.

Files other than safetensors are hashed and checked but never loaded: JSON and
text are accepted (a text file that parses as a protocol-0 pickle is not),
pickle, zip (PyTorch checkpoints), protocol 0/1 pickles and compressed streams
that could wrap one are refused outright, and any other binary file only where
the caller lists it in ``allow_data_files``.

torch is an optional dependency: it is imported inside the functions that need
it, so the registry service can import this module without it.
"""

from __future__ import annotations

import bisect
import codecs
import hmac
import io
import json
import math
import os
import queue
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanners.sniff import COMPRESSED, SNIFF_BYTES, Kind, sniff, text_ok
from signing.digests import InvalidDigestError, parse_digest
from signing.hashing import BLAKE3_THREADED_MIN_SIZE, default_workers, new_hasher
from signing.paths import InvalidPathError, validate_relative_path
from signing.tree import TreeError, is_ignored, list_files

if TYPE_CHECKING:
    import torch

DEFAULT_CHUNK_SIZE = 8 << 20
"""Bytes per read (and per staging slot): large enough that syscalls and Python overhead vanish."""
MAX_HEADER_BYTES = 100_000_000
"""Largest safetensors JSON header accepted (the safetensors library's own limit)."""
MAX_TEXT_CHECK = 64 << 20
"""Largest text file kept in memory to check it does not also parse as a pickle."""
_MAX_IOVECS = 512  # well under IOV_MAX (1024 on Linux)

# safetensors dtype -> (torch attribute, bytes per element). F4/F6 pack sub-byte elements: not supported.
_DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1), "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1), "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1), "I16": ("int16", 2), "U16": ("uint16", 2), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "I32": ("int32", 4), "U32": ("uint32", 4), "F32": ("float32", 4),
    "I64": ("int64", 8), "U64": ("uint64", 8), "F64": ("float64", 8), "C64": ("complex64", 8),
}  # fmt: skip
_SUB_BYTE_DTYPES = frozenset(["F4", "F6_E2M3", "F6_E3M2"])
_ENTRY_KEYS = frozenset(["dtype", "shape", "data_offsets"])

# Kinds refused even when listed in allow_data_files: they are, or can wrap, a pickle.
_PICKLE_KINDS: dict[Kind, str] = {
    Kind.PICKLE: "a pickle",
    Kind.MAYBE_PICKLE: "a protocol 0/1 pickle (or unknown binary starting with a pickle opcode)",
    Kind.ZIP: "a zip archive (the PyTorch checkpoint format, a pickle inside)",
    **{kind: f"a {kind.value} stream (can wrap a pickle, as joblib does)" for kind in COMPRESSED},
}


# -- errors ------------------------------------------------------------------------------------------------------
class LoaderError(Exception):
    """Base of every verified-loader failure. When it is raised, nothing was returned or placed."""


class VerifiedLoadError(LoaderError):
    """One file (or the directory) failed verification; ``path`` names it, ``reason`` says why.

    ``code`` is a stable word for programs: ``bad_expected``, ``unsafe_tree``, ``extra_file``,
    ``missing_file``, ``unreadable``, ``changed``, ``digest_mismatch``, ``pickle_refused``,
    ``unknown_format``, ``malformed_safetensors``, ``unsupported_dtype``, ``duplicate_tensor``,
    ``out_of_memory``.
    """

    def __init__(self, path: str, reason: str, *, code: str = "refused") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.code = code


class SafetensorsHeaderError(ValueError):
    """A safetensors header the loader refuses; the message says what is wrong (no file name)."""


class _Aborted(Exception):
    """Another file failed first; this one stopped early. Never escapes the module."""


# -- the safetensors header ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of a safetensors file: offsets are relative to the start of the data region."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True, slots=True)
class SafetensorsLayout:
    """A validated header: the tensors in data order, tiling the data region exactly."""

    header_size: int
    tensors: tuple[TensorSpec, ...]
    metadata: dict[str, str]
    ends: tuple[int, ...] = ()
    """Each tensor's end offset, in order (for finding the tensors a byte range touches)."""

    @property
    def data_start(self) -> int:
        return 8 + self.header_size


def parse_header_length(first8: bytes, file_size: int, *, max_header: int = MAX_HEADER_BYTES) -> int:
    """The JSON header length from a file's first 8 bytes, checked against the limit and the file size."""
    if len(first8) < 8 or file_size < 8:
        raise SafetensorsHeaderError(f"file of {file_size} bytes is too short for a safetensors header")
    n = int.from_bytes(first8[:8], "little")
    if n > max_header:
        raise SafetensorsHeaderError(f"header length {n} exceeds the {max_header}-byte limit")
    if 8 + n > file_size:
        raise SafetensorsHeaderError(f"header length {n} runs past the end of the file ({file_size} bytes)")
    return n


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SafetensorsHeaderError(f"duplicate key {key[:80]!r} in the header (readers disagree on which wins)")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise SafetensorsHeaderError(f"non-standard JSON constant {name} in the header")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_safetensors_header(header: bytes, data_size: int) -> SafetensorsLayout:
    """Validate a safetensors JSON header strictly against a data region of ``data_size`` bytes.

    Stricter than the safetensors library where it is lenient: duplicate keys, unknown entry
    keys and NaN constants are refused. As in the library, tensors must tile the data region
    exactly (no gap, no overlap, nothing after the last one), so no byte is unaccounted for.
    """
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsHeaderError(f"header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        parsed = json.loads(text, object_pairs_hook=_pairs_without_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, SafetensorsHeaderError):
            raise
        raise SafetensorsHeaderError(f"header is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(parsed, dict):
        raise SafetensorsHeaderError("header is not a JSON object")
    metadata: dict[str, str] = {}
    specs: list[TensorSpec] = []
    for name, info in parsed.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise SafetensorsHeaderError("__metadata__ must map strings to strings")
            metadata = dict(info)
            continue
        specs.append(_parse_entry(name, info, data_size))
    specs.sort(key=lambda s: (s.begin, s.end))
    position = 0
    for spec in specs:
        if spec.begin != position:
            what = "overlaps the previous tensor" if spec.begin < position else f"leaves {spec.begin - position} bytes"
            raise SafetensorsHeaderError(f"tensor {spec.name[:80]!r} {what} (data must be contiguous)")
        position = spec.end
    if position != data_size:
        raise SafetensorsHeaderError(
            f"tensors cover {position} bytes but the data region has {data_size} (hidden or missing data)"
        )
    return SafetensorsLayout(len(header), tuple(specs), metadata, tuple(s.end for s in specs))


def _parse_entry(name: str, info: object, data_size: int) -> TensorSpec:
    shown = repr(name[:80])
    if not isinstance(info, dict) or info.keys() != _ENTRY_KEYS:
        raise SafetensorsHeaderError(f"tensor {shown}: entry must have exactly the keys dtype, shape, data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or (dtype not in _DTYPES and dtype not in _SUB_BYTE_DTYPES):
        raise SafetensorsHeaderError(f"tensor {shown}: unknown dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise SafetensorsHeaderError(f"tensor {shown}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise SafetensorsHeaderError(
            f"tensor {shown}: data_offsets must be [begin, end] with 0 <= begin <= end <= {data_size}"
        )
    if dtype in _SUB_BYTE_DTYPES:
        raise SafetensorsHeaderError(f"tensor {shown}: dtype {dtype} is not supported by the verified loader")
    nbytes = math.prod(shape) * _DTYPES[dtype][1]
    if offsets[1] - offsets[0] != nbytes:
        raise SafetensorsHeaderError(
            f"tensor {shown}: shape {shape[:8]} x {dtype} is {nbytes} bytes but data_offsets span "
            f"{offsets[1] - offsets[0]}"
        )
    return TensorSpec(name=name, dtype=dtype, shape=tuple(shape), begin=offsets[0], end=offsets[1])


# -- the result ----------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class VerifiedRead:
    """What one verified read produced: tensors, and what was checked without being loaded."""

    tensors: dict[str, torch.Tensor]
    files: dict[str, str]
    """Every expected file -> how it was handled: ``safetensors`` (loaded), ``text`` or ``data`` (checked only)."""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    """Each safetensors file's ``__metadata__``."""


@dataclass(frozen=True, slots=True)
class _Job:
    path: str
    source: Path
    size: int
    algorithm: str
    hexdigest: str
    allow_data: bool


@dataclass(slots=True)
class _FileResult:
    path: str
    kind: str
    tensors: list[tuple[str, torch.Tensor]]
    metadata: dict[str, str]


# -- hashing in order, inline or on a helper thread ----------------------------------------------------------------
class _OrderedHasher:
    """Hashes pieces of memory in the order given, inline or on a helper thread.

    In thread mode ``feed`` only queues the piece, so the caller reads the next chunk while this
    one is hashed. ``after`` callbacks run once a piece is hashed (or dropped on abort), which
    is how staging slots are handed back; they always run, so no slot is ever lost.
    """

    def __init__(self, hasher: Any) -> None:
        self._hasher = hasher
        self._queue: (
            queue.SimpleQueue[tuple[memoryview | bytes | bytearray, Callable[[], None] | None] | None] | None
        ) = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._dropping = False

    def start_thread(self) -> None:
        if self._thread is None:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, name="mir-verify-hash", daemon=True)
            self._thread.start()

    def feed(self, data: memoryview | bytes | bytearray, after: Callable[[], None] | None = None) -> None:
        if self._queue is None:
            try:
                self._hasher.update(data)
            finally:
                if after is not None:
                    after()
            return
        if self._error is not None:
            if after is not None:
                after()
            raise self._error
        self._queue.put((data, after))

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            data, after = item
            try:
                if self._error is None and not self._dropping:
                    self._hasher.update(data)
            except BaseException as exc:
                self._error = exc
            finally:
                if after is not None:
                    try:
                        after()
                    except BaseException as exc:
                        self._error = self._error or exc

    def _join(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        """Wait for every queued piece, then the digest of everything fed."""
        self._join()
        if self._error is not None:
            raise self._error
        result: str = self._hasher.hexdigest()
        return result

    def close(self) -> None:
        """Stop hashing, still running every pending ``after`` callback."""
        self._dropping = True
        self._join()


# -- one call's shared state ---------------------------------------------------------------------------------------
class _Run:
    """State shared by the file workers of one call: device, abort flag, staging ring."""

    def __init__(self, torch_mod: Any, device: torch.device, staged: bool, workers: int, chunk_size: int) -> None:
        self.torch = torch_mod
        self.device = device
        self.staged = staged
        self.workers = workers
        self.chunk_size = chunk_size
        self.abort = threading.Event()
        self.cuda = device.type == "cuda"
        self.main_stream = torch_mod.cuda.current_stream(device) if self.cuda else None
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots_made = 0
        self._max_slots = 2 * workers + 2  # two per busy file: one being read while one is hashed/copied

    def check_abort(self) -> None:
        if self.abort.is_set():
            raise _Aborted

    def take_slot(self) -> Any:
        """A staging buffer of ``chunk_size`` bytes (pinned for CUDA); blocks when the ring is in use."""
        with self._lock:
            if self._free.empty() and self._slots_made < self._max_slots:
                self._slots_made += 1
                return self.torch.empty(self.chunk_size, dtype=self.torch.uint8, pin_memory=self.cuda)
        while True:
            try:
                return self._free.get(timeout=0.05)
            except queue.Empty:
                self.check_abort()

    def give_slot(self, slot: Any) -> None:
        self._free.put(slot)

    def close(self) -> None:
        """Let the staging slots go (pinned memory returns to torch's host cache)."""
        while not self._free.empty():
            self._free.get_nowait()


# -- low-level reading ---------------------------------------------------------------------------------------------
def _open_regular(job: _Job) -> int:
    """Open without following a final symlink and without blocking on a FIFO swapped in after listing."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(job.source, flags)
    except OSError as exc:
        raise VerifiedLoadError(job.path, f"cannot open: {exc.strerror or exc}", code="unreadable") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise VerifiedLoadError(job.path, "not a regular file any more (replaced after listing?)", code="changed")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_exact(fd: int, views: list[memoryview], offset: int, job: _Job) -> None:
    """Fill ``views`` with the file's bytes from ``offset`` on; a short file is an error, never a partial read."""
    views = [v for v in views if len(v)]
    while views:
        try:
            if hasattr(os, "preadv"):
                n = os.preadv(fd, views, offset)
            else:  # pragma: no cover - platforms without preadv
                with io.FileIO(fd, "rb", closefd=False) as handle:
                    handle.seek(offset)
                    n = handle.readinto(views[0]) or 0
        except OSError as exc:
            raise VerifiedLoadError(job.path, f"read failed: {exc.strerror or exc}", code="unreadable") from exc
        if n == 0:
            raise VerifiedLoadError(job.path, f"file ended at byte {offset} while being read", code="changed")
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


def _check_eof(fd: int, size: int, job: _Job) -> None:
    try:
        extra = os.pread(fd, 1, size)
    except OSError as exc:
        raise VerifiedLoadError(job.path, f"read failed: {exc.strerror or exc}", code="unreadable") from exc
    if extra:
        raise VerifiedLoadError(job.path, f"file grew past {size} bytes while being read", code="changed")


def _verify(hasher: _OrderedHasher, job: _Job) -> None:
    actual = hasher.hexdigest()
    if not hmac.compare_digest(actual, job.hexdigest):
        raise VerifiedLoadError(
            job.path,
            f"content does not match the verified digest: expected {job.algorithm}:{job.hexdigest}, "
            f"read {job.algorithm}:{actual}",
            code="digest_mismatch",
        )


def _drain(fd: int, size: int, offset: int, hasher: _OrderedHasher, job: _Job, run: _Run) -> None:
    """Hash the rest of a file we will not use, so a mismatch is reported as one."""
    buf = bytearray(min(run.chunk_size, max(size - offset, 0)))
    while offset < size:
        run.check_abort()
        view = memoryview(buf)[: min(len(buf), size - offset)]
        _read_exact(fd, [view], offset, job)
        hasher.feed(view)
        offset += len(view)
    _check_eof(fd, size, job)


# -- one file ------------------------------------------------------------------------------------------------------
def _read_file(job: _Job, run: _Run) -> _FileResult:
    torch_mod = run.torch
    fd = _open_regular(job)
    threads = run.workers if job.algorithm == "blake3" and job.size >= BLAKE3_THREADED_MIN_SIZE else 1
    hasher = _OrderedHasher(new_hasher(job.algorithm, threads))
    try:
        size = os.fstat(fd).st_size
        head = bytearray(min(size, SNIFF_BYTES))
        _read_exact(fd, [memoryview(head)], 0, job)
        hasher.feed(head)
        if sniff(bytes(head), size) is Kind.SAFETENSORS:
            return _read_safetensors(fd, size, bytes(head), hasher, job, run)
        return _read_other(fd, size, bytes(head), hasher, job, run)
    except (MemoryError, torch_mod.OutOfMemoryError) as exc:
        error: BaseException = VerifiedLoadError(job.path, f"out of memory while loading: {exc}", code="out_of_memory")
        error.__cause__ = exc
    except BaseException as exc:
        error = exc
    finally:
        hasher.close()
        os.close(fd)
    # Raised from here, with the inner frames cut off: they hold this file's buffers (device
    # memory included), which must go now, not whenever the caller drops the exception.
    raise _without_frames(error)


def _without_frames(error: BaseException) -> BaseException:
    """Drop the tracebacks of ``error`` and the exceptions chained to it (they pin frames and buffers)."""
    seen: set[int] = set()
    item: BaseException | None = error
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        item.__traceback__ = None
        item = item.__cause__ or item.__context__
    return error


def _read_safetensors(fd: int, size: int, head: bytes, hasher: _OrderedHasher, job: _Job, run: _Run) -> _FileResult:
    try:
        n = parse_header_length(head, size)
    except SafetensorsHeaderError as exc:
        _drain(fd, size, len(head), hasher, job, run)
        _verify(hasher, job)
        raise VerifiedLoadError(job.path, f"malformed safetensors: {exc}", code="malformed_safetensors") from None
    data_start = 8 + n
    if data_start > len(head):
        rest = bytearray(data_start - len(head))
        _read_exact(fd, [memoryview(rest)], len(head), job)
        hasher.feed(rest)
        header, prefix = head[8:] + bytes(rest), b""
    else:
        header, prefix = head[8:data_start], head[data_start:]
    try:
        layout = parse_safetensors_header(header, size - data_start)
    except SafetensorsHeaderError as exc:
        # The header is parsed before the digest is known (allocations need it); report a
        # mismatch as a mismatch, and blame the format only for bytes that were verified.
        _drain(fd, size, max(len(head), data_start), hasher, job, run)
        _verify(hasher, job)
        raise VerifiedLoadError(job.path, f"malformed safetensors: {exc}", code="malformed_safetensors") from None
    dtypes = {}
    for spec in layout.tensors:
        dtype = getattr(run.torch, _DTYPES[spec.dtype][0], None)
        if dtype is None:
            raise VerifiedLoadError(
                job.path, f"tensor {spec.name!r}: dtype {spec.dtype} is not available in this torch",
                code="unsupported_dtype",
            )  # fmt: skip
        dtypes[spec.dtype] = dtype
    if run.staged:
        raws = _read_data_staged(fd, layout, prefix, hasher, job, run)
    else:
        raws = _read_data_direct(fd, layout, prefix, hasher, job, run)
    _check_eof(fd, size, job)
    _verify(hasher, job)
    # Verified: only now do the bytes become tensors anyone else can see.
    tensors = []
    for spec, raw in zip(layout.tensors, raws, strict=True):
        if spec.dtype == "BOOL" and raw.numel() and bool((raw > 1).any()):
            raise VerifiedLoadError(
                job.path, f"malformed safetensors: tensor {spec.name!r} holds bool values other than 0 and 1",
                code="malformed_safetensors",
            )  # fmt: skip
        tensors.append((spec.name, raw.view(dtypes[spec.dtype]).reshape(spec.shape)))
    return _FileResult(job.path, "safetensors", tensors, layout.metadata)


def _pieces(layout: SafetensorsLayout, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """(tensor index, offset in that tensor, length) covering data bytes ``[start, stop)`` in order."""
    tensors = layout.tensors
    for index in range(bisect.bisect_right(layout.ends, start), len(tensors)):
        spec = tensors[index]
        if spec.begin >= stop:
            return
        lo, hi = max(spec.begin, start), min(spec.end, stop)
        if lo < hi:
            yield index, lo - spec.begin, hi - lo


def _read_data_direct(
    fd: int, layout: SafetensorsLayout, prefix: bytes, hasher: _OrderedHasher, job: _Job, run: _Run
) -> list[torch.Tensor]:
    """Read the data region straight into per-tensor CPU buffers, hashing each chunk from there."""
    torch_mod = run.torch
    raws = [torch_mod.empty(spec.nbytes, dtype=torch_mod.uint8) for spec in layout.tensors]
    views = [memoryview(raw.numpy()) for raw in raws]
    for index, at, length in _pieces(layout, 0, len(prefix)):  # data bytes that came with the first read
        start = layout.tensors[index].begin + at
        views[index][at : at + length] = prefix[start : start + length]
    data_size = layout.tensors[-1].end if layout.tensors else 0
    if data_size - len(prefix) > run.chunk_size:
        hasher.start_thread()
    offset = len(prefix)
    while offset < data_size:
        run.check_abort()
        stop = min(offset + run.chunk_size, data_size)
        group = []
        for index, at, length in _pieces(layout, offset, stop):
            group.append(views[index][at : at + length])
            if len(group) == _MAX_IOVECS:
                stop = layout.tensors[index].begin + at + length
                break
        _read_exact(fd, list(group), layout.data_start + offset, job)
        for view in group:
            hasher.feed(view)
        offset = stop
    return raws


def _read_data_staged(
    fd: int, layout: SafetensorsLayout, prefix: bytes, hasher: _OrderedHasher, job: _Job, run: _Run
) -> list[torch.Tensor]:
    """Read through staging slots: each slot is copied to the device and hashed before it is reused."""
    if not run.cuda:
        return _staged(fd, layout, prefix, hasher, job, run)
    with run.torch.cuda.device(run.device):  # this worker thread's current device is not the caller's
        return _staged(fd, layout, prefix, hasher, job, run)


def _staged(
    fd: int, layout: SafetensorsLayout, prefix: bytes, hasher: _OrderedHasher, job: _Job, run: _Run
) -> list[torch.Tensor]:
    torch_mod = run.torch
    stream = None
    if run.cuda:
        stream = torch_mod.cuda.Stream(run.device)
        with torch_mod.cuda.stream(run.main_stream):  # owned by the caller's stream, as load_file's are
            raws = [torch_mod.empty(spec.nbytes, dtype=torch_mod.uint8, device=run.device) for spec in layout.tensors]
        stream.wait_stream(run.main_stream)  # the memory may have been in use on that stream until now
    else:
        raws = [torch_mod.empty(spec.nbytes, dtype=torch_mod.uint8, device=run.device) for spec in layout.tensors]
    try:
        if prefix:
            small = torch_mod.frombuffer(bytearray(prefix), dtype=torch_mod.uint8)
            for index, at, length in _pieces(layout, 0, len(prefix)):
                start = layout.tensors[index].begin + at
                raws[index][at : at + length].copy_(small[start : start + length])
        data_size = layout.tensors[-1].end if layout.tensors else 0
        if data_size - len(prefix) > run.chunk_size:
            hasher.start_thread()
        offset = len(prefix)
        while offset < data_size:
            run.check_abort()
            stop = min(offset + run.chunk_size, data_size)
            slot = run.take_slot()
            try:
                view = memoryview(slot.numpy())[: stop - offset]
                _read_exact(fd, [view], layout.data_start + offset, job)
                event = _copy_out(slot, raws, layout, offset, stop, stream, run)
            except BaseException:
                run.give_slot(slot)
                raise
            hasher.feed(view, after=_slot_release(run, slot, event))
            offset = stop
    finally:
        if stream is not None:
            stream.synchronize()  # no copy may still be writing into memory that is about to be dropped
    return raws


def _copy_out(
    slot: Any, raws: list[Any], layout: SafetensorsLayout, start: int, stop: int, stream: Any, run: _Run
) -> Any:
    """Copy one staged chunk into its tensors (async from pinned memory on CUDA); the event marks the end."""
    torch_mod = run.torch
    if stream is None:
        for index, at, length in _pieces(layout, start, stop):
            src = layout.tensors[index].begin + at - start
            raws[index][at : at + length].copy_(slot[src : src + length])
        return None
    with torch_mod.cuda.stream(stream):
        for index, at, length in _pieces(layout, start, stop):
            src = layout.tensors[index].begin + at - start
            raws[index][at : at + length].copy_(slot[src : src + length], non_blocking=True)
        event = torch_mod.cuda.Event()
        event.record(stream)
    return event


def _slot_release(run: _Run, slot: Any, event: Any) -> Callable[[], None]:
    def release() -> None:
        try:
            if event is not None:
                event.synchronize()
        finally:
            run.give_slot(slot)

    return release


def _read_other(fd: int, size: int, head: bytes, hasher: _OrderedHasher, job: _Job, run: _Run) -> _FileResult:
    """Hash a file that is not safetensors, then decide (on the verified bytes) whether it is acceptable."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    is_text = _text_step(decoder, head, final=len(head) == size)
    kept: bytearray | None = bytearray(head) if size <= MAX_TEXT_CHECK else None
    buf = bytearray(min(run.chunk_size, max(size - len(head), 0)))
    offset = len(head)
    while offset < size:
        run.check_abort()
        view = memoryview(buf)[: min(len(buf), size - offset)]
        _read_exact(fd, [view], offset, job)
        hasher.feed(view)
        offset += len(view)
        if is_text:
            is_text = _text_step(decoder, view, final=offset == size)
        if kept is not None and is_text:
            kept += view
    _check_eof(fd, size, job)
    _verify(hasher, job)
    return _FileResult(job.path, _classify_other(job, head, size, is_text, kept), [], {})


def _text_step(decoder: codecs.IncrementalDecoder, data: bytes | memoryview, *, final: bool) -> bool:
    try:
        return text_ok(decoder.decode(data, final=final))
    except UnicodeDecodeError:
        return False


def _classify_other(job: _Job, head: bytes, size: int, is_text: bool, kept: bytearray | None) -> str:
    kind = sniff(head, size)
    named_safetensors = job.path.endswith(".safetensors")
    if kind in (Kind.TEXT, Kind.EMPTY, Kind.MAYBE_PICKLE) and is_text:
        if kind is Kind.MAYBE_PICKLE:
            _refuse_pickle_text(job, kept)
        if named_safetensors:
            raise VerifiedLoadError(
                job.path, "named .safetensors but holds text (a Git LFS pointer?), not tensors", code="unknown_format"
            )
        return "text"
    if kind in _PICKLE_KINDS:
        raise VerifiedLoadError(
            job.path, f"pickle formats are refused: the content is {_PICKLE_KINDS[kind]}", code="pickle_refused"
        )
    if named_safetensors:
        raise VerifiedLoadError(
            job.path, f"named .safetensors but the content is {kind.value}, not safetensors", code="unknown_format"
        )
    if job.allow_data:
        return "data"
    raise VerifiedLoadError(
        job.path,
        f"{kind.value} file: only safetensors, JSON and text are accepted (list it in allow_data_files "
        "to accept it checked but not loaded)",
        code="unknown_format",
    )


def _refuse_pickle_text(job: _Job, kept: bytearray | None) -> None:
    """Text that starts with a pickle opcode: refuse it if it also parses as a (protocol 0) pickle."""
    if kept is None:
        raise VerifiedLoadError(
            job.path, f"text over {MAX_TEXT_CHECK} bytes that starts like a pickle: cannot check it is not one",
            code="pickle_refused",
        )  # fmt: skip
    from scanners.api import scan_bytes
    from scanners.report import Verdict

    report = scan_bytes(bytes(kept), name=job.path)
    if report.format != "text" or report.verdict is Verdict.MALICIOUS:
        raise VerifiedLoadError(
            job.path, f"pickle formats are refused: this text parses as a pickle ({report.format})",
            code="pickle_refused",
        )  # fmt: skip


# -- planning and running ------------------------------------------------------------------------------------------
def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise LoaderError("the verified loader needs torch: install mir[torch]") from exc
    return torch


def _plan(
    local_dir: str | os.PathLike[str],
    expected: Mapping[str, str],
    allow_extra_files: Iterable[str],
    allow_data_files: Iterable[str],
) -> list[_Job]:
    """Check the directory against ``expected`` before reading a byte of content."""
    digests: dict[str, tuple[str, str]] = {}
    for path, digest in expected.items():
        try:
            validate_relative_path(path)
        except InvalidPathError as exc:
            raise VerifiedLoadError(
                str(path)[:200], f"bad path in the expected digests: {exc}", code="bad_expected"
            ) from None
        try:
            digests[path] = parse_digest(digest)
        except InvalidDigestError as exc:
            raise VerifiedLoadError(path, f"bad expected digest: {exc}", code="bad_expected") from None
    allow_data = set(allow_data_files)
    unknown = sorted(allow_data - digests.keys())
    if unknown:
        raise ValueError(f"allow_data_files names files that are not expected: {unknown[:5]}")
    try:
        files = list_files(local_dir)
    except TreeError as exc:
        raise VerifiedLoadError(os.fspath(local_dir), str(exc), code="unsafe_tree") from None
    allow_extra = tuple(allow_extra_files)
    present = {f.path for f in files}
    extra = [f.path for f in files if f.path not in digests and not is_ignored(f.path, allow_extra)]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise VerifiedLoadError(extra[0], f"file is not in the verified manifest{more}", code="extra_file")
    missing = sorted(digests.keys() - present)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise VerifiedLoadError(missing[0], f"file of the verified manifest is missing{more}", code="missing_file")
    jobs = [
        _Job(f.path, f.source, f.size, *digests[f.path], allow_data=f.path in allow_data)
        for f in files
        if f.path in digests
    ]
    jobs.sort(key=lambda j: j.size, reverse=True)  # the biggest start first; small ones fill in
    return jobs


def _run_jobs(jobs: list[_Job], run: _Run) -> list[_FileResult]:
    """Run the files on ``run.workers`` threads; the first failure stops the others and is raised.

    On failure nothing read so far stays referenced (not even from the exception's
    frames), so device memory of files that did load is freed at once.
    """
    results: list[_FileResult] = []
    error: BaseException | None = None
    if run.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            try:
                results.append(_read_file(job, run))
            except BaseException as exc:
                error = exc
                break
    else:
        with ThreadPoolExecutor(max_workers=min(run.workers, len(jobs)), thread_name_prefix="mir-verify") as pool:
            futures = [pool.submit(_read_file, job, run) for job in jobs]
            error = _collect(futures, results, run)
            # leaving the block waits for the workers, which stop at their next chunk
        futures.clear()
    if error is not None:
        results.clear()
        raise _without_frames(error)
    return results


def _collect(futures: list[Future[_FileResult]], results: list[_FileResult], run: _Run) -> BaseException | None:
    """Gather results as files finish; on the first failure stop the rest and return the error."""
    try:
        for future in as_completed(futures):
            results.append(future.result())
    except BaseException as exc:  # a file failed, or the caller was interrupted
        run.abort.set()
        for pending in futures:
            pending.cancel()
        return exc
    return None


def read_verified(
    local_dir: str | os.PathLike[str],
    expected: Mapping[str, str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    workers: int | None = None,
    allow_extra_files: Iterable[str] = (),
    allow_data_files: Iterable[str] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    staging: bool | None = None,
) -> VerifiedRead:
    """Read every file of ``local_dir`` once, check it against ``expected``, load the safetensors.

    ``expected`` maps each relative path of the version to its whole-file digest
    (``sha256:<hex>`` or ``blake3:<hex>``), as a verified manifest lists them. The
    directory must hold exactly those files, plus any named in ``allow_extra_files``
    (a path, or a directory for everything under it, such as ``.cache``), which
    are not read. Tensors of every safetensors file are returned on
    ``device``, floating-point ones cast to ``dtype`` if given; tensor names must
    be unique across files. ``workers`` files are read at once (default: the usable
    cores). ``staging`` forces (or avoids) the staging-ring path; it defaults to on
    for accelerators and off for CPU, where it would cost an extra copy.

    Raises :class:`VerifiedLoadError` naming the file and the reason on any failure,
    :class:`LoaderError` if torch is missing; nothing partial is ever returned.
    """
    torch_mod = _import_torch()
    if chunk_size < 4096:
        raise ValueError("chunk_size must be at least 4096 bytes")
    n_workers = default_workers() if workers is None else workers
    if n_workers < 1:
        raise ValueError("workers must be at least 1")
    if dtype is not None and not isinstance(dtype, torch_mod.dtype):
        raise ValueError(f"dtype must be a torch.dtype, got {dtype!r}")
    if sys.byteorder != "little":  # pragma: no cover - every platform torch ships for
        raise LoaderError("safetensors data is little-endian; this machine is not")
    target = torch_mod.device(device)
    if target.type == "cuda" and target.index is None:
        target = torch_mod.device("cuda", torch_mod.cuda.current_device())  # worker threads have their own
    staged = target.type != "cpu" if staging is None else staging
    jobs = _plan(local_dir, expected, allow_extra_files, allow_data_files)
    run = _Run(torch_mod, target, staged, n_workers, chunk_size)
    try:
        results = sorted(_run_jobs(jobs, run), key=lambda r: r.path)
    finally:
        run.close()
    tensors: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for result in results:
        for name, tensor in result.tensors:
            if name in owner:
                error = VerifiedLoadError(
                    result.path, f"tensor {name!r} is also defined in {owner[name]}", code="duplicate_tensor"
                )
                tensors.clear()
                results.clear()
                raise error
            owner[name] = result.path
            tensors[name] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
    return VerifiedRead(
        tensors=tensors,
        files={r.path: r.kind for r in results},
        metadata={r.path: r.metadata for r in results if r.kind == "safetensors"},
    )


def read_verified_safetensors(
    local_dir: str | os.PathLike[str],
    expected: Mapping[str, str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    workers: int | None = None,
    allow_extra_files: Iterable[str] = (),
    allow_data_files: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """The drop-in for ``safetensors.torch.load_file`` over a whole version: see :func:`read_verified`."""
    return read_verified(
        local_dir,
        expected,
        device=device,
        dtype=dtype,
        workers=workers,
        allow_extra_files=allow_extra_files,
        allow_data_files=allow_data_files,
    ).tensors


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_HEADER_BYTES",
    "LoaderError",
    "SafetensorsHeaderError",
    "SafetensorsLayout",
    "TensorSpec",
    "VerifiedLoadError",
    "VerifiedRead",
    "parse_header_length",
    "parse_safetensors_header",
    "read_verified",
    "read_verified_safetensors",
]
