"""Failures of web interface routes answer as pages, not JSON: a sign-in form for 401, an explained error for
the rest, with the same status codes as the API (so a denied page is a 403, a missing one a 404)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from registry.core.errors import ApiError, is_disk_full
from registry.ui.render import render
from registry.ui.security import LOGIN_CSRF_COOKIE, add_security_headers, is_https, new_login_csrf
from registry.web.limits import BodyTooLarge

log = logging.getLogger("mir.ui")


def login_page(request: Request, status: int = 200, message: str | None = None, next_url: str = "/ui") -> Response:
    """The sign-in form, with a fresh login CSRF token in a SameSite=Strict cookie."""
    token = new_login_csrf()
    response = render(request, "login.html", status, login_csrf=token, message=message, next_url=next_url)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/ui", httponly=True, samesite="strict",
                        secure=is_https(request))
    return response


def _next_of(request: Request) -> str:
    if request.method != "GET":
        return "/ui"
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def error_page(request: Request, exc: ApiError) -> Response:
    if exc.status == 401:
        return login_page(request, 401, exc.message, _next_of(request))
    return render(request, "error.html", exc.status, status=exc.status, code=exc.code, message=exc.message)


class UiRoute(APIRoute):
    """A web interface route: every failure (the access rule's included) is a page; every answer carries the
    security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ui_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = error_page(request, exc)
            except BodyTooLarge:
                response = error_page(request, ApiError(413, "request_too_large", "the request is too large"))
            except RequestValidationError:
                response = error_page(request, ApiError(400, "invalid_request", "this address is not valid"))
            except Exception as exc:
                if is_disk_full(exc):
                    response = error_page(request, ApiError(507, "insufficient_storage", "the registry is full"))
                else:
                    log.exception("unhandled error on %s %s", request.method, request.url.path)
                    response = error_page(request, ApiError(500, "internal_error", "internal server error"))
            add_security_headers(response)
            return response

        return ui_handler
