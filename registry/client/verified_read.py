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

import codecs
import os
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from registry.client.ordered_hasher import OrderedHasher
from registry.client.read_errors import LoaderError, VerifiedLoadError
from registry.client.read_io import check_eof, open_regular, read_exact, verify_digest
from registry.client.read_state import DEFAULT_CHUNK_SIZE, FileResult, Job, Run, VerifiedRead
from registry.client.safetensors_header import (
    MAX_HEADER_BYTES,
    SafetensorsHeaderError,
    SafetensorsLayout,
    TensorSpec,
    parse_header_length,
    parse_safetensors_header,
)
from registry.client.tensor_build import read_safetensors
from scanners.sniff import COMPRESSED, SNIFF_BYTES, Kind, sniff, text_ok
from signing.digests import InvalidDigestError, parse_digest
from signing.hashing import BLAKE3_THREADED_MIN_SIZE, default_workers, new_hasher
from signing.paths import InvalidPathError, validate_relative_path
from signing.tree import TreeError, is_ignored, list_files

if TYPE_CHECKING:
    import torch

MAX_TEXT_CHECK = 64 << 20
"""Largest text file kept in memory to check it does not also parse as a pickle."""

# Kinds refused even when listed in allow_data_files: they are, or can wrap, a pickle.
_PICKLE_KINDS: dict[Kind, str] = {
    Kind.PICKLE: "a pickle",
    Kind.MAYBE_PICKLE: "a protocol 0/1 pickle (or unknown binary starting with a pickle opcode)",
    Kind.ZIP: "a zip archive (the PyTorch checkpoint format, a pickle inside)",
    **{kind: f"a {kind.value} stream (can wrap a pickle, as joblib does)" for kind in COMPRESSED},
}


# -- one file ------------------------------------------------------------------------------------------------------
def _read_file(job: Job, run: Run) -> FileResult:
    torch_mod = run.torch
    fd = open_regular(job)
    threads = run.workers if job.algorithm == "blake3" and job.size >= BLAKE3_THREADED_MIN_SIZE else 1
    hasher = OrderedHasher(new_hasher(job.algorithm, threads))
    try:
        size = os.fstat(fd).st_size
        head = bytearray(min(size, SNIFF_BYTES))
        read_exact(fd, [memoryview(head)], 0, job)
        hasher.feed(head)
        if sniff(bytes(head), size) is Kind.SAFETENSORS:
            return read_safetensors(fd, size, bytes(head), hasher, job, run)
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
    raise without_frames(error)


def without_frames(error: BaseException) -> BaseException:
    """Drop the tracebacks of ``error`` and the exceptions chained to it (they pin frames and buffers)."""
    seen: set[int] = set()
    item: BaseException | None = error
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        item.__traceback__ = None
        item = item.__cause__ or item.__context__
    return error


def _read_other(fd: int, size: int, head: bytes, hasher: OrderedHasher, job: Job, run: Run) -> FileResult:
    """Hash a file that is not safetensors, then decide (on the verified bytes) whether it is acceptable."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    is_text = _text_step(decoder, head, final=len(head) == size)
    kept: bytearray | None = bytearray(head) if size <= MAX_TEXT_CHECK else None
    buf = bytearray(min(run.chunk_size, max(size - len(head), 0)))
    offset = len(head)
    while offset < size:
        run.check_abort()
        view = memoryview(buf)[: min(len(buf), size - offset)]
        read_exact(fd, [view], offset, job)
        hasher.feed(view)
        offset += len(view)
        if is_text:
            is_text = _text_step(decoder, view, final=offset == size)
        if kept is not None and is_text:
            kept += view
    check_eof(fd, size, job)
    verify_digest(hasher, job)
    return FileResult(job.path, _classify_other(job, head, size, is_text, kept), [], {})


def _text_step(decoder: codecs.IncrementalDecoder, data: bytes | memoryview, *, final: bool) -> bool:
    try:
        return text_ok(decoder.decode(data, final=final))
    except UnicodeDecodeError:
        return False


def _classify_other(job: Job, head: bytes, size: int, is_text: bool, kept: bytearray | None) -> str:
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


def _refuse_pickle_text(job: Job, kept: bytearray | None) -> None:
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
) -> list[Job]:
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
        Job(f.path, f.source, f.size, *digests[f.path], allow_data=f.path in allow_data)
        for f in files
        if f.path in digests
    ]
    jobs.sort(key=lambda j: j.size, reverse=True)  # the biggest start first; small ones fill in
    return jobs


def _run_jobs(jobs: list[Job], run: Run) -> list[FileResult]:
    """Run the files on ``run.workers`` threads; the first failure stops the others and is raised.

    On failure nothing read so far stays referenced (not even from the exception's
    frames), so device memory of files that did load is freed at once.
    """
    results: list[FileResult] = []
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
        raise without_frames(error)
    return results


def _collect(futures: list[Future[FileResult]], results: list[FileResult], run: Run) -> BaseException | None:
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
    run = Run(torch_mod, target, staged, n_workers, chunk_size)
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
