"""Every committed version is scanned by a worker process; malicious content is quarantined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from registry.client.http import MirClient, MirError
from tests.support.gate import MALICIOUS_PICKLE, wait_scanned
from tests.support.server import LiveServer
from tests.support.trees import make_tree


def test_clean_model_scans_clean(server: LiveServer, tmp_path: Path) -> None:
    src = tmp_path / "clean"
    src.mkdir()
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(src / "model.safetensors"))
    (src / "config.json").write_text('{"a": 1}')
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "scan/clean@1")
        assert wait_scanned(client, "scan/clean@1")["scan_status"] == "clean"
        report = client.json("GET", "/v1/artifacts/scan/clean/versions/1/scans")
    assert {f["path"]: f["verdict"] for f in report["files"]} == {"model.safetensors": "clean", "config.json": "clean"}
    assert {f["path"]: f["format"] for f in report["files"]}["model.safetensors"] == "safetensors"
    shown = server.cli("show", "scan/clean@1", check=True).stdout
    assert "scan: clean" in shown


def test_malicious_pickle_is_quarantined(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "evil", {"weights.bin": MALICIOUS_PICKLE, "config.json": b"{}"})
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "scan/evil@1")
        version = wait_scanned(client, "scan/evil@1")
        assert version["scan_status"] == "malicious"
        report = client.json("GET", "/v1/artifacts/scan/evil/versions/1/scans")
        evil = next(f for f in report["files"] if f["path"] == "weights.bin")
        assert evil["verdict"] == "malicious"
        assert any("system" in (f.get("symbol") or f["message"]) for f in evil["findings"])
        with pytest.raises(MirError) as exc:
            client.pull("scan/evil@1", tmp_path / "out")
        assert "quarantine" in exc.value.message.lower()
    assert not (tmp_path / "out" / "weights.bin").exists()
    log = server.cli("audit", "log", "scan/evil", check=True).stdout
    assert "scan.completed" in log and "version.quarantined" in log


def test_unparseable_content_is_not_clean(server: LiveServer, tmp_path: Path) -> None:
    truncated = MALICIOUS_PICKLE.replace(b"cos\nsystem", b"\x80\x04\x95\xff\xff\xff")[:12]
    src = make_tree(tmp_path / "broken", {"model.pt": b"\x80\x04\x95" + b"\x00" * 5 + truncated})
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "scan/broken@1")
        version = wait_scanned(client, "scan/broken@1")
    assert version["scan_status"] in ("error", "suspicious", "malicious")


def test_rescan_is_admin_only_and_audited(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "r", {"notes.txt": b"plain text"})
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(src, "scanre/r@1")
        wait_scanned(admin, "scanre/r@1")
        writer = admin.create_token("w", ["write:scanre"])["token"]
        with MirClient(server.url, writer) as client, pytest.raises(MirError) as exc:
            client.json("POST", "/v1/artifacts/scanre/r/versions/1/rescan")
        assert exc.value.status == 403
        admin.json("POST", "/v1/artifacts/scanre/r/versions/1/rescan")
        assert wait_scanned(admin, "scanre/r@1")["scan_status"] == "clean"


def test_quarantined_version_cannot_be_aliased_without_audited_override(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "evil", {"weights.bin": MALICIOUS_PICKLE})
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(src, "scanalias/evil@1")
        wait_scanned(admin, "scanalias/evil@1")
        with pytest.raises(MirError) as exc:
            admin.set_alias("scanalias/evil", "prod", "1")
        assert exc.value.code == "version_quarantined"
        writer = admin.create_token("w", ["write:scanalias"])["token"]
        with MirClient(server.url, writer) as client, pytest.raises(MirError) as exc:
            client.json("PUT", "/v1/artifacts/scanalias/evil/aliases/prod",
                        json={"version": "1", "override_quarantine": True})
        assert exc.value.status == 403
        admin.json("PUT", "/v1/artifacts/scanalias/evil/aliases/prod",
                   json={"version": "1", "override_quarantine": True, "reason": "forensics"})
    assert "version.quarantine_override" in server.cli("audit", "log", "scanalias/evil", check=True).stdout
