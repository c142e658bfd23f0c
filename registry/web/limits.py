"""ASGI middleware that caps request bodies outside the blob upload route.

JSON bodies are parsed in memory, so they get a hard ceiling; blob uploads
stream to disk and are limited by their declared size instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

V1_STREAMED_PATH = re.compile(r"^/v1/(?:artifacts/[^/]+/[^/]+/versions/[^/]+/blobs/|namespaces/[^/]+/blobs/?$)")


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, streamed: re.Pattern[str] = V1_STREAMED_PATH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.streamed.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _reject(send, self.max_bytes)
                return
        seen = 0
        started = False
        too_large = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            # FastAPI turns any failure while reading a body into its own 400 (or a route's 500): once the
            # limit was hit, whatever the app answers is replaced by the 413 that says why.
            nonlocal started, replaced
            if too_large and not started:
                started = replaced = True
                await _reject(send, self.max_bytes)
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                started = True
                await _reject(send, self.max_bytes)


async def _reject(send: Any, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": "request_too_large", "message": f"request body larger than {limit} bytes"}}
    ).encode()
    await send(
        {"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})
