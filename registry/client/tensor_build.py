"""Building tensors from the bytes that are being hashed: on the CPU straight into per-tensor buffers, on an
accelerator through a ring of pinned staging slots; nothing is returned before the digest matched."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from registry.client.ordered_hasher import OrderedHasher
from registry.client.read_errors import VerifiedLoadError
from registry.client.read_io import MAX_IOVECS, check_eof, drain, read_exact, verify_digest
from registry.client.read_state import FileResult, Job, Run
from registry.client.safetensors_header import (
    DTYPES,
    SafetensorsHeaderError,
    SafetensorsLayout,
    parse_header_length,
    parse_safetensors_header,
)

if TYPE_CHECKING:
    import torch


def read_safetensors(fd: int, size: int, head: bytes, hasher: OrderedHasher, job: Job, run: Run) -> FileResult:
    try:
        n = parse_header_length(head, size)
    except SafetensorsHeaderError as exc:
        drain(fd, size, len(head), hasher, job, run)
        verify_digest(hasher, job)
        raise VerifiedLoadError(job.path, f"malformed safetensors: {exc}", code="malformed_safetensors") from None
    data_start = 8 + n
    if data_start > len(head):
        rest = bytearray(data_start - len(head))
        read_exact(fd, [memoryview(rest)], len(head), job)
        hasher.feed(rest)
        header, prefix = head[8:] + bytes(rest), b""
    else:
        header, prefix = head[8:data_start], head[data_start:]
    try:
        layout = parse_safetensors_header(header, size - data_start)
    except SafetensorsHeaderError as exc:
        # The header is parsed before the digest is known (allocations need it); report a
        # mismatch as a mismatch, and blame the format only for bytes that were verified.
        drain(fd, size, max(len(head), data_start), hasher, job, run)
        verify_digest(hasher, job)
        raise VerifiedLoadError(job.path, f"malformed safetensors: {exc}", code="malformed_safetensors") from None
    dtypes = {}
    for spec in layout.tensors:
        dtype = getattr(run.torch, DTYPES[spec.dtype][0], None)
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
    check_eof(fd, size, job)
    verify_digest(hasher, job)
    # Verified: only now do the bytes become tensors anyone else can see.
    tensors = []
    for spec, raw in zip(layout.tensors, raws, strict=True):
        if spec.dtype == "BOOL" and raw.numel() and bool((raw > 1).any()):
            raise VerifiedLoadError(
                job.path, f"malformed safetensors: tensor {spec.name!r} holds bool values other than 0 and 1",
                code="malformed_safetensors",
            )  # fmt: skip
        tensors.append((spec.name, raw.view(dtypes[spec.dtype]).reshape(spec.shape)))
    return FileResult(job.path, "safetensors", tensors, layout.metadata)


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
    fd: int, layout: SafetensorsLayout, prefix: bytes, hasher: OrderedHasher, job: Job, run: Run
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
            if len(group) == MAX_IOVECS:
                stop = layout.tensors[index].begin + at + length
                break
        read_exact(fd, list(group), layout.data_start + offset, job)
        for view in group:
            hasher.feed(view)
        offset = stop
    return raws


def _read_data_staged(
    fd: int, layout: SafetensorsLayout, prefix: bytes, hasher: OrderedHasher, job: Job, run: Run
) -> list[torch.Tensor]:
    """Read through staging slots: each slot is copied to the device and hashed before it is reused."""
    if not run.cuda:
        return _staged(fd, layout, prefix, hasher, job, run)
    with run.torch.cuda.device(run.device):  # this worker thread's current device is not the caller's
        return _staged(fd, layout, prefix, hasher, job, run)


def _staged(
    fd: int, layout: SafetensorsLayout, prefix: bytes, hasher: OrderedHasher, job: Job, run: Run
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
                read_exact(fd, [view], layout.data_start + offset, job)
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
    slot: Any, raws: list[Any], layout: SafetensorsLayout, start: int, stop: int, stream: Any, run: Run
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


def _slot_release(run: Run, slot: Any, event: Any) -> Callable[[], None]:
    def release() -> None:
        try:
            if event is not None:
                event.synchronize()
        finally:
            run.give_slot(slot)

    return release
