"""API errors: every failure a client can cause is a 4xx with a JSON body.

Shape: ``{"error": {"code": "...", "message": "..."}}``. Handlers below turn
FastAPI's own validation errors and unexpected exceptions into that shape, so
no traceback ever reaches a client.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from registry.core.blobstore import BlobStoreUnavailable
from registry.core.names import InvalidNameError, validate_alias, validate_segment, validate_version

log = logging.getLogger("mir.errors")


class ApiError(Exception):
    """An error with an HTTP status, a stable machine code and a human message."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def not_found(what: str, code: str = "not_found") -> ApiError:
    return ApiError(404, code, f"{what} not found")


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the blob store's or the database's disk running out of space."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        orig = getattr(current, "orig", None)  # SQLAlchemy's wrapper around the driver's error
        if getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL or getattr(orig, "sqlstate", None) == _PG_DISK_FULL:
            return True
        current = current.__cause__ or current.__context__
    return False


def store_unavailable_cause(exc: BaseException) -> BlobStoreUnavailable | None:
    """The blob-store outage behind ``exc``, if that is what it is (answered 503, not 500: retry later)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BlobStoreUnavailable):
            return current
        current = current.__cause__ or current.__context__
    return None


def store_unavailable() -> ApiError:
    """503: the blob store did not answer; nothing was changed by this request. Safe to retry."""
    return ApiError(503, "blob_store_unavailable", "the registry's blob store is unreachable right now; nothing "
                    "was changed. Retry shortly", headers={"Retry-After": "5"})


def insufficient_storage() -> ApiError:
    """507: the write was refused whole (temp file removed, transaction rolled back); retry once space is freed."""
    return ApiError(
        507, "insufficient_storage",
        "the registry's storage is full; nothing was stored. Retry after an operator frees space",
    )


_PATH_NAMES: dict[str, Callable[[str], str]] = {
    "namespace": lambda value: validate_segment(value, "namespace"),
    "name": lambda value: validate_segment(value, "name"),
    "version": validate_version,
    "ref": validate_version,
    "alias": validate_alias,
    "artifact": lambda value: "/".join(validate_segment(part, "name") for part in _two_parts(value)),
}


def _two_parts(value: str) -> list[str]:
    if value.count("/") != 1:
        raise InvalidNameError(f"invalid artifact {value[:200]!r}: expected namespace/name")
    return value.split("/")


def path_name_error(errors: Sequence[Any]) -> ApiError | None:
    """A name or digest in the path or query that breaks its declared pattern: 400 with the naming rule, as for
    names that arrive in a body (``invalid_name``, ``invalid_digest``), not a 422 quoting a regular expression."""
    for err in errors:
        loc, value = err.get("loc", ()), err.get("input")
        if len(loc) != 2 or loc[0] not in ("path", "query") or not isinstance(value, str):
            continue
        if loc[1] == "digest":
            return ApiError(400, "invalid_digest", f"bad digest {value[:80]!r}: expected sha256: and 64 lowercase hex")
        rule = _PATH_NAMES.get(str(loc[1]))
        if rule is not None:
            try:
                rule(value)
            except InvalidNameError as exc:
                return ApiError(400, "invalid_name", str(exc))
            return ApiError(400, "invalid_name", f"invalid {loc[1]} {value[:100]!r}")
    return None


def allowed_methods(routes: Sequence[BaseRoute], path: str) -> list[str]:
    """Every method some route serves at ``path``: a 405's ``Allow`` header names them all, not only those of
    the first route that matched the path (GET and PUT of one path are separate routes)."""
    methods: set[str] = set()
    for route in routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI, routes: Sequence[BaseRoute] = ()) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        named = path_name_error(exc.errors())
        if named is not None:
            return JSONResponse(error_body(named.code, named.message), named.status)
        problems = []
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg')}")
        return JSONResponse(error_body("invalid_request", "; ".join(problems) or "invalid request"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (allow := allowed_methods(routes, request.url.path)):
            headers["Allow"] = ", ".join(allow)
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers)

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        if is_disk_full(exc):
            log.error("storage full on %s %s: %s", request.method, request.url.path, exc)
            full = insufficient_storage()
            return JSONResponse(error_body(full.code, full.message), full.status)
        outage = store_unavailable_cause(exc)
        if outage is not None:
            log.error("blob store unavailable on %s %s: %s", request.method, request.url.path, outage)
            down = store_unavailable()
            return JSONResponse(error_body(down.code, down.message), down.status, headers=down.headers)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(DBAPIError, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return await _storage(request, exc)
