"""Downloading one file of a version at wire speed, verified by SHA-256 while it arrives.

Why not httpx here: its body iterator hands Python 64 KiB pieces, each parsed and
copied by Python code, and that per-piece work (not the network) bounded ``mir
pull``. ``http.client`` fills a caller's buffer in one C-level loop, so each
connection reads straight into preallocated 4 MiB buffers.

The shape, for one file:

- A large file is cut into parts (a multiple of the server's 1 MiB chunk, so a
  range never makes the server read a chunk twice) fetched by several
  connections at once with ``Range`` requests, as hf_transfer and s5cmd do; a
  small one is one plain GET (the server then checks the whole file itself).
- Each connection owns a few buffers. A filled buffer is written at its offset
  (``pwrite``) and queued for hashing; the hasher takes buffers strictly in file
  order on its own thread and hands each back once hashed. A connection that
  runs ahead waits for one of its own buffers, so memory is bounded by
  ``streams x BUFFERS_PER_STREAM x BLOCK`` whatever the file size, and no byte is
  ever read back from disk to be hashed.
- The file is written to ``.<name>.mir-part`` beside the target, preallocated,
  written back as it goes (``sync_file_range`` where Linux has it), fsynced once
  and renamed into place only when size and SHA-256 match the manifest. Nothing
  unverified ever carries the final name.
- A connection that drops is reopened and asks for the rest of its part (a few
  times). If the pull still fails on the network, the part file is cut to the
  prefix that was hashed and fsynced, so the next pull resumes from there
  (hashing that prefix once). Any other failure removes the part file.
- A registry that keeps blobs in an object store may answer with a redirect to
  a short-lived URL of the store. It is followed without the Authorization
  header (the URL authorizes itself), every connection then fetches its parts
  from there, and the bytes are hashed exactly as before: the store is not
  trusted any more than the registry. A refused or expired URL sends the next
  request back to the registry for a fresh one (a bounded number of times).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import functools
import hashlib
import http.client
import os
import queue
import socket
import ssl
import struct
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import certifi

from registry.client.ordered_hasher import OrderedHasher
from registry.client.progress import Advance

MiB = 1 << 20
BLOCK = 4 * MiB  # one read into one preallocated buffer
BUFFERS_PER_STREAM = 2  # one being filled, one being hashed
PART = 32 * MiB  # the bytes one Range request asks for (a multiple of the server's 1 MiB chunk)
# A file smaller than two parts is one plain GET.
NETWORK_RETRIES = 3  # reconnects per part before the pull gives up (and keeps what it verified)
MAX_REDIRECTS = 8  # redirects followed (and refused store URLs renewed) per file
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_NOT_FORWARDED = ("authorization", "cookie", "proxy-authorization")


class DownloadError(Exception):
    """A download that failed; ``code`` says why (the caller maps it to its own error type)."""

    def __init__(self, code: str, message: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.detail = code, message, status, detail


class _NetworkError(Exception):
    """The connection failed (worth retrying; keeps the verified prefix if it keeps failing)."""


class _Stopped(_NetworkError):
    """Another connection of the same download failed first."""


class _Redirected(Exception):
    """The answer moved the download to another URL (or back to the registry): ask again there."""


class _StartOver(Exception):
    """Fetch the file again from byte 0 in one plain GET: the server answered a Range request with the whole
    file (a blob stored before chunk lists existed), or a resumed prefix did not add up to the digest."""


ErrorFromBody = Callable[[int, bytes, str], DownloadError]


@dataclass(frozen=True)
class Endpoint:
    """Where the registry is and how every request identifies itself."""

    base_url: str
    headers: dict[str, str]
    timeout: float = 300.0

    def connect(self) -> http.client.HTTPConnection:
        """A connection to the registry: through the proxy the environment names (``HTTPS_PROXY``/``HTTP_PROXY``,
        ``NO_PROXY``), as httpx and curl do, tunnelled with CONNECT; TLS trusts ``SSL_CERT_FILE`` or certifi."""
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https"):
            raise DownloadError("unreachable", f"unsupported URL scheme in {self.base_url!r}")
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = _proxy_for(parts.scheme, host)
        dial_host, dial_port = (proxy.hostname or "", proxy.port or 8080) if proxy is not None else (host, port)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(dial_host, dial_port, timeout=self.timeout, context=tls_context())
        else:
            conn = http.client.HTTPConnection(dial_host, dial_port, timeout=self.timeout)
        if proxy is not None:
            conn.set_tunnel(host, port, headers=_proxy_auth(proxy))
        conn.connect()
        if parts.scheme == "https":
            return conn
        # Blocking, with the read timeout kept by the kernel, so one recv(MSG_WAITALL) fills a whole buffer
        # (a socket with a Python-level timeout is non-blocking underneath, and MSG_WAITALL then returns early).
        assert conn.sock is not None
        seconds = int(self.timeout)
        timeval = struct.pack("ll", seconds, int((self.timeout - seconds) * 1e6))
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        conn.sock.settimeout(None)
        return conn

    def path(self, url_path: str) -> str:
        return urlsplit(self.base_url).path.rstrip("/") + url_path

    def redirected(self, location: str, current: str) -> tuple[Endpoint, str]:
        """Where a redirect's ``location`` (relative to URL ``current``) points: the endpoint and the path.

        Another host gets none of the credentials sent to the registry.
        """
        target = urlsplit(urllib.parse.urljoin(current, location))
        if target.scheme not in ("http", "https") or not target.hostname:
            raise DownloadError("http_error", f"a download was redirected to an unusable URL ({target.scheme}:)")
        same = urlsplit(current)
        headers = dict(self.headers)
        if (target.scheme, target.netloc) != (same.scheme, same.netloc):
            headers = {k: v for k, v in headers.items() if k.lower() not in _NOT_FORWARDED}
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        return Endpoint(f"{target.scheme}://{target.netloc}", headers, self.timeout), path


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Certificates from ``SSL_CERT_FILE`` when set (a private CA), else certifi's bundle, as httpx uses."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def _proxy_for(scheme: str, host: str) -> SplitResult | None:
    """The proxy the environment names for ``scheme://host``, or None (none set, or ``NO_PROXY`` covers it)."""
    if urllib.request.proxy_bypass(host):
        return None
    url = urllib.request.getproxies().get(scheme)
    if not url:
        return None
    proxy = urlsplit(url if "://" in url else f"http://{url}")
    if proxy.scheme != "http":
        raise DownloadError("unreachable", f"unsupported proxy {proxy.scheme}:// (use an http:// proxy)")
    return proxy


