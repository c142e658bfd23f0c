"""Inputs found by fuzzing and by hand that used to be accepted, crash the connection or answer 500.

Each test talks to the real ``mir serve`` (both databases) with raw HTTP, the Python client or the `mir` CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client.http import MirClient, MirError
from tests.support.server import LiveServer
from tests.support.trees import make_tree

ZERO = "sha256:" + "0" * 64
CONTROL_ESCAPES = ["%0d%0a", "%00", "%7f", "%c2%85", "%01", "%1b", "%e2%80%ae"]





def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


def open_version(http: httpx.Client, repo: str, version: str, files: list[dict[str, Any]]) -> httpx.Response:
    return http.post(f"/v1/artifacts/{repo}/versions", json={"version": version, "manifest": {"files": files}})


def printable_headers(response: httpx.Response) -> bool:
    return all(all(0x20 <= b < 0x7F for b in value) for _name, value in response.headers.raw)


# -- header values built from user input -------------------------------------------------------------


@pytest.mark.parametrize("escape", CONTROL_ESCAPES)
@pytest.mark.parametrize(
    "template",
    [
        "/api/models/ac{c}me/x",
        "/api/models/acme/x{c}y/revision/main",
        "/api/models/acme/x/revision/ma{c}in",
        "/acme/x/resolve/main/a{c}b.bin",
        "/api/datasets/acme/x/tree/main/a{c}b",
        "/v1/artifacts/ac{c}me/x",
        "/v1/artifacts/acme/x/versions/1/files/a{c}b",
    ],
)
def test_control_characters_in_urls_still_get_an_answer(server: LiveServer, template: str, escape: str) -> None:
    """uvicorn used to drop the connection when such a character reached an error header."""
    url = server.url + template.format(c=escape)
    for token in (server.admin_token, None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.get(url, headers=headers)  # raises RemoteProtocolError if the connection is dropped
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text)
        assert printable_headers(response), response.headers.raw


def test_quarantine_reason_with_control_characters_in_download_headers(server: LiveServer, tmp_path: Path) -> None:
    """A descendant of a quarantined version is served with the reason in X-HF-Warning: it must stay sendable."""
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp_path / "d", {"d.jsonl": b"{}\n"}), "hdr/data@1", kind="dataset")
        lineage = [{"type": "trained_on", "parent": {"ref": "hdr/data@1"}}]
        client.push(make_tree(tmp_path / "m", {"w.bin": b"weights"}), "hdr/model@1", lineage=lineage)
        client.quarantine("hdr/data@1", "leak\x7f of \x1b[31m PII \u202e\u0085 in rows")
    response = httpx.get(f"{server.url}/hdr/model/resolve/1/w.bin",
                         headers={"Authorization": f"Bearer {server.admin_token}"})
    assert response.status_code == 200 and response.content == b"weights"
    assert printable_headers(response)
    assert "leak\\x7f of \\x1b[31m PII \\u202e in rows" in response.headers["x-hf-warning"]  # U+0085: a space


# -- NUL characters (PostgreSQL text cannot hold them) ----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/v1/audit/entries?action=version.commit%00x",
        "/v1/audit/entries?after=0&action=%C2%AF%00%C3%81",
        "/v1/artifacts?q=a%00b",
        "/v1/artifacts/acme/x/versions/1/lineage?direction=up%00",
        "/api/models?search=a%00b",
    ],
)
def test_nul_in_a_query_is_a_clear_400_on_both_databases(server: LiveServer, url: str) -> None:
    """Schemathesis found ``action=...%00...`` reaching PostgreSQL and answering 500 (SQLite took it)."""
    response = httpx.get(server.url + url, headers={"Authorization": f"Bearer {server.admin_token}"})
    assert "NUL" in error_of(response, 400, "invalid_request")


def test_nul_in_a_json_string_is_refused_and_stores_nothing(http: httpx.Client, server: LiveServer) -> None:
    before = http.get("/v1/tokens").json()
    raw = rb'{"name": "nul\\u0000-ok\u0000bad", "scopes": ["read:acme"]}'
    response = http.post("/v1/tokens", content=raw, headers={"content-type": "application/json"})
    assert "NUL" in error_of(response, 400, "invalid_request")
    assert http.get("/v1/tokens").json() == before
    escaped_backslash = rb'{"name": "nul-text\\u0000", "scopes": ["read:acme"]}'  # the six characters \u0000
    response = http.post("/v1/tokens", content=escaped_backslash, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "nul-text\\u0000"


# -- request size limits -----------------------------------------------------------------------------


def test_chunked_json_body_over_the_limit_is_413(server: LiveServer) -> None:
    limit = 64 << 20  # the default MIR_MAX_REQUEST_JSON_BYTES

    def body() -> Iterator[bytes]:  # no Content-Length: the limit is only seen while streaming
        yield b'{"version": "1", "manifest": {"files": []}, "description": "'
        block = b"x" * (1 << 20)
        for _ in range(limit >> 20):
            yield block
        yield b'"}'

    auth = {"Authorization": f"Bearer {server.admin_token}", "content-type": "application/json"}
    for path in ("/v1/artifacts/acme/chunked/versions", "/api/models/acme/chunked/commit/main"):
        response = httpx.post(server.url + path, content=body(), headers=auth, timeout=60)
        error_of(response, 413, "request_too_large")


# -- manifest paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "char", ["\u0085", "\u009b", "\u0080", "\u009f", "\u202e", "\u202a", "\u202b", "\u202c", "\u202d", "\u200e",
             "\u200f", "\u2066", "\u2067", "\u2068", "\u2069", "\u061c", "\u2028", "\u2029"],
)
def test_c1_and_bidi_controls_in_manifest_paths_are_refused(http: httpx.Client, char: str) -> None:
    message = error_of(open_version(http, "acme/bidi", "1", [{"path": f"model{char}txt.bin", "size": 1,
                                                             "digest": ZERO}]), 400, "invalid_manifest")
    assert f"U+{ord(char):04X}" in message
    error_of(http.get("/v1/artifacts/acme/bidi"), 404, "artifact_not_found")


@pytest.mark.parametrize(
    "paths", [["Model.bin", "model.bin"], ["README.md", "readme.MD"], ["Sub/a.txt", "sub/b.txt", "SUB"],
              ["straße.txt", "STRASSE.txt"], ["Ω/x", "ω/x"]],
)
def test_paths_differing_only_in_case_are_refused(http: httpx.Client, paths: list[str]) -> None:
    files = [{"path": p, "size": 1, "digest": ZERO} for p in paths]
    message = error_of(open_version(http, "acme/cases", "1", files), 400, "invalid_manifest")
    assert "case" in message


def test_hf_commit_with_case_colliding_paths_is_refused(server: LiveServer) -> None:
    lines = [{"key": "header", "value": {"summary": "s"}}]
    for path in ("config.json", "Config.json"):
        content = base64.b64encode(b"{}").decode()
        lines.append({"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}})
    response = httpx.post(
        f"{server.url}/api/models/acme/hfcase/commit/main",
        content="\n".join(json.dumps(line) for line in lines).encode(),
        headers={"Authorization": f"Bearer {server.admin_token}", "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 400 and "case" in response.headers["x-error-message"], response.text


# -- strict numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["1", True, 1.0, "0x1", None])
def test_sizes_are_not_coerced(http: httpx.Client, size: Any) -> None:
    response = open_version(http, "acme/strict", "1", [{"path": "a", "size": size, "digest": ZERO}])
    assert "size" in error_of(response, 422, "invalid_request")


def test_other_numbers_and_flags_are_not_coerced(http: httpx.Client, server: LiveServer) -> None:
    error_of(http.post("/v1/tokens", json={"name": "t", "scopes": ["read:a"], "expires_in_days": "5"}),
             422, "invalid_request")
    error_of(http.put("/v1/artifacts/acme/strict/aliases/prod", json={"version": "1", "override_quarantine": "true"}),
             422, "invalid_request")
    error_of(open_version(http, "acme/strict", 1, [{"path": "a", "size": 1, "digest": ZERO}]),  # type: ignore[arg-type]
             422, "invalid_request")
    preupload = http.post("/api/models/acme/strict/preupload/main",
                          json={"files": [{"path": "a.bin", "size": "1", "sample": ""}]})
    assert preupload.status_code == 400 and "size" in preupload.headers["x-error-message"], preupload.text
    oid = "0" * 64
    verify = http.post(f"/api/mir-lfs/{oid}/verify?ns=acme", json={"oid": oid, "size": True})
    assert verify.status_code == 400 and "size" in verify.headers["x-error-message"], verify.text
    batch = http.post("/acme/strict.git/info/lfs/objects/batch",
                      json={"operation": "upload", "objects": [{"oid": oid, "size": "1"}]})
    assert batch.status_code == 200 and batch.json()["objects"][0]["error"]["code"] == 422


# -- signed LFS upload URLs --------------------------------------------------------------------------


def test_lfs_upload_url_dies_with_its_token(server: LiveServer) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        writer = admin.create_token("lfs-writer", ["write:lfsrev"])

    def upload_url(token: str, content: bytes) -> str:
        answer = httpx.post(
            f"{server.url}/lfsrev/m.git/info/lfs/objects/batch",
            json={"operation": "upload", "objects": [{"oid": hashlib.sha256(content).hexdigest(),
                                                      "size": len(content)}]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["objects"][0]["actions"]["upload"]["href"])

    first, second = os.urandom(5000), os.urandom(5000)
    href, other_href = upload_url(writer["token"], first), upload_url(writer["token"], second)
    assert "tok=" in href
    tampered = href.replace(f"tok={writer['id']}", "tok=1")  # another token's id: the signature no longer holds
    assert httpx.put(tampered, content=first).status_code == 403
    assert httpx.put(href, content=first).status_code == 200

    with MirClient(server.url, server.admin_token) as admin:
        admin.revoke_token(writer["id"], "left the team")
    refused = httpx.put(other_href, content=second)
    assert refused.status_code == 403 and refused.headers["x-error-code"] == "InvalidUploadUrl"
    assert "revoked" in refused.headers["x-error-message"]
    assert not list((server.data_dir / "blobs" / "tmp").glob(f"{hashlib.sha256(second).hexdigest()}*"))


# -- empty pushes ---------------------------------------------------------------------------------


def test_empty_manifest_is_a_clear_400_and_creates_nothing(http: httpx.Client, server: LiveServer,
                                                           tmp_path: Path) -> None:
    message = error_of(open_version(http, "acme/empty", "1", []), 400, "empty_manifest")
    assert "at least one file" in message
    error_of(http.get("/v1/artifacts/acme/empty"), 404, "artifact_not_found")
    (tmp_path / "nothing" / "sub").mkdir(parents=True)
    result = server.cli("push", str(tmp_path / "nothing"), "acme/empty-cli@1")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no files to push" in result.stderr and "empty_manifest" in result.stderr
    error_of(http.get("/v1/artifacts/acme/empty-cli"), 404, "artifact_not_found")


# -- retried commits -------------------------------------------------------------------------------


def test_recommitting_the_same_manifest_returns_the_committed_version(http: httpx.Client, server: LiveServer,
                                                                       tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"w.bin": os.urandom(3000), "c.json": b"{}"})
    with MirClient(server.url, server.admin_token) as client:
        first = client.push(src, "acme/retry@1")
        # The commit's answer was lost: the client runs the same push again.
        again = client.push(src, "acme/retry@1")
        assert again["state"] == "committed" and again["manifest_digest"] == first["manifest_digest"]
        assert again["uploaded_blobs"] == 0
    files = [{"path": f["path"], "size": f["size"], "digest": f["digest"]} for f in first["files"]]
    reopened = open_version(http, "acme/retry", "1", files)
    assert reopened.status_code == 201 and reopened.json()["missing"] == []
    assert reopened.json()["version"]["state"] == "committed"
    committed = http.post("/v1/artifacts/acme/retry/versions/1/commit")
    assert committed.status_code == 200 and committed.json()["manifest_digest"] == first["manifest_digest"]
    history = http.get("/v1/artifacts/acme/retry/aliases/latest/history").json()
    assert len(history) == 1  # nothing was committed twice
    changed = [*files[:1], {"path": "other.bin", "size": 1, "digest": ZERO}]
    error_of(open_version(http, "acme/retry", "1", changed), 409, "version_exists")


# -- CLI: one clear line, never a traceback ----------------------------------------------------------


def _one_clear_line(result: Any, *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_refusals_are_one_clear_line(server: LiveServer, tmp_path: Path) -> None:
    fifo_dir = make_tree(tmp_path / "fifo", {"a.txt": b"a"})
    os.mkfifo(fifo_dir / "pipe")
    _one_clear_line(server.cli("push", str(fifo_dir), "cli/fifo@1"), "FIFO")

    link_dir = make_tree(tmp_path / "link", {"a.txt": b"a"})
    (link_dir / "passwd").symlink_to("/etc/passwd")
    _one_clear_line(server.cli("push", str(link_dir), "cli/link@1"), "symlink")

    case_dir = make_tree(tmp_path / "case", {"A.txt": b"a", "a.txt": b"b"})
    _one_clear_line(server.cli("push", str(case_dir), "cli/case@1"), "case")

    src = make_tree(tmp_path / "src", {"a.txt": b"a", "sub/b.txt": b"b"})
    server.cli("push", str(src), "cli/ok@1", check=True)
    (tmp_path / "afile").write_bytes(b"x")
    _one_clear_line(server.cli("pull", "cli/ok@1", str(tmp_path / "afile")), "not a directory")
    assert (tmp_path / "afile").read_bytes() == b"x"

    in_the_way = tmp_path / "dirs"
    (in_the_way / "a.txt").mkdir(parents=True)
    _one_clear_line(server.cli("pull", "cli/ok@1", str(in_the_way)), "a.txt", "path_conflict")
    blocked = make_tree(tmp_path / "blocked", {"sub": b"a file where a directory goes"})
    _one_clear_line(server.cli("pull", "cli/ok@1", str(blocked), "--force"), "sub", "path_conflict")
    assert (blocked / "sub").read_bytes() == b"a file where a directory goes"


# -- pull into a directory that holds other files ------------------------------------------------------


def test_pull_into_a_non_empty_directory(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "sub/b.txt": b"b"})
    server.cli("push", str(src), "cli/nonempty@1", check=True)
    dst = make_tree(tmp_path / "dst", {"notes.md": b"mine", "a.txt": b"also mine"})

    refused = server.cli("pull", "cli/nonempty@1", str(dst))
    _one_clear_line(refused, "notes.md", "--force", "directory_not_empty")
    assert (dst / "a.txt").read_bytes() == b"also mine" and not (dst / "sub").exists()

    forced = server.cli("pull", "cli/nonempty@1", str(dst), "--force", check=True)
    assert (dst / "a.txt").read_bytes() == b"a" and (dst / "sub" / "b.txt").read_bytes() == b"b"
    assert (dst / "notes.md").read_bytes() == b"mine"  # --force leaves other files alone, and names them
    assert "not in the version, left: notes.md" in forced.stderr
    assert "replaced (they differed): a.txt" in forced.stderr

    with MirClient(server.url, server.admin_token) as client:
        with pytest.raises(MirError) as exc:
            client.pull("cli/nonempty@1", dst)
        assert exc.value.code == "directory_not_empty"


def test_interrupted_pull_resumes_without_force(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "sub/b.txt": b"b" * 1000, "c.txt": b"c"})
    server.cli("push", str(src), "cli/resume@1", check=True)
    # What a killed pull leaves: some files in place, a temp file of the one being downloaded.
    dst = make_tree(tmp_path / "dst", {"a.txt": b"a", "sub/.b.txt.mir-part": b"bbb"})
    resumed = server.cli("pull", "cli/resume@1", str(dst), check=True)
    assert "3 files verified, 2 downloaded" in resumed.stdout
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == [
        "a.txt", "c.txt", "sub/b.txt"]
