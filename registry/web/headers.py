"""HTTP header values built from user input: printable ASCII only, or the connection dies.

h11 (under uvicorn) refuses to send a header value holding a control
character (NUL, CR, LF, DEL, ...); the response is then dropped and the client
sees no answer at all. Every header value that quotes user input goes through
:func:`header_value`, and :class:`HeaderGuardMiddleware` re-checks every
outgoing header so a value someone forgets to clean still answers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_HEADER_VALUE = 1000


def header_value(text: str, limit: int = MAX_HEADER_VALUE) -> str:
    """``text`` as a safe header value: runs of whitespace become one space, anything not printable ASCII is
    escaped (``\\x7f``, ``\\x85``, ``\\u202e``), and the result is cut to ``limit`` characters."""
    flat = " ".join(text.split())
    out = []
    for ch in flat:
        code = ord(ch)
        if 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)[:limit]


def _bytes_safe(value: bytes) -> bool:
    return all(0x20 <= b < 0x7F or b == 0x09 for b in value)


class HeaderGuardMiddleware:
    """Rewrites any outgoing header value that h11 would refuse, so the client always gets an answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not all(_bytes_safe(value) for _name, value in headers):
                    message = {
                        **message,
                        "headers": [
                            (name, value if _bytes_safe(value) else header_value(value.decode("latin-1")).encode())
                            for name, value in headers
                        ],
                    }
            await send(message)

        await self.app(scope, receive, guarded_send)
