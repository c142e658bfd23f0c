"""Prometheus metrics: HTTP traffic measured by a middleware, and the registry's state read at scrape time.

Request counters and latency are labelled by the route *template*, so a label set stays small whatever paths
callers send. The scan queue, verdicts and the audit log's size are read from the database when Prometheus
scrapes, so every replica reports the same shared state and nothing is lost when a process restarts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.artifacts.models import Version
from registry.audit.models import AuditEntry
from registry.core.context import RegistryContext
from registry.core.heap import frozen_objects
from registry.core.tables import utcnow
from registry.scanning.models import ScanJob, ScanTask
from registry.scanning.queue import QUEUED, RUNNING
from registry.scanning.results import GAVE_UP
from registry.web.request_context import route_template

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("mir_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("mir_http_request_duration_seconds", "Time to answer, body included", ["method", "route"],
                    registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
BYTES_IN = Counter("mir_http_received_bytes", "Request body bytes received", ["route"], registry=REGISTRY)
BYTES_OUT = Counter("mir_http_sent_bytes", "Response body bytes sent", ["route"], registry=REGISTRY)
DOWNLOADS = Counter("mir_downloads", "File downloads answered, by how the bytes travel (proxied through the API "
                    "or redirected to the store)", ["mode"], registry=REGISTRY)
VERIFY_DECISIONS = Counter("mir_verify_decisions", "Deploy-gate decisions taken by /v1/verify", ["decision"],
                           registry=REGISTRY)



class FrozenHeapCollector(Collector):
    """How many start-up objects this process froze out of the garbage collector's reach (0: it did not, so
    its full collections walk the whole heap and pause every request; see registry.core.heap)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("mir_gc_frozen_objects", "Start-up objects frozen out of the cyclic garbage "
                                "collector's reach in this process", value=frozen_objects())


GCCollector(registry=REGISTRY)  # collections per generation: how often this process paused to collect
REGISTRY.register(FrozenHeapCollector())

# Methods a route of ours answers; any other (PROPFIND, MKCALENDAR, ... from anyone, signed in or not) is
# counted as "other", so a caller cannot mint a label set per method and route.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

DOWNLOAD_ROUTES = frozenset({
    "/v1/artifacts/{namespace}/{name}/versions/{ref}/files/{path:path}",
    "/{namespace}/{name}/resolve/{revision}/{path:path}",
    "/{plural}/{namespace}/{name}/resolve/{revision}/{path:path}",
})


class MetricsMiddleware:
    """Counts every HTTP request by route template, method and status, its latency and body bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        received = sent = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
            if received:
                BYTES_IN.labels(route).inc(received)
            if sent:
                BYTES_OUT.labels(route).inc(sent)
            if route in DOWNLOAD_ROUTES and method == "GET":
                if status in (200, 206):
                    DOWNLOADS.labels("proxy").inc()
                elif status in (302, 303, 307):
                    DOWNLOADS.labels("redirect").inc()


class RegistryStateCollector(Collector):
    """Gauges read from the database at scrape time: the scan queue (jobs and per-blob tasks: depth, oldest age,
    expired leases, dead letters), verdicts, the audit log's size."""

    def __init__(self, ctx: RegistryContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.ctx.transaction() as s:
            jobs = {state: count for state, count in s.execute(select(ScanJob.state, func.count()).where(
                ScanJob.state.in_((QUEUED, RUNNING))).group_by(ScanJob.state))}
            oldest = s.scalar(select(func.min(ScanJob.created_at)).where(ScanJob.state == QUEUED))
            dead = s.scalar(select(func.count()).select_from(ScanJob).where(
                ScanJob.error.startswith(GAVE_UP))) or 0
            statuses = [(status, count) for status, count in s.execute(select(Version.scan_status, func.count())
                        .where(Version.scan_status.is_not(None)).group_by(Version.scan_status))]
            last_leaf = s.scalar(select(func.max(AuditEntry.leaf_index)))
            tasks = {state: count for state, count in s.execute(select(ScanTask.state, func.count()).where(
                ScanTask.state.in_((QUEUED, RUNNING))).group_by(ScanTask.state))}
            oldest_task = s.scalar(select(func.min(ScanTask.created_at)).where(ScanTask.state == QUEUED))
            stale = utcnow() - timedelta(seconds=self.ctx.settings.scan_lease_s)
            expired = s.scalar(select(func.count()).select_from(ScanTask).where(
                ScanTask.state == RUNNING, ScanTask.claimed_at < stale)) or 0
            dead_tasks = s.scalar(select(func.count()).select_from(ScanTask).where(
                ScanTask.error.startswith(GAVE_UP))) or 0
        queue = GaugeMetricFamily("mir_scan_queue_jobs", "Scan jobs waiting or being worked on", labels=["state"])
        for state in (QUEUED, RUNNING):
            queue.add_metric([state], jobs.get(state, 0))
        yield queue
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("mir_scan_queue_oldest_age_seconds", "Age of the oldest queued scan job",
                                value=max(age, 0.0))
        yield GaugeMetricFamily("mir_scan_jobs_dead_lettered", "Scan jobs given up after their last attempt "
                                "(their versions show scan status error)", value=dead)
        per_blob = GaugeMetricFamily("mir_scan_tasks", "Per-blob scan tasks waiting or being scanned (workers share "
                                     "a version's blobs)", labels=["state"])
        for state in (QUEUED, RUNNING):
            per_blob.add_metric([state], tasks.get(state, 0))
        yield per_blob
        task_age = (utcnow() - oldest_task).total_seconds() if oldest_task is not None else 0.0
        yield GaugeMetricFamily("mir_scan_tasks_oldest_age_seconds", "Age of the oldest queued per-blob scan task",
                                value=max(task_age, 0.0))
        yield GaugeMetricFamily("mir_scan_tasks_lease_expired", "Running scan tasks past their lease (their worker "
                                "died; the next free worker takes them over)", value=expired)
        yield GaugeMetricFamily("mir_scan_tasks_dead_lettered", "Per-blob scan tasks given up after their last "
                                "attempt (their job ends as error)", value=dead_tasks)
        verdicts = GaugeMetricFamily("mir_versions_by_scan_status", "Versions by aggregate scan status",
                                     labels=["status"])
        for status, count in statuses:
            verdicts.add_metric([str(status)], count)
        yield verdicts
        yield GaugeMetricFamily("mir_audit_log_size", "Entries in the append-only audit log (its tree size)",
                                value=0 if last_leaf is None else last_leaf + 1)
