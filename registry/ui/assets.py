"""Static assets, all served by the registry itself (no CDN, no external fonts): the interface's own CSS and
scripts, and Swagger UI's bundle for ``/docs``, taken from the ``fastapi-offline`` package so the API docs work
on an air-gapped network. Only files listed here are served; a path never reaches the file system as given."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from registry.core.errors import ApiError
from registry.ui.errors import UiRoute
from registry.ui.render import render

router = APIRouter(route_class=UiRoute, include_in_schema=False)

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".png": "image/png",
          ".svg": "image/svg+xml"}
_OWN = ("mir.css", "lineage.js", "copy.js", "swagger-init.js")
_SWAGGER = ("swagger-ui-bundle.js", "swagger-ui.css")
STATIC = "/ui/static"


@cache
def _asset(name: str) -> bytes | None:
    if name in _OWN:
        return resources.files("registry.ui").joinpath("static", name).read_bytes()
    if name in _SWAGGER:
        return resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    return None


@router.get(STATIC + "/{path:path}")
def static(path: Annotated[str, Path(max_length=200)]) -> Response:
    body = _asset(path)
    if body is None:
        raise ApiError(404, "not_found", f"no asset {path[:100]!r}")
    suffix = path[path.rfind("."):]
    return Response(body, media_type=_TYPES.get(suffix, "application/octet-stream"),
                    headers={"Cache-Control": "public, max-age=3600"})


@router.get("/docs")
def docs(request: Request) -> Response:
    """Swagger UI over ``/openapi.json``, from local assets, started by a local script (no inline code)."""
    return render(request, "docs.html")
