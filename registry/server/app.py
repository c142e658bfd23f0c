"""The FastAPI application: routers, error handlers, limits. OpenAPI is served at /docs, the web interface at
/ui."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from registry import __version__
from registry.api import (
    aliases,
    audit,
    blobs,
    incoming,
    lineage,
    observability,
    signatures,
    synthetic,
    tokens,
    verify,
    versions,
)
from registry.auth.rules import check_rules_cover
from registry.core.context import RegistryContext
from registry.core.errors import install_error_handlers
from registry.core.settings import Settings
from registry.hf import read as hf_read
from registry.hf import write as hf_write
from registry.hf.uploads import STREAMED_PATH as HF_STREAMED
from registry.server.access import enforce_route_rule
from registry.server.openapi import include_options, install_openapi
from registry.ui import actions as ui_actions
from registry.ui import assets as ui_assets
from registry.ui import pages as ui_pages
from registry.web.headers import HeaderGuardMiddleware
from registry.web.limits import V1_STREAMED_PATH, BodyLimitMiddleware
from registry.web.metrics import MetricsMiddleware
from registry.web.nul_guard import NulGuardMiddleware
from registry.web.request_context import RequestContextMiddleware

meta = APIRouter(tags=["meta"])


@meta.get("/v1/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "service": "mir", "version": __version__}


def _routers() -> list[APIRouter]:
    """Every router, in matching order: Hugging Face Hub-compatible routes live at the root, after /v1 and the
    web interface (whose paths the Hub's ``/{namespace}/{name}/resolve/...`` could otherwise take)."""
    modules = (versions, blobs, incoming, aliases, tokens, audit, signatures, lineage, verify, synthetic, observability)
    ui = (ui_assets.router, ui_pages.router, ui_actions.router)
    return [meta, *(m.router for m in modules), *ui, hf_read.router, hf_write.router]


def _streamed_paths() -> re.Pattern[str]:
    """Paths whose bodies stream to the blob store (exempt from the JSON body cap): ``/v1`` blobs and LFS uploads."""
    return re.compile(f"(?:{V1_STREAMED_PATH.pattern})|(?:{HF_STREAMED.pattern})")


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
        docs_url=None,  # served by registry.ui.assets from local assets (no CDN), under the same CSP as the UI
        redoc_url=None,
        dependencies=[Depends(enforce_route_rule)],  # every route's access rule, from one table
    )
    app.state.ctx = ctx
    install_error_handlers(app, api_routes())
    check_rules_cover(api_routes())
    for router in _routers():
        app.include_router(router, **include_options(router))
    install_openapi(app)

    app.add_middleware(NulGuardMiddleware, streamed=_streamed_paths())  # inside the body cap: buffers capped bodies
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_json_bytes, streamed=_streamed_paths()
    )
    app.add_middleware(HeaderGuardMiddleware)  # guards the body limit's own answers too
    app.add_middleware(MetricsMiddleware)  # counts every answer, the guards' included
    app.add_middleware(RequestContextMiddleware)  # outermost: the request id covers everything, logs included
    return app
