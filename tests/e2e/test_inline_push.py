"""Small files inside the open request, and a whole small version pushed (opened, stored, committed) in one.

The contents are checked like uploads (digest, size, the manifest's list), bad ones leave nothing behind, and
what the answer says about storage speaks only of the pushing namespace.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client.http import MirClient, MirError
from signing.hashing import hash_directory
from signing.manifest import FileEntry, Manifest
from tests.support.proxy import Exchange, tampering_proxy
from tests.support.server import LiveServer
from tests.support.trees import make_tree


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _open(client: MirClient, ref: str, files: dict[str, bytes], inline: dict[str, str], commit: bool) -> Any:
    manifest = Manifest.from_entries([FileEntry(p, len(d), _digest(d)) for p, d in files.items()])
    return client.open_version(ref, manifest, inline=inline, commit=commit)


def test_a_small_version_is_pushed_in_one_request(server: LiveServer, tmp_path: Path) -> None:
    files = {"config.json": b'{"hidden_size": 8}', "weights.bin": os.urandom(3000), "empty.txt": b""}
    src = make_tree(tmp_path / "m", files)
    with MirClient(server.url, server.admin_token) as client:
        sent: list[str] = []
        original = client._http.request

        def counting(method: str, url: Any, **kwargs: Any) -> httpx.Response:
            sent.append(f"{method} {url}")
            return original(method, url, **kwargs)

        client._http.request = counting  # type: ignore[method-assign]
        result = client.push(src, "inline/one@1")
        client._http.request = original  # type: ignore[method-assign]
        assert sent == ["POST /v1/artifacts/inline/one/versions"]
        assert result["state"] == "committed" and result["manifest_digest"] == hash_directory(src).digest()
        assert result["uploaded_blobs"] + result["reused_blobs"] == 3
        pulled = client.pull("inline/one@1", tmp_path / "out")
        assert pulled["manifest_digest"] == result["manifest_digest"]
        for path, data in files.items():
            assert (tmp_path / "out" / path).read_bytes() == data
        actions = [e["action"] for e in client.json("GET", "/v1/audit/entries", params={"limit": 1000})["items"]
                   if e.get("artifact") == "inline/one"]
        assert actions[:2] == ["version.opened", "version.committed"]
        assert client.json("GET", "/v1/artifacts/inline/one/versions/1/scans")["files"]  # queued like any commit


def test_large_files_still_upload_and_small_ones_ride_along(server: LiveServer, tmp_path: Path) -> None:
    files = {"config.json": b'{"a": 1}', "big.bin": os.urandom(200_000)}
    src = make_tree(tmp_path / "m", files)
    with MirClient(server.url, server.admin_token) as client:
        opened = _open(client, "inline/mixed@1", files, {_digest(files["config.json"]): _b64(files["config.json"])},
                       commit=True)
        assert opened["committed"] is False and opened["version"]["state"] == "open"
        assert opened["missing"] == [_digest(files["big.bin"])]
        client.abort("inline/mixed@1")
        result = client.push(src, "inline/mixed@2")
        # config.json was stored by the aborted open (as an upload would have been): only big.bin is sent.
        assert (result["state"], result["uploaded_blobs"], result["reused_blobs"]) == ("committed", 1, 1)
        again = client.push(src, "inline/mixed@3")
        assert (again["uploaded_blobs"], again["reused_blobs"]) == (0, 2)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("wrong_bytes", 400, "digest_mismatch"),
        ("not_in_manifest", 400, "digest_not_in_manifest"),
        ("not_base64", 400, "invalid_inline"),
        ("wrong_size", 400, "size_mismatch"),
        ("over_budget", 413, "inline_too_large"),
    ],
)
def test_bad_inline_contents_are_refused_and_leave_nothing(
    server: LiveServer, case: str, status: int, code: str
) -> None:
    data = os.urandom(100)
    digest = _digest(data)
    files = {"f.bin": data}
    inline = {
        "wrong_bytes": {digest: _b64(os.urandom(100))},
        "not_in_manifest": {_digest(b"other"): _b64(b"other")},
        "not_base64": {digest: "%%%not base64%%%"},
        "wrong_size": {digest: _b64(data + b"x")},
        "over_budget": {digest: _b64(data)},
    }[case]
    ref = f"inline/bad-{case.replace('_', '-')}@1"
    with MirClient(server.url, server.admin_token) as client:
        if case == "over_budget":  # a declared size beyond the budget is refused before anything is decoded
            manifest = Manifest.from_entries([FileEntry("f.bin", 9 << 20, digest)])
            with pytest.raises(MirError) as refused:
                client.open_version(ref, manifest, inline=inline, commit=True)
        else:
            with pytest.raises(MirError) as refused:
                _open(client, ref, files, inline, commit=True)
        assert (refused.value.status, refused.value.code) == (status, code)
        with pytest.raises(MirError) as absent:
            client.json("GET", f"/v1/artifacts/{ref.replace('@', '/versions/')}")
        assert absent.value.status == 404
        # Nothing was recorded as held: a plain open still asks for the bytes.
        assert _open(client, f"inline/check-{case.replace('_', '-')}@1", files, {}, commit=False)["missing"] == [
            digest
        ]


def test_inline_contents_need_write_access(server: LiveServer) -> None:
    data = os.urandom(64)
    with MirClient(server.url, server.admin_token) as admin:
        reader = admin.create_token("inline-reader", ["read:inline"])["token"]
    with MirClient(server.url, reader) as client, pytest.raises(MirError) as refused:
        _open(client, "inline/ro@1", {"f.bin": data}, {_digest(data): _b64(data)}, commit=True)
    assert refused.value.status == 403
    with MirClient(server.url, server.admin_token) as admin:
        assert _open(admin, "inline/ro-check@1", {"f.bin": data}, {}, commit=False)["missing"] == [_digest(data)]


def test_the_answer_says_nothing_about_other_namespaces_blobs(server: LiveServer) -> None:
    """Another tenant holding the same bytes changes nothing in what an inline push is told."""
    shared = os.urandom(256)
    with MirClient(server.url, server.admin_token) as admin:
        first = _open(admin, "inlinea/m@1", {"f.bin": shared}, {_digest(shared): _b64(shared)}, commit=True)
        assert first["committed"] is True and first["inline_stored"] == [_digest(shared)]
        tenant = admin.create_token("inline-tenant", ["write:inlineb"])["token"]
    with MirClient(server.url, tenant) as client:
        second = _open(client, "inlineb/m@1", {"f.bin": shared}, {_digest(shared): _b64(shared)}, commit=True)
        assert second["committed"] is True and second["inline_stored"] == [_digest(shared)]
        again = _open(client, "inlineb/m@2", {"f.bin": shared}, {_digest(shared): _b64(shared)}, commit=True)
        assert again["inline_stored"] == []  # its own namespace holds them now: reused


def test_a_client_falls_back_to_uploads_on_a_registry_without_inline_contents(
    server: LiveServer, tmp_path: Path
) -> None:
    """A registry from before inline contents refuses the field as unknown (422): the real server's validation
    of an unknown field stands in for it (added on the way), and the push goes the three-step way."""
    src = make_tree(tmp_path / "m", {"a.txt": b"hello"})

    def as_an_older_registry(ex: Exchange) -> None:
        body = ex.request_json() if ex.method == "POST" and ex.path.endswith("/versions") else None
        if isinstance(body, dict) and "inline" in body:
            ex.set_request_json({**body, "inline_contents_unknown_here": True})

    with tampering_proxy(server.url) as proxy, MirClient(proxy.url, server.admin_token) as client:
        proxy.before = as_an_older_registry
        result = client.push(src, "inline/old@1")
        assert result["state"] == "committed" and result["uploaded_blobs"] == 1
        assert [(ex.method, ex.status) for ex in proxy.seen] == [
            ("POST", 422), ("POST", 201), ("PUT", 200), ("POST", 200)
        ]


def test_many_small_files_fill_one_open_request_and_the_rest_upload(server: LiveServer, tmp_path: Path) -> None:
    """More small files than the registry takes inline in one request: the first 1000 ride along, the others
    are uploaded, and nothing is refused on the way."""
    files = {f"f{i:04d}.txt": f"file {i}\n".encode() for i in range(1003)}
    src = make_tree(tmp_path / "m", files)
    with tampering_proxy(server.url) as proxy, MirClient(proxy.url, server.admin_token) as client:
        result = client.push(src, "inline/many@1")
        assert (result["state"], result["uploaded_blobs"]) == ("committed", 1003)
        assert [(ex.method, ex.status) for ex in proxy.seen] == [("POST", 201), *[("PUT", 200)] * 3, ("POST", 200)]
