"""A rescan re-runs the scanners: a transient error clears, history stays, verdicts and quarantine follow.

The transient error is real: the first server runs with a scan timeout no scanner process can meet, so
every file's result is ``error``; the second server, on the same database and blobs, scans normally.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file
from sqlalchemy import create_engine, text

from registry.client.http import MirClient, MirError
from tests.support.databases import BACKENDS, database_url
from tests.support.gate import MALICIOUS_PICKLE, wait_scanned
from tests.support.server import live_server
from tests.support.trees import make_tree

FLAKY = {"MIR_SCAN_TIMEOUT_S": "0.001"}


def _clean_model(root: Path) -> Path:
    root.mkdir(parents=True)
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(root / "model.safetensors"))
    (root / "config.json").write_text('{"a": 1}')
    return root


def _at(result: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(result["scanned_at"])


def _wait_status(client: MirClient, ref: str, wanted: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    version = client.show_version(ref)
    while version["scan_status"] != wanted and time.monotonic() < deadline:
        time.sleep(0.3)
        version = client.show_version(ref)
    assert version["scan_status"] == wanted, f"{ref}: {version['scan_status']}, expected {wanted}"
    return version


@pytest.mark.parametrize("backend", BACKENDS)
def test_rescan_clears_a_transient_error_and_keeps_history(backend: str, tmp_path: Path) -> None:
    clean = _clean_model(tmp_path / "clean")
    evil = make_tree(tmp_path / "evil", {"weights.bin": MALICIOUS_PICKLE})
    with database_url(backend, tmp_path) as url:
        with live_server(url, tmp_path, env=FLAKY) as server, MirClient(server.url, server.admin_token) as client:
            client.push(clean, "flaky/model@1")
            client.push(clean, "other/copy@1")  # the same blobs, in another namespace
            client.push(evil, "flaky/evil@1")
            for ref in ("flaky/model@1", "other/copy@1", "flaky/evil@1"):
                assert wait_scanned(client, ref)["scan_status"] == "error"

        with live_server(url, tmp_path) as server, MirClient(server.url, server.admin_token) as client:
            client.json("POST", "/v1/artifacts/flaky/model/versions/1/rescan")
            client.json("POST", "/v1/artifacts/flaky/evil/versions/1/rescan")
            _wait_status(client, "flaky/model@1", "clean")
            _wait_status(client, "flaky/evil@1", "malicious")
            # Another version holding the rescanned blobs gets its verdict recomputed from the new results.
            _wait_status(client, "other/copy@1", "clean")

            report = client.json("GET", "/v1/artifacts/flaky/model/versions/1/scans")
            copied = client.json("GET", "/v1/artifacts/other/copy/versions/1/scans")
            for f in report["files"] + copied["files"]:
                assert f["verdict"] == "clean" and f["scanned_at"]
                # Each version's first scan failed (the copy's commit retried the shared blobs, since an error is
                # never reused); the rescan's clean result is the latest, the version's own error stays as
                # history. The other namespace's error is not in it: history shows only this version's scans.
                assert [h["verdict"] for h in f["history"]] == ["error"]
                assert "timed out" in str(f["history"][0]["findings"])
                assert _at(f["history"][0]) < _at(f)
            first = {f["path"]: _at(f["history"][0]) for f in report["files"]}
            assert all(first[f["path"]] < _at(f["history"][0]) for f in copied["files"])
            assert report["scanned_with"] == report["scanner"]

            assert client.quarantine_status("flaky/evil@1")["status"] == "quarantined"
            with pytest.raises(MirError) as refused:
                client.pull("flaky/evil@1", tmp_path / "out")
            assert "quarantine" in refused.value.message.lower()
            log = server.cli("audit", "log", "flaky/model", check=True).stdout
            assert "scan.requested" in log and "previous_verdict=error" in log, log


@pytest.mark.parametrize("backend", BACKENDS)
def test_scanner_upgrade_queues_background_rescans_once(backend: str, tmp_path: Path) -> None:
    clean = _clean_model(tmp_path / "clean")
    with database_url(backend, tmp_path) as url:
        with live_server(url, tmp_path, env=FLAKY) as server, MirClient(server.url, server.admin_token) as client:
            client.push(clean, "upgrade/model@1")
            assert wait_scanned(client, "upgrade/model@1")["scan_status"] == "error"

        # Results and verdicts recorded by an older scanner version, as after upgrading mir.
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE versions SET scanner_version = '0'"))
            conn.execute(text("UPDATE scan_results SET scanner_version = '0'"))

        two_workers = {"MIR_EMBEDDED_WORKERS": "2"}
        with live_server(url, tmp_path, env=two_workers) as server, \
                MirClient(server.url, server.admin_token) as client:
            _wait_status(client, "upgrade/model@1", "clean")  # nobody asked: the workers queued it at start
            report = client.json("GET", "/v1/artifacts/upgrade/model/versions/1/scans")
        with engine.connect() as conn:
            jobs = conn.scalar(text("SELECT count(*) FROM scan_jobs"))
            recorded = conn.scalar(text("SELECT scanner_version FROM versions"))
        engine.dispose()
    assert jobs == 2  # the commit's scan and one rescan, although two workers started
    assert recorded == report["scanner"].split("/")[-1]
    for f in report["files"]:
        assert f["verdict"] == "clean"
        assert [(h["verdict"], h["scanner"].split("/")[-1]) for h in f["history"]] == [("error", "0")]
