"""Errors in the shape ``huggingface_hub`` understands: the ``X-Error-Code`` header decides the exception.

The client keys on ``X-Error-Code`` (RepoNotFound, RevisionNotFound,
EntryNotFound, ...) and appends ``X-Error-Message`` and the body's ``"error"``
to the exception text. Without the code it reports "check your connection" and
silently falls back to a cached copy, so every error here carries one. The
route class below turns our own :class:`registry.core.errors.ApiError` and request
validation errors into the same shape, so the HF routes never answer in the
``/v1`` error format the client cannot read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from registry.core.errors import (
    ApiError,
    insufficient_storage,
    is_disk_full,
    store_unavailable,
    store_unavailable_cause,
)
from registry.web.headers import header_value
from registry.web.limits import BodyTooLarge

log = logging.getLogger("mir.hf")

REPO_NOT_FOUND = "RepoNotFound"
REVISION_NOT_FOUND = "RevisionNotFound"
ENTRY_NOT_FOUND = "EntryNotFound"
BAD_REQUEST = "BadRequest"
# The exact text the client recognises as "your token is wrong" (not "repo not found").
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
_MAX_HEADER_MESSAGE = 1000


class HfError(Exception):
    """An HTTP error for the HF endpoint: status, ``X-Error-Code``, message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.detail = detail  # appended to the body only, so the header keeps an exact, recognisable text


def repo_not_found(repo: str, why: str = "") -> HfError:
    return HfError(404, REPO_NOT_FOUND, f"Repository {repo} not found{': ' + why if why else ''}")


def revision_not_found(repo: str, revision: str, why: str = "") -> HfError:
    return HfError(404, REVISION_NOT_FOUND, f"Invalid rev id: {revision} for {repo}{': ' + why if why else ''}")


def entry_not_found(repo: str, path: str, commit: str, why: str = "") -> HfError:
    """A missing file or folder; ``X-Repo-Commit`` lets the client cache the miss under the right commit."""
    text = why or f"Entry {path!r} not found in {repo}"
    return HfError(404, ENTRY_NOT_FOUND, text, headers={"X-Repo-Commit": commit})


def bad_request(message: str) -> HfError:
    return HfError(400, BAD_REQUEST, message)


def hf_error_response(exc: HfError, *, head: bool = False) -> Response:
    headers = {"X-Error-Code": exc.code, "X-Error-Message": header_value(exc.message, _MAX_HEADER_MESSAGE),
               **{k: header_value(v) for k, v in exc.headers.items()}}
    if head:
        return Response(status_code=exc.status, headers=headers)
    body = f"{exc.message}: {exc.detail}" if exc.detail else exc.message
    return JSONResponse({"error": body}, status_code=exc.status, headers=headers)


def from_api_error(exc: ApiError) -> HfError:
    """Translate an error of the registry's own services (409 version_exists, ...) into the HF shape."""
    if exc.status == 401:
        return HfError(401, "Unauthorized", INVALID_CREDENTIALS, headers=exc.headers, detail=exc.message)
    code = {"artifact_not_found": REPO_NOT_FOUND, "version_not_found": REVISION_NOT_FOUND}.get(exc.code, exc.code)
    message = exc.message
    missing = exc.extra.get("missing")
    if isinstance(missing, list) and missing:
        message += ": " + ", ".join(str(m) for m in missing[:10])
    return HfError(exc.status, code, message, headers=exc.headers)


class HfRoute(APIRoute):
    """A route whose every failure (dependencies included) answers in the HF error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def hf_handler(request: Request) -> Response:
            head = request.method == "HEAD"
            try:
                return await handler(request)
            except HfError as exc:
                return hf_error_response(exc, head=head)
            except ApiError as exc:
                return hf_error_response(from_api_error(exc), head=head)
            except BodyTooLarge:  # the body limit middleware answers 413 in place of this
                return hf_error_response(HfError(413, "RequestTooLarge", "request body too large"), head=head)
            except RequestValidationError as exc:
                return hf_error_response(bad_request(_validation_message(exc.errors())), head=head)
            except Exception as exc:
                if is_disk_full(exc):
                    full = insufficient_storage()
                    return hf_error_response(HfError(full.status, "InsufficientStorage", full.message), head=head)
                if store_unavailable_cause(exc) is not None:
                    down = store_unavailable()
                    return hf_error_response(HfError(down.status, "ServiceUnavailable", down.message), head=head)
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return hf_error_response(HfError(500, "InternalError", "internal server error"), head=head)

        return hf_handler


def _validation_message(errors: Any) -> str:
    problems = []
    for err in list(errors)[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + ("; ".join(problems) or "malformed body")
