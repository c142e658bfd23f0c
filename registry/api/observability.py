"""What operators' tools call: readiness for load balancers, Prometheus metrics.

``/v1/health`` says the process answers; ``/v1/ready`` says it can serve (database and blob store reachable),
so a load balancer takes a replica out while its database is down instead of sending it traffic that fails.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from registry.auth.tokens import Context
from registry.web.metrics import REGISTRY, RegistryStateCollector

router = APIRouter(tags=["operations"])
log = logging.getLogger("mir.ready")


@router.get("/v1/ready", responses={503: {"description": "The database or the blob store cannot be reached"}})
def ready(ctx: Context) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with ctx.transaction() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure to reach it means not ready; the reason goes to the log, not the caller
        log.warning("not ready: database: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    problem = ctx.blobs.ready()
    checks["blob_store"] = "ok" if problem is None else "unreachable"
    if problem is not None:
        log.warning("not ready: blob store: %s", problem)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", **checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(ctx: Context) -> Response:
    state = CollectorRegistry(auto_describe=False)
    state.register(RegistryStateCollector(ctx))
    return Response(generate_latest(REGISTRY) + generate_latest(state), media_type=CONTENT_TYPE_LATEST)
