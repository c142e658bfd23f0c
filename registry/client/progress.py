"""Progress reporting for long transfers, decoupled from how it is displayed.

The client reports bytes; the CLI shows rich progress bars; library users get
silence by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    def task(self, description: str, total: int) -> Advance: ...

    def note(self, text: str) -> None:
        """A one-line message where there is no transfer to show (e.g. nothing to upload)."""


class NoProgress:
    def task(self, description: str, total: int) -> Advance:
        return lambda _n: None

    def note(self, text: str) -> None:
        pass


class RichProgress:
    """Byte-based rich progress bars on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as _RichProgress

        self._bars = _RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
            console=Console(stderr=True),
        )

    def task(self, description: str, total: int) -> Advance:
        task_id = self._bars.add_task(description, total=total)
        return lambda n: self._bars.advance(task_id, n)

    def note(self, text: str) -> None:
        self._bars.console.print(text, highlight=False, markup=False)

    def hashing(self, file_count: int, total: int) -> Advance:
        """A bar for hashing a tree before a push (``signing.hashing.HashProgress``)."""
        return self.task(f"hash {file_count} file(s)", total)

    @contextmanager
    def running(self) -> Iterator[RichProgress]:
        with self._bars:
            yield self
