"""The OpenAPI document: the ``/v1`` routers with their error responses, bearer authentication unless a route's
access rule is public, and the Hugging Face routes left out (they speak the Hub's own protocol)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from registry.api.responses import ERROR_RESPONSES
from registry.auth.rules import RULES, Need
from registry.hf.errors import HfRoute
from registry.ui.errors import UiRoute

BEARER = "bearer"
NO_NUL = "^[^\\x00]*$"
"""Every free-text string refuses NUL (``registry.web.nul_guard``): the document says so, so valid means valid."""
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def include_options(router: APIRouter) -> dict[str, Any]:
    """How the app includes ``router``: ``/v1`` routers with the shared error responses; the Hugging Face routers
    left out of the document. They speak the Hub's protocol and error shape (``{"error": "..."}`` with an
    ``X-Error-Code`` header), which Hugging Face documents; leaving them out beats describing them wrongly."""
    if issubclass(router.route_class, HfRoute | UiRoute):  # the web interface's pages are not the API either
        return {"include_in_schema": False}
    return {"responses": ERROR_RESPONSES}


def _public_operations() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route whose access rule needs no token."""
    return {(method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", path))
            for (method, path), need in RULES.items() if need is Need.PUBLIC}


def _forbid_nul(node: Any) -> None:
    """Give every string schema without its own pattern, format or fixed values the no-NUL pattern."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"pattern", "format", "enum", "const"} & node.keys():
            node["pattern"] = NO_NUL
        for value in node.values():
            _forbid_nul(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_nul(value)


def install_openapi(app: FastAPI) -> None:
    """Build the document once, with a bearer token required unless the route's access rule is public."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                BEARER: {"type": "http", "scheme": "bearer", "description": "an API token, `mir_...`"}
            }
            schema["security"] = [{BEARER: []}]
            public = _public_operations()
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    if (method, path) in public:
                        operation["security"] = []
                    for status, response in operation.get("responses", {}).items():
                        if status[0] in "45":  # errors are JSON, also where the success is a file
                            response["content"] = _ERROR_CONTENT
            _forbid_nul(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
