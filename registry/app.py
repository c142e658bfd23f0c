"""The FastAPI application: routers, error handlers, limits. OpenAPI is served at /docs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from registry import __version__, hf
from registry.api import aliases, audit, blobs, lineage, signatures, synthetic, tokens, verify, versions
from registry.api.openapi import include_options, install_openapi
from registry.context import RegistryContext
from registry.errors import install_error_handlers
from registry.headers import HeaderGuardMiddleware
from registry.limits import BodyLimitMiddleware
from registry.route_access import check_rules_cover, enforce_route_rule
from registry.settings import Settings

meta = APIRouter(tags=["meta"])


@meta.get("/v1/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


def _routers() -> list[APIRouter]:
    """Every router, in matching order: Hugging Face Hub-compatible routes live at the root, after /v1."""
    modules = (versions, blobs, aliases, tokens, audit, signatures, lineage, verify, synthetic)
    return [meta, *(m.router for m in modules), *hf.routers()]


def api_routes() -> list[APIRoute]:
    """Every route the app serves (the docs pages aside): what the access-rule table must cover."""
    return [r for router in _routers() for r in router.routes if isinstance(r, APIRoute)]


def create_app(settings: Settings | None = None, ctx: RegistryContext | None = None) -> FastAPI:
    settings = settings or Settings()
    ctx = ctx or RegistryContext.create(settings)
    app = FastAPI(
        title="mir — model integrity registry",
        version=__version__,
        description="Push, verify and audit models and datasets.",
        dependencies=[Depends(enforce_route_rule)],  # every route's access rule, from one table
    )
    app.state.ctx = ctx
    install_error_handlers(app, api_routes())
    check_rules_cover(api_routes())
    for router in _routers():
        app.include_router(router, **include_options(router))
    install_openapi(app)

    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_json_bytes, streamed=hf.streamed_paths()
    )
    app.add_middleware(HeaderGuardMiddleware)  # outermost: also guards the body limit's own answers
    return app
