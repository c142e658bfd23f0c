"""What one verified read works on: the jobs (one per file), each file's result, and the call's shared state."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.client.read_errors import ReadAborted

if TYPE_CHECKING:
    import torch


DEFAULT_CHUNK_SIZE = 8 << 20
"""Bytes per read (and per staging slot): large enough that syscalls and Python overhead vanish."""


@dataclass(slots=True)
class VerifiedRead:
    """What one verified read produced: tensors, and what was checked without being loaded."""

    tensors: dict[str, torch.Tensor]
    files: dict[str, str]
    """Every expected file -> how it was handled: ``safetensors`` (loaded), ``text`` or ``data`` (checked only)."""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    """Each safetensors file's ``__metadata__``."""


@dataclass(frozen=True, slots=True)
class Job:
    path: str
    source: Path
    size: int
    algorithm: str
    hexdigest: str
    allow_data: bool


@dataclass(slots=True)
class FileResult:
    path: str
    kind: str
    tensors: list[tuple[str, torch.Tensor]]
    metadata: dict[str, str]



class Run:
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
            raise ReadAborted

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
