"""A tampering HTTP proxy on a loopback port: the attacker between a job and the real registry.

Every request is forwarded to the real ``mir serve``; a test installs hooks
that rewrite the request before it leaves (``before``) or the answer before
the client sees it (``after``), the way anything on the network path could.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.server import free_port

_FORWARDED = ("authorization", "content-type", "accept")


@dataclass
class Exchange:
    """One request and its answer, as the proxy sees them; hooks may change any field."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    status: int = 0
    answer: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def request_json(self) -> Any:
        return json.loads(self.body)

    def set_request_json(self, data: Any) -> None:
        self.body = json.dumps(data).encode()

    def answer_json(self) -> Any:
        return json.loads(self.answer)

    def set_answer_json(self, data: Any) -> None:
        self.answer = json.dumps(data).encode()


Hook = Callable[[Exchange], None]


class TamperingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self.before: Hook | None = None
        self.after: Hook | None = None
        self.seen: list[Exchange] = []

    def reset(self) -> None:
        self.before = self.after = None

    async def _handle(self, request: Request) -> Response:
        ex = Exchange(request.method, request.url.path, dict(request.query_params), await request.body())
        if self.before is not None:
            self.before(ex)
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=120) as client:
            upstream = await client.request(ex.method, ex.path, params=ex.query, content=ex.body, headers=headers)
        ex.status, ex.answer = upstream.status_code, upstream.content
        ex.headers = {"content-type": upstream.headers.get("content-type", "application/json")}
        if self.after is not None and upstream.status_code < 400:
            self.after(ex)
        self.seen.append(ex)
        return Response(ex.answer, status_code=ex.status, headers=ex.headers)


@contextmanager
def tampering_proxy(upstream: str) -> Iterator[TamperingProxy]:
    """Start the proxy on a free loopback port in a background thread; stop it on exit."""
    proxy = TamperingProxy(upstream)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
    app = Starlette(routes=[Route("/{path:path}", proxy._handle, methods=methods)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="tampering-proxy", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the tampering proxy did not start")
        time.sleep(0.02)
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        server.should_exit = True
        thread.join(timeout=15)
