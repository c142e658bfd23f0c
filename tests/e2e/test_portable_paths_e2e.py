"""Manifest paths that are not portable (see ``signing.paths``) are refused by the real server, on ``/v1`` pushes,
``mir push`` and HF commits, with a clear 400 and nothing stored."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.test_hf_read import run_hf
from tests.support.server import LiveServer
from tests.support.trees import make_tree

DIGEST = "sha256:" + "1" * 64


@pytest.mark.parametrize(
    "paths",
    [["f", "f."], ["g", "g "], ["CON"], ["sub/nul.txt"], ["Com1.tar.gz"], ["a\u200db"], ["\ufeffa"],
     ["a\uff0fb"], ["\uff0e\uff0e/x"], ["a.txt", "\uff41.txt"]],
)
def test_open_refuses_unportable_paths(http: httpx.Client, paths: list[str]) -> None:
    manifest = {"files": [{"path": p, "size": 1, "digest": DIGEST} for p in paths]}
    response = http.post("/v1/artifacts/acme/unportable/versions", json={"version": "1", "manifest": manifest})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_manifest"
    assert http.get("/v1/artifacts/acme/unportable").status_code == 404


def test_cli_push_of_a_trailing_dot_twin_fails_with_one_line(server: LiveServer, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "m", {"f": b"1", "f.": b"2"})
    pushed = server.cli("push", str(tree), "acme/twins@1")
    assert pushed.returncode != 0
    assert "'f.'" in pushed.stderr + pushed.stdout and "Traceback" not in pushed.stderr


def test_hf_commit_refuses_device_names(server: LiveServer, tmp_path: Path) -> None:
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from huggingface_hub import CommitOperationAdd, HfApi
        api = HfApi()
        api.create_repo("acme/hf-devices", exist_ok=True)
        attempt("aux", lambda: api.create_commit("acme/hf-devices", [CommitOperationAdd("aux.py", b"x")],
                                                 commit_message="x").oid)
        """,
    )
    refused = results["aux"]
    assert not refused["ok"] and refused["status"] == 400 and "device" in refused["message"], refused
