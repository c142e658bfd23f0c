"""Hashing pieces of memory in the order they were read, inline or on a helper thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


class OrderedHasher:
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
