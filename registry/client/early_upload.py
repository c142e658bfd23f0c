"""Sending a push's large files while they are still being hashed.

A version is opened with its manifest, so every file must be hashed first; hashing a large file takes about as
long as sending it over a fast link, and done one after the other the two add up. Here each large file starts
uploading (``POST /v1/namespaces/{ns}/blobs``, named by the registry from the bytes) as soon as the tree is
listed. When hashing ends and the version is opened, an upload whose digest the registry still misses is
awaited, and one whose digest it already holds is cancelled: a re-pushed file costs at most the bytes sent
while it was hashed, never the user's time.

Files that the artifact's latest version has at the same path and size are not sent early: they are most
likely unchanged, and the open will tell. A registry without the route (404/405) gets the usual upload after
the open.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from registry.client.download import Endpoint
from registry.client.progress import Advance
from registry.client.upload import Answer, Cancellation, UploadNetworkError, send_file
from signing.tree import TreeFile

EARLY_MIN = 8 << 20  # smaller files hash in milliseconds: they wait for the open like any other


@dataclass
class _Relay:
    """Bytes sent before the push knows whether the file is needed, forwarded to its progress bar once it is."""

    sent: int = 0
    target: Advance | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, n: int) -> None:
        with self.lock:
            self.sent += n
            target = self.target
        if target is not None:
            target(n)

    def forward_to(self, target: Advance) -> None:
        with self.lock:
            self.target = target
            already = self.sent
        if already:
            target(already)


@dataclass
class _Early:
    file: TreeFile
    cancellation: Cancellation = field(default_factory=Cancellation)
    relay: _Relay = field(default_factory=_Relay)
    answer: Future[Answer] | None = None


@dataclass(frozen=True)
class Settled:
    """What became of the early uploads once the version was opened."""

    sent: dict[str, str]  # manifest path -> digest the registry stored from its bytes
    still_missing: list[str]  # manifest paths whose early upload failed or was lost: send them the usual way


class EarlyUploads:
    """The large files of one push, each sent while the tree is hashed (at most ``workers`` at once)."""

    def __init__(self, endpoint: Endpoint, namespace: str, workers: int) -> None:
        self._endpoint = endpoint
        self._url = f"/v1/namespaces/{namespace}/blobs"
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mir-early-upload")
        self._files: dict[str, _Early] = {}
        self._answered_before_open: set[str] = set()

    def start(self, files: Iterable[TreeFile], known: set[tuple[str, int]]) -> None:
        """Start sending every file of ``EARLY_MIN`` bytes or more that ``known`` (path, size) does not list."""
        for tree_file in files:
            if tree_file.size >= EARLY_MIN and (tree_file.path, tree_file.size) not in known:
                early = _Early(tree_file)
                early.answer = self._pool.submit(
                    send_file, self._endpoint, "POST", self._url, tree_file.source, early.relay, early.cancellation)
                self._files[tree_file.path] = early

    @property
    def paths(self) -> set[str]:
        return set(self._files)

    def opening(self) -> None:
        """Note which uploads were answered before the version is opened: one of those whose digest the open
        still reports missing lost its bytes meanwhile (``mir gc`` collects them: no version lists them yet), so
        ``settle`` has it sent again rather than counted as sent."""
        self._answered_before_open = {path for path, early in self._files.items()
                                      if early.answer is not None and early.answer.done()}

    def cancel(self) -> None:
        """Stop every upload (the push failed before the open): the registry stores nothing of a cut-off body."""
        for early in self._files.values():
            early.cancellation.cancel()
        self._pool.shutdown(wait=True)

    def settle(self, digests: dict[str, str], missing: set[str], advance: Advance) -> Settled:
        """Await the uploads the registry still ``missing`` after the open, cancel the rest.

        ``digests`` maps manifest paths to what the push hashed; an upload whose stored digest differs means the
        file changed while it was pushed, and fails the push (ChangedWhilePushed). Bytes of awaited uploads go to
        ``advance``.
        """
        for path, early in self._files.items():
            if digests.get(path) in missing:
                if path not in self._answered_before_open:  # else sent again, and counted then
                    early.relay.forward_to(advance)
            else:
                early.cancellation.cancel()
        sent: dict[str, str] = {}
        failed: list[str] = []
        for path, early in self._files.items():
            stored, hashed = _stored_digest(early), digests.get(path)
            if hashed is None:  # listed, then gone before it was hashed: hashing has failed the push already
                continue
            if stored is None:
                if hashed in missing:
                    failed.append(path)
            elif stored != hashed:
                raise ChangedWhilePushed(path, hashed, stored)
            elif hashed in missing and path in self._answered_before_open:
                failed.append(path)
            else:
                sent[path] = stored
        self._pool.shutdown(wait=True)
        return Settled(sent, failed)


class ChangedWhilePushed(Exception):
    def __init__(self, path: str, hashed: str, sent: str) -> None:
        super().__init__(f"{path} changed while it was pushed: the bytes sent to the registry hash to {sent}, the "
                         f"bytes hashed for the manifest to {hashed}; push again once it no longer changes")
        self.path = path


def _stored_digest(early: _Early) -> str | None:
    """The digest the registry answered for this upload; None when it was cancelled or refused."""
    assert early.answer is not None
    try:
        answer = early.answer.result()
    except (UploadNetworkError, OSError):
        return None
    if answer.status != 200:
        return None
    try:
        digest = json.loads(answer.body).get("digest")
    except (ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None
