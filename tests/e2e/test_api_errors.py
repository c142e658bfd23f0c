"""Hostile and broken requests get a clear JSON 4xx and lose nothing already stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import LiveServer
from tests.support.trees import sha

ZERO = "sha256:" + "0" * 64





def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def open_version(http: httpx.Client, repo: str, version: str, files: list[dict[str, Any]], **kw: Any) -> httpx.Response:
    return http.post(f"/v1/artifacts/{repo}/versions", json={"version": version, "manifest": {"files": files}, **kw})


@pytest.mark.parametrize(
    ("path", "why"),
    [("../escape", "'..'"), ("/etc/passwd", "absolute"), ("a\\b", "backslash"), ("a\x01b", "control"),
     ("a//b", "empty"), ("", "empty")],
)
def test_manifest_path_tricks(http: httpx.Client, path: str, why: str) -> None:
    err = assert_error(open_version(http, "acme/tricks", "1", [{"path": path, "size": 1, "digest": ZERO}]),
                       400, "invalid_manifest")
    assert why in err["message"]


def test_duplicate_paths_and_bad_digests(http: httpx.Client) -> None:
    dup = [{"path": "a", "size": 1, "digest": ZERO}, {"path": "a", "size": 1, "digest": ZERO}]
    assert_error(open_version(http, "acme/dups", "1", dup), 400, "invalid_manifest")
    for digest in ["sha256:xyz", "md5:" + "0" * 32, "SHA256:" + "0" * 64, "blake3:" + "0" * 64]:
        assert_error(open_version(http, "acme/dups", "1", [{"path": "a", "size": 1, "digest": digest}]),
                     400, "invalid_manifest")
    assert_error(open_version(http, "acme/dups", "1", [{"path": "a", "size": -5, "digest": ZERO}]),
                 400, "invalid_manifest")


@pytest.mark.parametrize("repo", ["ac..me/x", "-acme/x", "acme/x y", "acme/" + "x" * 101])
def test_bad_names(http: httpx.Client, repo: str) -> None:
    response = open_version(http, repo, "1", [{"path": "a", "size": 1, "digest": ZERO}])
    assert response.status_code in (400, 404)
    assert "error" in response.json()


def test_bad_version_names_and_kinds(http: httpx.Client) -> None:
    files = [{"path": "a", "size": 1, "digest": ZERO}]
    assert_error(open_version(http, "acme/v", "1..2", files), 400, "invalid_name")
    assert_error(open_version(http, "acme/v", "-x", files), 400, "invalid_name")
    assert_error(open_version(http, "acme/v", "1", files, kind="weights"), 400, "invalid_kind")


def test_malformed_json_and_unknown_fields(http: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    response = http.post("/v1/artifacts/acme/j/versions", content=b"{not json", headers=headers)
    assert_error(response, 422, "invalid_request")
    assert_error(open_version(http, "acme/j", "1", [], surprise=True), 422, "invalid_request")


def test_huge_json_body_is_refused(http: httpx.Client) -> None:
    big = b'{"version": "1", "manifest": {"files": []}, "description": "' + b"x" * (70 << 20) + b'"}'
    response = http.post("/v1/artifacts/acme/huge/versions", content=big, headers={"content-type": "application/json"})
    assert_error(response, 413, "request_too_large")


def test_unknown_things_are_404(http: httpx.Client) -> None:
    assert_error(http.get("/v1/artifacts/acme/nothing"), 404, "artifact_not_found")
    data = b"x"
    assert open_version(http, "acme/known", "1", [{"path": "x", "size": 1, "digest": sha(data)}]).status_code == 201
    http.put(f"/v1/artifacts/acme/known/versions/1/blobs/{sha(data)}", content=data)
    assert http.post("/v1/artifacts/acme/known/versions/1/commit").status_code == 200
    assert_error(http.get("/v1/artifacts/acme/known/versions/9.9"), 404, "version_not_found")
    assert_error(http.get("/v1/artifacts/acme/known/versions/1/files/missing.bin"), 404, "file_not_found")
    assert_error(http.get("/v1/artifacts/acme/known/versions/1/files/..%2Fetc"), 400, "invalid_path")
    assert_error(http.post("/v1/artifacts/acme/known/versions/7/commit"), 404, "version_not_found")


def _open_one(http: httpx.Client, repo: str, data: bytes) -> str:
    response = open_version(http, repo, "1", [{"path": "w.bin", "size": len(data), "digest": sha(data)}])
    assert response.status_code == 201, response.text
    return f"/v1/artifacts/{repo}/versions/1/blobs/{sha(data)}"


def test_wrong_digest_is_refused_and_not_stored(http: httpx.Client, server: LiveServer) -> None:
    data = b"the real bytes"
    url = _open_one(http, "acme/wrongdigest", data)
    assert_error(http.put(url, content=b"other bytes!!!"), 400, "digest_mismatch")
    assert_error(http.post("/v1/artifacts/acme/wrongdigest/versions/1/commit"), 409, "blobs_missing")
    assert not list((server.data_dir / "blobs" / "tmp").glob("*.part"))
    assert http.put(url, content=data).status_code == 200
    assert http.post("/v1/artifacts/acme/wrongdigest/versions/1/commit").status_code == 200


def test_oversize_and_short_bodies(http: httpx.Client) -> None:
    data = b"exactly twenty bytes"
    url = _open_one(http, "acme/sizes", data)
    assert_error(http.put(url, content=data + b"more"), 413, "size_mismatch")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the server must cut it off while streaming
        yield data
        yield b"and then some more"

    assert_error(http.put(url, content=chunked()), 413, "size_mismatch")
    assert_error(http.put(url, content=data[:10]), 400, "size_mismatch")
    assert http.put(url, content=data).status_code == 200


def test_blob_must_belong_to_the_open_version(http: httpx.Client) -> None:
    _open_one(http, "acme/foreign", b"mine")
    other = sha(b"not in the manifest")
    assert_error(http.put(f"/v1/artifacts/acme/foreign/versions/1/blobs/{other}", content=b"not in the manifest"),
                 400, "digest_not_in_manifest")
    bad = http.put("/v1/artifacts/acme/foreign/versions/1/blobs/sha256:abc", content=b"x")
    assert_error(bad, 400, "invalid_digest")


def test_reopening_with_a_different_manifest_conflicts(http: httpx.Client) -> None:
    _open_one(http, "acme/conflict", b"first")
    response = open_version(http, "acme/conflict", "1", [{"path": "w.bin", "size": 6, "digest": sha(b"second")}])
    assert_error(response, 409, "open_version_conflict")
    assert http.delete("/v1/artifacts/acme/conflict/versions/1").status_code == 204
    response = open_version(http, "acme/conflict", "1", [{"path": "w.bin", "size": 6, "digest": sha(b"second")}])
    assert response.status_code == 201


def test_committed_content_survives_a_failed_overwrite(http: httpx.Client, server: LiveServer) -> None:
    data = b"committed content"
    url = _open_one(http, "acme/keep", data)
    http.put(url, content=data)
    http.post("/v1/artifacts/acme/keep/versions/1/commit")
    assert_error(open_version(http, "acme/keep", "1", [{"path": "w.bin", "size": 3, "digest": sha(b"new")}]),
                 409, "version_exists")
    assert_error(http.put(url, content=b"x" * len(data)), 409, "version_exists")
    assert http.get("/v1/artifacts/acme/keep/versions/1/files/w.bin").content == data
