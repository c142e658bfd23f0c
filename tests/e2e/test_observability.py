"""Operations: /v1/ready, Prometheus /metrics (its own scope, no tenant names), request ids in answers and logs."""

from __future__ import annotations

import json
import re
import secrets
import shutil
from pathlib import Path

import httpx
import pytest

from registry.client.http import MirClient
from tests.support.gate import wait_scanned
from tests.support.server import LiveServer, child_pids, live_server
from tests.support.trees import model_dir


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (None if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_ready_reports_database_and_blob_store(http: httpx.Client) -> None:
    answer = http.get("/v1/ready", headers={"Authorization": ""})
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "database": "ok", "blob_store": "ok"}


def test_metrics_need_their_own_scope_and_name_no_tenant(server: LiveServer, tmp_path: Path) -> None:
    admin = MirClient(server.url, server.admin_token)
    ns = f"obs{secrets.token_hex(4)}"
    name = f"secret-model-{secrets.token_hex(3)}"
    reader = admin.create_token("reader", [f"read:{ns}"])["token"]
    scraper = admin.create_token("prometheus", ["metrics"])["token"]
    assert server.cli("push", str(model_dir(tmp_path / "m")), f"{ns}/{name}@1").returncode == 0
    status = wait_scanned(admin, f"{ns}/{name}@1")["scan_status"]
    pulled = server.cli("pull", f"{ns}/{name}@1", str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    with httpx.Client(base_url=server.url, timeout=30) as raw:
        assert raw.get("/metrics").status_code == 401
        denied = raw.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
        assert denied.status_code == 403 and "metrics scope" in denied.json()["error"]["message"]
        answer = raw.get("/metrics", headers={"Authorization": f"Bearer {scraper}"})
        # The scraper's token reads nothing else.
        assert raw.get(f"/v1/artifacts/{ns}/{name}", headers={"Authorization": f"Bearer {scraper}"}).status_code \
            == 403
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert ns not in text and name not in text  # labels are route templates, never paths
    route = "/v1/artifacts/{namespace}/{name}/versions/{ref}/files/{path:path}"
    assert (_sample(text, "mir_http_requests_total", method="GET", route=route, status="200") or 0) >= 1
    assert (_sample(text, "mir_http_sent_bytes_total", route=route) or 0) > 0
    assert (_sample(text, "mir_http_received_bytes_total",
                    route="/v1/artifacts/{namespace}/{name}/versions/{version}/blobs/{digest}") or 0) > 0
    assert (_sample(text, "mir_downloads_total", mode="proxy") or 0) >= 1
    assert _sample(text, "mir_http_request_duration_seconds_count", method="GET", route=route)
    assert (_sample(text, "mir_versions_by_scan_status", status=status) or 0) >= 1
    assert _sample(text, "mir_scan_queue_jobs", state="queued") is not None
    assert _sample(text, "mir_scan_queue_oldest_age_seconds") is not None
    assert _sample(text, "mir_scan_jobs_dead_lettered") is not None
    assert (_sample(text, "mir_audit_log_size") or 0) >= 2
    unknown = httpx.get(f"{server.url}/no/such/{ns}", timeout=30)
    assert unknown.status_code == 404
    again = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {scraper}"}, timeout=30).text
    assert ns not in again and _sample(again, "mir_http_requests_total", route="unmatched", status="404")
    admin.close()


def test_the_server_froze_its_startup_heap_and_reports_its_collections(http: httpx.Client) -> None:
    """``mir serve`` freezes its start-up objects before serving: a full collection then walks only what it
    allocated since (it walked about 190,000 objects, 100-200 ms with every request of the process paused)."""
    text = http.get("/metrics").text
    assert (_sample(text, "mir_gc_frozen_objects") or 0) > 50_000
    for generation in "012":
        assert _sample(text, "python_gc_collections_total", generation=generation) is not None


def test_verify_decisions_are_counted(server: LiveServer, tmp_path: Path) -> None:
    admin = MirClient(server.url, server.admin_token)
    ns = f"obsv{secrets.token_hex(4)}"
    assert server.cli("push", str(model_dir(tmp_path / "m")), f"{ns}/llm@1").returncode == 0
    wait_scanned(admin, f"{ns}/llm@1")
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as raw:
        before = _sample(raw.get("/metrics").text, "mir_verify_decisions_total", decision="deny") or 0
        answer = raw.post("/v1/verify", json={"reference": f"{ns}/llm@1", "nonce": secrets.token_urlsafe(16)})
        assert answer.json()["decision"] == "deny"  # unsigned, under the default policy
        after = _sample(raw.get("/metrics").text, "mir_verify_decisions_total", decision="deny")
    assert after == before + 1
    admin.close()


@pytest.mark.parametrize(("sent", "echoed"), [
    ("trace-0123456789abcdef", True),
    ("short", False),  # too short to be an id anyone relies on
    ("x" * 65, False),
    ("bad id with spaces", False),
], ids=["good", "short", "long", "spaces"])
def test_request_ids(http: httpx.Client, sent: str, echoed: bool) -> None:
    answer = http.get("/v1/health", headers={"X-Request-ID": sent})
    got = answer.headers["x-request-id"]
    assert (got == sent) is echoed
    assert re.fullmatch(r"[A-Za-z0-9._:-]{8,64}", got)
    assert http.get("/v1/health").headers["x-request-id"] != http.get("/v1/health").headers["x-request-id"]


def test_json_logs_carry_the_request_id_and_no_secret(db_url: str, tmp_path: Path) -> None:
    with live_server(db_url, tmp_path, env={"MIR_LOG_FORMAT": "json"}) as srv:
        request_id = "probe-" + secrets.token_hex(8)
        hidden = "/v1/artifacts/acme/x/versions/1/files/a?token=" + secrets.token_hex(8)
        httpx.get(srv.url + hidden, headers={"X-Request-ID": request_id,
                                             "Authorization": f"Bearer {srv.admin_token}"}, timeout=30)
        blobs = srv.data_dir / "blobs"
        moved = tmp_path / "blobs-away"
        shutil.move(blobs, moved)
        try:
            down = httpx.get(srv.url + "/v1/ready", timeout=30)
            assert down.status_code == 503
            assert down.json() == {"status": "not ready", "database": "ok", "blob_store": "unreachable"}
        finally:
            shutil.move(moved, blobs)
        assert httpx.get(srv.url + "/v1/ready", timeout=30).status_code == 200
        log = srv.log()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [r for r in lines if r.get("logger") == "mir.access" and r.get("request_id") == request_id]
    assert access and access[0]["route"] == "/v1/artifacts/{namespace}/{name}/versions/{ref}/files/{path:path}"
    assert access[0]["status"] == 404 and "duration_ms" in access[0]
    # (The first start prints the bootstrap admin token once, on purpose; log records never carry one.)
    assert srv.admin_token not in json.dumps(lines) and "token=" not in log
    assert any(r.get("logger") == "mir.ready" and "blob" in r["message"] for r in lines)


def test_the_embedded_scan_worker_yields_the_cpu_to_the_api(server: LiveServer) -> None:
    """``mir serve``'s scan worker runs ``MIR_EMBEDDED_WORKER_NICE`` (10) steps below the API process, so a push
    never queues behind a scan on a shared machine."""
    children = child_pids(server.process.pid)
    workers = [pid for pid in children if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert workers, f"no embedded scan worker among {children}"
    api_nice = _nice(server.process.pid)
    assert all(_nice(pid) == min(api_nice + 10, 19) for pid in workers)


def _nice(pid: int) -> int:
    """Field 19 of /proc/PID/stat (after the command name, which may hold spaces)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
