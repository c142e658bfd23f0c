"""The FastAPI application: routers, error handlers, limits. OpenAPI is served at /docs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from registry import __version__, hf
from registry.api import aliases, audit, blobs, lineage, signatures, synthetic, tokens, verify, versions
from registry.context import RegistryContext
from registry.errors import install_error_handlers
from registry.limits import BodyLimitMiddleware
from registry.settings import Settings


def create_app(settings: Settings | None = None, ctx: RegistryContext | None = None) -> FastAPI:
    settings = settings or Settings()
    ctx = ctx or RegistryContext.create(settings)
    app = FastAPI(
        title="mir — model integrity registry",
        version=__version__,
        description="Push, verify and audit models and datasets.",
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in (versions, blobs, aliases, tokens, audit, signatures, lineage, verify, synthetic):
        app.include_router(module.router)
    hf.install(app)  # Hugging Face Hub-compatible routes at the root; after /v1 so those match first

    @app.get("/v1/health", tags=["meta"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_json_bytes, streamed=hf.streamed_paths()
    )
    return app
