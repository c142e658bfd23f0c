"""Sending one file as a request body with ``sendfile``: the kernel moves the bytes, Python only waits.

httpx would read the file into Python in chunks and write each to the socket (two copies and a Python step
per chunk); ``socket.sendfile`` hands the page cache to the socket directly (TLS connections fall back to
plain sends inside the standard library). The server hashes what arrives and refuses a digest mismatch, so
a file that changed after it was hashed is caught there.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from registry.client.download import Endpoint
from registry.client.progress import Advance

SEND_STEP = 8 << 20  # bytes per sendfile call between progress updates


class UploadNetworkError(Exception):
    """The connection failed before an answer came back."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class Cancellation:
    """Lets another thread stop a ``send_file``: its connection is shut down (the server then stores nothing),
    and a send that has not connected yet never starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def attach(self, sock: socket.socket | None) -> None:
        """Watch ``sock``; UploadNetworkError if the send was cancelled already."""
        with self._lock:
            if self.cancelled:
                raise UploadNetworkError("cancelled")
            self._sock = sock


def send_file(
    endpoint: Endpoint, method: str, url_path: str, path: Path, advance: Advance | None,
    cancellation: Cancellation | None = None,
) -> Answer:
    """``method url_path`` with the file as body; the server's answer (any status)."""
    try:
        conn = endpoint.connect()
    except OSError as exc:
        raise UploadNetworkError(str(exc)) from exc
    try:
        if cancellation is not None:
            cancellation.attach(conn.sock)
        with open(path, "rb") as fh:
            size = _size(fh.fileno())
            conn.putrequest(method, endpoint.path(url_path), skip_accept_encoding=True)
            for name, value in {**endpoint.headers, "Content-Type": "application/octet-stream",
                                "Content-Length": str(size)}.items():
                conn.putheader(name, value)
            try:
                conn.endheaders()
                assert conn.sock is not None
                offset = 0
                while offset < size:
                    sent = conn.sock.sendfile(fh, offset, min(SEND_STEP, size - offset))
                    if not sent:  # the server, owed the rest of the body, would never answer: no waiting
                        raise UploadNetworkError(f"{path} ended after {offset} of {size} bytes while it was sent")
                    offset += sent
                    if advance is not None:
                        advance(sent)
            except OSError as exc:
                # The server may have answered early (e.g. a refusal) and closed: that answer is the news.
                try:
                    response = conn.getresponse()
                except (OSError, http.client.HTTPException):
                    raise UploadNetworkError(str(exc)) from exc
                return Answer(response.status, response.read())
            response = conn.getresponse()
            return Answer(response.status, response.read())
    except http.client.HTTPException as exc:
        raise UploadNetworkError(str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise UploadNetworkError(str(exc)) from exc
    finally:
        conn.close()


def _size(fd: int) -> int:
    return os.fstat(fd).st_size
