"""A hostile piece of network between a client and the real server: a TCP proxy on loopback.

It forwards bytes both ways and can, on the way back to the client, flip one
byte at a fixed offset of every response body (what a broken middlebox or a
tampering proxy does), or cut every connection once a number of bytes went
through and refuse new ones (a network that goes away mid-download). It also
counts the bytes it carried to the client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Wire:
    url: str
    flip_at: int | None = None  # body offset flipped in every file (application/octet-stream) response
    cut_after: int | None = None  # bytes to the client after which everything is cut
    bytes_down: int = 0
    statuses: list[int] = field(default_factory=list)  # of every response, in the order they began
    cut: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sockets: list[socket.socket] = field(default_factory=list)


def _pipe_up(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(1 << 16):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _pipe_down(wire: Wire, src: socket.socket, dst: socket.socket, listener: socket.socket) -> None:
    """Server to client, tracking response framing (Content-Length) so a body offset can be altered."""
    header = b""
    body_left = 0
    body_pos = 0
    binary = False
    try:
        while data := src.recv(1 << 16):
            out = bytearray()
            view = memoryview(data)
            while view:
                if body_left == 0:
                    header += bytes(view)
                    end = header.find(b"\r\n\r\n")
                    if end < 0:
                        view = view[len(view):]
                        continue
                    head, rest = header[: end + 4], header[end + 4 :]
                    out += head
                    header = b""
                    length, binary = 0, False
                    status_line, *lines = head.split(b"\r\n")
                    with wire._lock:
                        wire.statuses.append(int(status_line.split()[1]))
                    for line in lines:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value.strip())
                        if name.strip().lower() == b"content-type":
                            binary = value.strip().startswith(b"application/octet-stream")
                    body_left, body_pos = length, 0
                    view = memoryview(rest)
                    continue
                take = min(len(view), body_left)
                piece = bytearray(view[:take])
                if binary and wire.flip_at is not None and body_pos <= wire.flip_at < body_pos + take:
                    piece[wire.flip_at - body_pos] ^= 0xFF
                out += piece
                body_pos += take
                body_left -= take
                view = view[take:]
            with wire._lock:
                if wire.cut_after is not None and wire.bytes_down + len(out) >= wire.cut_after:
                    out = out[: max(0, wire.cut_after - wire.bytes_down)]
                    wire.cut = True
                wire.bytes_down += len(out)
            if out:
                dst.sendall(out)
            if wire.cut:
                _cut(wire, listener)
                return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _cut(wire: Wire, listener: socket.socket) -> None:
    with contextlib.suppress(OSError):
        listener.close()
    with wire._lock:
        for sock in wire._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


@contextmanager
def wire_to(upstream_url: str, *, flip_at: int | None = None, cut_after: int | None = None) -> Iterator[Wire]:
    """A proxy in front of ``upstream_url`` (http://127.0.0.1:PORT); yields it, with its own URL."""
    host, port = upstream_url.removeprefix("http://").rsplit(":", 1)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    wire = Wire(f"http://127.0.0.1:{listener.getsockname()[1]}", flip_at=flip_at, cut_after=cut_after)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if wire.cut:
                client.close()
                continue
            server = socket.create_connection((host, int(port)))
            with wire._lock:
                wire._sockets += [client, server]
            threading.Thread(target=_pipe_up, args=(client, server), daemon=True).start()
            threading.Thread(target=_pipe_down, args=(wire, server, client, listener), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield wire
    finally:
        _cut(wire, listener)
        thread.join(timeout=5)