def _proxy_auth(proxy: SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    pair = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


@dataclass(frozen=True)
class FileJob:
    """One file to fetch: its URL path on the registry, where it goes, and what it must hash to."""

    url_path: str
    target: Path
    digest: str  # sha256:<hex>
    size: int


def part_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.mir-part")


def download_file(
    endpoint: Endpoint, job: FileJob, advance: Advance, error_from: ErrorFromBody, *, streams: int = 4,
    part_size: int = PART,
) -> None:
    """Fetch ``job`` into place, verified, or raise ``DownloadError`` leaving nothing under the final name.

    ``streams`` connections fetch ``part_size`` ranges of a file of at least two parts.
    """
    if part_size < 1:
        raise ValueError("part_size must be positive")
    job.target.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(job.target)
    keep_prefix = False
    try:
        try:
            _fetch(endpoint, job, tmp, advance, error_from, streams, part_size)
        except _StartOver:
            try:
                _fetch(endpoint, job, tmp, advance, error_from, 1, part_size, fresh=True)
            except _StartOver as exc:
                raise DownloadError("unreachable", f"download of {job.target.name} kept failing") from exc
    except _NetworkError as exc:
        keep_prefix = tmp.exists() and tmp.stat().st_size > 0  # the verified prefix, for the next pull
        raise DownloadError("unreachable", f"download of {job.target.name} failed: {exc}") from exc
    finally:
        if not keep_prefix:
            tmp.unlink(missing_ok=True)


def _fetch(
    endpoint: Endpoint, job: FileJob, tmp: Path, advance: Advance, error_from: ErrorFromBody, streams: int,
    part_size: int, *, fresh: bool = False,
) -> None:
    if fresh or tmp.is_symlink():  # the temp name is ours: never write through a link planted there
        tmp.unlink(missing_ok=True)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise DownloadError("cannot_write", f"cannot write {tmp}: {exc.strerror or exc}") from exc
    run = _Run(endpoint, job, fd, advance, error_from, part_size)
    try:
        start = run.resume_prefix()
        run.hasher.start_thread()
        if job.size > start:
            _preallocate(fd, job.size)
        use_ranges = streams > 1 and job.size - start >= 2 * part_size
        run.fetch(start, streams if use_ranges else 1, ranged=use_ranges or start > 0)
        actual = "sha256:" + run.hasher.hexdigest()
        if actual != job.digest and start > 0:
            raise _StartOver
        if actual != job.digest:
            raise DownloadError(
                "digest_mismatch",
                f"{job.target}: downloaded content ({job.size} bytes, {actual}) does not match the manifest "
                f"({job.size} bytes, {job.digest}); nothing was written",
            )
        os.fsync(fd)
        os.replace(tmp, job.target)
    except _NetworkError:
        run.keep_verified_prefix()
        raise
    finally:
        run.hasher.close()
        os.close(fd)


class _Run:
    """The shared state of one file's download: the file, the in-order hasher and the part counter."""

    def __init__(
        self, endpoint: Endpoint, job: FileJob, fd: int, advance: Advance, error_from: ErrorFromBody, part_size: int
    ) -> None:
        self.endpoint, self.job, self.fd, self.advance, self.error_from = endpoint, job, fd, advance, error_from
        self.part_size = part_size
        self.hasher = OrderedHasher(hashlib.sha256())  # inline while a resumed prefix is hashed, then threaded
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[memoryview, Callable[[], None]]] = {}
        self._next_hash = 0  # every byte before this offset is written and queued for hashing, in order
        self._hashed = 0  # ... and this many of them are hashed
        self._stopped = threading.Event()
        self._next_part = 0
        # Where parts are fetched from: the registry, or the store URL it redirected to.
        self._source: tuple[Endpoint, str] | None = None
        self._redirects = 0

    # -- where the bytes come from ----------------------------------------------------------------------

    def _target(self) -> tuple[Endpoint, str, bool]:
        with self._lock:
            if self._source is not None:
                return self._source[0], self._source[1], True
        return self.endpoint, self.endpoint.path(self.job.url_path), False

    def _move(self, to: tuple[Endpoint, str] | None, why: str) -> None:
        """Follow a redirect (``to``), or return to the registry (None) after the store refused its URL."""
        with self._lock:
            self._redirects += 1
            if self._redirects > MAX_REDIRECTS:
                raise DownloadError("http_error", f"{self.job.target.name}: too many redirects ({why})")
            self._source = to

    # -- resume ---------------------------------------------------------------------------------------

    def resume_prefix(self) -> int:
        """Hash what a failed earlier pull left (its verified prefix); return where to continue."""
        have = min(os.fstat(self.fd).st_size, self.job.size)
        if have == self.job.size:
            have = 0  # a full-size part file was preallocated by a pull that was killed: its tail is unknown
        os.ftruncate(self.fd, have)
        buffer = bytearray(BLOCK)
        offset = 0
        while offset < have:
            n = os.preadv(self.fd, [memoryview(buffer)[: min(BLOCK, have - offset)]], offset)
            if n <= 0:
                break
            self.hasher.feed(memoryview(buffer)[:n])
            offset += n
        self._next_hash = self._hashed = offset
        if offset:
            self.advance(offset)
        return offset

    def keep_verified_prefix(self) -> None:
        """After a network failure: keep only bytes that were hashed in order, durably, for the next pull."""
        self._abort()
        try:
            self.hasher.hexdigest()  # waits for the queue, so ``_hashed`` is final
        except BaseException:
            return
        os.ftruncate(self.fd, self._hashed)
        os.fsync(self.fd)

    # -- the transfer -------------------------------------------------------------------------------

    def fetch(self, start: int, streams: int, *, ranged: bool) -> None:
        if not ranged:
            self._stream(0, self.job.size, ranged=False)
            return
        self._next_part = start
        if streams == 1:
            self._worker()
            return
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="mir-range") as pool:
            futures = [pool.submit(self._worker) for _ in range(streams)]
            errors: list[BaseException] = []
            for future in futures:
                try:
                    future.result()
                except BaseException as exc:  # the most telling error is raised below
                    self._abort()
                    errors.append(exc)
        if errors:  # the cause, not a connection that stopped because of it; a server's answer before a drop
            errors.sort(key=lambda e: 2 if isinstance(e, _Stopped) else 1 if isinstance(e, _NetworkError) else 0)
            raise errors[0]

    def _take_part(self) -> tuple[int, int] | None:
        with self._lock:
            start = self._next_part
            if start >= self.job.size or self._stopped.is_set():
                return None
            end = min(self.job.size, start + self.part_size)
            self._next_part = end
            return start, end

    def _worker(self) -> None:
        buffers: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(BUFFERS_PER_STREAM):
            buffers.put(bytearray(BLOCK))
        conn: http.client.HTTPConnection | None = None
        try:
            while (part := self._take_part()) is not None:
                conn = self._stream(*part, ranged=True, buffers=buffers, conn=conn)
        except BaseException:
            self._abort()
            raise
        finally:
            if conn is not None:
                conn.close()

    def _abort(self) -> None:
        self._stopped.set()
        with self._lock:
            for _view, release in self._waiting.values():
                release()
            self._waiting.clear()

    def _stream(
        self, start: int, end: int, *, ranged: bool, buffers: queue.SimpleQueue[bytearray] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> http.client.HTTPConnection | None:
        """Bytes ``start..end`` (exclusive) into the file and the hasher; reconnects on a dropped connection."""
        if buffers is None:
            buffers = queue.SimpleQueue()
            for _ in range(BUFFERS_PER_STREAM):
                buffers.put(bytearray(BLOCK))
        offset = start
        failures = 0
        conn_target: Endpoint | None = None
        while offset < end:
            if self._stopped.is_set():
                raise _Stopped("stopped: another connection of this download failed")
            try:
                target = self._target()
                if conn is not None and conn_target is not target[0]:
                    conn.close()
                    conn = None
                if conn is None:
                    conn, conn_target = target[0].connect(), target[0]
                response = self._request(conn, target, offset, end, ranged=ranged)
                while offset < end:
                    buffer = buffers.get()
                    view = memoryview(buffer)[: min(BLOCK, end - offset)]
                    try:
                        _read_exactly(conn, response, view)
                    except BaseException:
                        buffers.put(buffer)
                        raise
                    _write_at(self.fd, view, offset)
                    self._hash_in_order(offset, view, functools.partial(buffers.put, buffer))
                    offset += len(view)
                if response.read(1):
                    raise DownloadError("size_mismatch", f"{self.job.target}: server sent more than {self.job.size} "
                                        "bytes")
                if response.will_close:
                    conn.close()
                    conn = None
            except _Redirected:
                if conn is not None:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                failures += 1
                if failures > NETWORK_RETRIES:
                    raise _NetworkError(str(exc) or type(exc).__name__) from exc
                # Ask for the rest only: a whole-file GET goes on as a Range request (a server that cut a stream
                # because the stored bytes failed their check now answers blob_corrupt instead).
                ranged = ranged or offset > start
        return conn

    def _request(
        self, conn: http.client.HTTPConnection, target: tuple[Endpoint, str, bool], offset: int, end: int, *,
        ranged: bool,
    ) -> http.client.HTTPResponse:
        endpoint, path, redirected = target
        headers = dict(endpoint.headers)
        if ranged:
            headers["Range"] = f"bytes={offset}-{end - 1}"
            if not redirected:  # a store's ETag is its own; its URL names one immutable content address anyway
                headers["If-Range"] = f'"{self.job.digest.removeprefix("sha256:")}"'
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        if response.status in _REDIRECT_STATUSES:
            location = response.getheader("Location")
            response.read()
            if not location:
                raise DownloadError("http_error", f"{self.job.target.name}: redirect without a Location")
            self._move(endpoint.redirected(location, urllib.parse.urljoin(endpoint.base_url, path)), "redirect")
            raise _Redirected
        if redirected and response.status in (400, 403):
            response.read()  # an expired or refused store URL: the registry issues a fresh one
            self._move(None, f"the store refused its URL with HTTP {response.status}")
            raise _Redirected
        if response.status >= 400:
            body = response.read()
            raise self.error_from(response.status, body, response.getheader("Content-Type") or "")
        if ranged and response.status == 200:
            response.close()
            raise _StartOver
        expected_status = 206 if ranged else 200
        length = response.getheader("Content-Length")
        if response.status != expected_status or length is None or int(length) != end - offset:
            response.close()
            raise DownloadError("http_error", f"{self.job.target.name}: unexpected answer HTTP {response.status} "
                                f"with {length} bytes for bytes {offset}-{end - 1}", response.status)
        return response

    def _hash_in_order(self, offset: int, view: memoryview, release: Callable[[], None]) -> None:
        """Queue ``view`` for hashing once every byte before it is queued; ``release`` runs when it is hashed."""
        def hashed(n: int = len(view)) -> None:
            self._hashed += n
            self.advance(n)
            release()

        with self._lock:
            if self._stopped.is_set():
                release()
                return
            self._waiting[offset] = (view, hashed)
            while self._next_hash in self._waiting:
                piece, after = self._waiting.pop(self._next_hash)
                self.hasher.feed(piece, after)
                self._next_hash += len(piece)


def _read_exactly(conn: http.client.HTTPConnection, response: http.client.HTTPResponse, view: memoryview) -> None:
    """Fill ``view`` from the response body: what ``http.client`` already buffered, then straight from the socket
    (one ``recv`` per buffer on a plain connection; TLS goes through ``http.client``)."""
    filled = 0
    sock = conn.sock
    if isinstance(sock, ssl.SSLSocket) or sock is None or response.fp is None:
        while filled < len(view):
            n = response.readinto(view[filled:])
            if not n:
                raise http.client.IncompleteRead(bytes(0), len(view) - filled)
            filled += n
        return
    buffered = response.fp.peek(1)[: len(view)]  # bytes read past the headers (reads the socket only if none)
    if buffered:
        got = response.fp.read1(len(buffered))
        view[: len(got)] = got
        filled = len(got)
        if response.length is not None:
            response.length -= len(got)
    while filled < len(view):
        n = sock.recv_into(view[filled:], len(view) - filled, socket.MSG_WAITALL)
        if not n:
            raise http.client.IncompleteRead(bytes(0), len(view) - filled)
        filled += n
        if response.length is not None:
            response.length -= n


def _write_at(fd: int, view: memoryview, offset: int) -> None:
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
    _start_writeback(fd, offset, len(view))


def _preallocate(fd: int, size: int) -> None:
    with contextlib.suppress(AttributeError, OSError):  # without fallocate the file grows as it is written
        os.posix_fallocate(fd, 0, size)


_SYNC_FILE_RANGE_WRITE = 2
_libc: Any = None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing these bytes to disk now, so the one fsync at the end has little left to do."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True).sync_file_range
            _libc.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        except (AttributeError, OSError):
            _libc = False
    if _libc:
        _libc(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


