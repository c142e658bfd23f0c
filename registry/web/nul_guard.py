"""Refuse NUL characters in URLs and JSON bodies before any handler sees them.

PostgreSQL text cannot hold NUL (SQLite can), so a NUL in a query filter or a
free-text field used to reach the database and come back as a 500 on one
backend and a quiet success on the other. No name, digest, filter or reason
mir stores has a use for NUL, so every request that carries one gets the same
clear 400 on both databases. Blob uploads are bytes, not text, and pass through.
Every other body is checked whatever its ``Content-Type`` says: the HF commit
(NDJSON) and LFS batch routes parse their bodies as JSON under any type, or none.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.web.limits import V1_STREAMED_PATH

# In JSON text a NUL can only appear escaped, as \u0000, preceded by an even number of backslashes (an odd
# number means the backslash before ``u`` is itself escaped, and the text is the six characters "\u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def url_has_nul(scope: Scope) -> bool:
    """Whether the decoded path or query string holds a NUL."""
    if "\x00" in scope.get("path", ""):
        return True
    query: bytes = scope.get("query_string", b"")
    return b"\x00" in query or b"\x00" in unquote_to_bytes(query)


def json_has_nul(body: bytes) -> bool:
    """Whether a JSON text holds a NUL inside a string (raw NULs are invalid JSON and fail parsing anyway)."""
    if b"\x00" in body:
        return True
    # The regular expression tries every offset (a push's inline base64 made it a few per cent of the server's
    # CPU): run it only where a substring search finds an escaped zero at all, in either case as it matches.
    if b"\\u0000" not in body and b"\\U0000" not in body:
        return False
    return _JSON_NUL.search(body) is not None


class NulGuardMiddleware:
    """Answers 400 ``invalid_request`` to a request whose URL or body (blob uploads aside) carries a NUL."""

    def __init__(self, app: ASGIApp, streamed: re.Pattern[str] = V1_STREAMED_PATH) -> None:
        self.app = app
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if url_has_nul(scope):
            await _refuse(send, "URLs may not contain NUL characters")
            return
        if self.streamed.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:  # bounded: BodyLimitMiddleware, outside this one, cuts a JSON body over its cap
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if json_has_nul(bytes(body)):
            await _refuse(send, "JSON strings (and request bodies) may not contain NUL characters")
            return
        replay = iter(messages)

        async def replayed_receive() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed_receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": {"code": "invalid_request", "message": message}}).encode()
    await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
