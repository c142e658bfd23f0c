"""A hostile tenant (an ordinary ``write:`` token) against small files sent inside the open request
(``POST .../versions`` with ``inline`` and ``commit``). Each test is the regression test of one hole; real server,
both databases.

- A manifest could list one digest at two sizes. The answer of what is missing, the inline checks and the commit
  each kept one size per digest (the last path's), so a version committed whose other path declared the blob
  at a length it does not have. A download of that path (or a verification) then found "the stored file has 50
  bytes, the digest names 5000" and marked the blob corrupt: the blob every namespace shares, so another
  tenant's download of its own file answered 500 ``blob_corrupt`` until an operator repaired it. All it took was
  the bytes of a file the victim holds (a public config or tokenizer): with inline contents one request, and
  the three-step push too, and through the HF commit route (an inline file and an LFS pointer to the same oid
  at a made-up size). ``open_version``, which every push goes through, now refuses such a manifest (400), and a
  size claim that disagrees with the blob's recorded size never marks the blob (for versions recorded before
  the rule: their inconsistent path is refused and fails the ``storage`` check, for them alone).
- Inline text with a character outside ASCII (an Arabic-Indic digit) answered 500 ``internal_error`` (a
  traceback in the log): ``b64decode`` raises ValueError, not binascii.Error, for it. And base64 with a line
  break or an extra ``==`` was told 413 ``inline_too_large`` ("may hold 8388608 bytes in all") for a file of
  32 bytes. Both are now a 400 naming the entry and what is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from registry.client.http import MirClient
from tests.support.server import LiveServer


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _open(server: LiveServer, token: str, repo: str, version: str, files: list[tuple[str, int, str]],
          inline: dict[str, str], commit: bool) -> httpx.Response:
    body: dict[str, Any] = {
        "version": version, "inline": inline, "commit": commit,
        "manifest": {"files": [{"path": p, "size": n, "digest": d} for p, n, d in files]},
    }
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as client:
        return client.post(f"/v1/artifacts/{repo}/versions", json=body)


def _tokens(server: LiveServer, *namespaces: str) -> list[str]:
    with MirClient(server.url, server.admin_token) as admin:
        return [admin.create_token(f"tenant-{ns}", [f"write:{ns}"])["token"] for ns in namespaces]


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "three-step"])
def test_a_digest_listed_at_two_sizes_cannot_spoil_another_tenants_blob(server: LiveServer, inline: bool) -> None:
    mode = "in" if inline else "up"
    victim, attacker = _tokens(server, f"victim{mode}", f"attacker{mode}")
    shared = os.urandom(50)  # a file the attacker knows the bytes of (a public config, a tokenizer)
    digest = _digest(shared)
    stored = _open(server, victim, f"victim{mode}/m", "1", [("f.bin", 50, digest)], {digest: _b64(shared)}, True)
    assert stored.status_code == 201 and stored.json()["committed"] is True

    # "a.bin" claims the shared blob at 5000 bytes; "b.bin" (sorted last) at its true 50.
    files = [("a.bin", 5000, digest), ("b.bin", 50, digest)]
    refused = _open(server, attacker, f"attacker{mode}/m", "1", files, {digest: _b64(shared)} if inline else {},
                    commit=inline)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_manifest"
    assert "sizes 5000 and 50" in refused.json()["error"]["message"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {attacker}"}) as client:
        assert client.get(f"/v1/artifacts/attacker{mode}/m/versions/1/files/a.bin").status_code == 404
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {victim}"}) as client:
        served = client.get(f"/v1/artifacts/victim{mode}/m/versions/1/files/f.bin")
        assert (served.status_code, served.content) == (200, shared)


# 32 bytes starting 0xfb 0xff: their base64 starts "+/8", which the URL-safe alphabet spells "-_8".
DATA = b"\xfb\xff" + bytes(range(30))


@pytest.mark.parametrize(
    ("case", "text", "code"),
    [
        pytest.param("nonascii", _b64(DATA)[:-2] + "\u0661=", "invalid_inline", id="non-ascii"),  # was a 500
        pytest.param("linebreak", _b64(DATA)[:20] + "\n" + _b64(DATA)[20:], "size_mismatch", id="line-break"),
        pytest.param("padding", _b64(DATA) + "==", "size_mismatch", id="extra-padding"),  # were 413
        pytest.param("urlsafe", base64.urlsafe_b64encode(DATA).decode(), "invalid_inline", id="urlsafe"),
        pytest.param("unpadded", _b64(DATA).rstrip("="), "invalid_inline", id="unpadded"),
    ],
)
def test_malformed_base64_gets_a_clear_400_and_stores_nothing(
    server: LiveServer, case: str, text: str, code: str
) -> None:
    (token,) = _tokens(server, f"b64{case}")
    repo = f"b64{case}/m"
    digest = _digest(DATA)
    refused = _open(server, token, repo, "1", [("f.bin", len(DATA), digest)], {digest: text}, commit=True)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == code and digest in error["message"]
    assert _open(server, token, repo, "2", [("f.bin", len(DATA), digest)], {}, commit=False).json()["missing"] == [
        digest
    ]


def test_a_hugging_face_commit_cannot_list_one_digest_at_two_sizes(server: LiveServer) -> None:
    """The same hole through the HF commit route: an inline file and an LFS pointer to the same oid with a made-up
    size. Every push opens through ``open_version``, which now refuses it."""
    victim, attacker = _tokens(server, "victimhf", "attackerhf")
    shared = os.urandom(50)
    digest = _digest(shared)
    stored = _open(server, victim, "victimhf/m", "1", [("f.bin", 50, digest)], {digest: _b64(shared)}, True)
    assert stored.status_code == 201
    lines = [
        {"key": "header", "value": {"summary": "s"}},
        {"key": "file", "value": {"path": "b.bin", "content": _b64(shared), "encoding": "base64"}},
        {"key": "lfsFile", "value": {"path": "a.bin", "algo": "sha256", "oid": digest.removeprefix("sha256:"),
                                     "size": 5000}},
    ]
    refused = httpx.post(f"{server.url}/api/models/attackerhf/m/commit/main", content=b"".join(
        json.dumps(line).encode() + b"\n" for line in lines),
        headers={"Authorization": f"Bearer {attacker}", "Content-Type": "application/x-ndjson"})
    assert refused.status_code == 400, refused.text
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {victim}"}) as client:
        served = client.get("/v1/artifacts/victimhf/m/versions/1/files/f.bin")
        assert (served.status_code, served.content) == (200, shared)


def test_a_version_that_claims_a_wrong_size_never_marks_the_shared_blob(server: LiveServer) -> None:
    """Defence in depth, for a version recorded before the rule (made here by editing its row): serving or
    verifying its inconsistent path refuses that path, and the blob every namespace shares stays servable."""
    victim, attacker = _tokens(server, "victimold", "attackerold")
    shared = os.urandom(50)
    digest = _digest(shared)
    for token, repo in ((victim, "victimold/m"), (attacker, "attackerold/m")):
        assert _open(server, token, repo, "1", [("f.bin", 50, digest)], {digest: _b64(shared)}, True).json()[
            "committed"] is True
    engine = create_engine(server.database_url)
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE version_files SET size = 5000 WHERE path = 'f.bin' AND version_id = (SELECT v.id FROM versions v "
            "JOIN artifacts a ON a.id = v.artifact_id WHERE a.namespace = 'attackerold' AND v.version = '1')"
        ))
    engine.dispose()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {attacker}"}) as client:
        assert client.get("/v1/artifacts/attackerold/m/versions/1/files/f.bin").status_code >= 400
        verdict = client.post("/v1/verify", json={"reference": "attackerold/m@1"})
        assert verdict.status_code == 200 and verdict.json()["decision"] != "allow"
        storage = next(c for c in verdict.json()["checks"] if c["check"] == "storage")
        assert storage["ok"] is False
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {victim}"}) as client:
        served = client.get("/v1/artifacts/victimold/m/versions/1/files/f.bin")
        assert (served.status_code, served.content) == (200, shared)
