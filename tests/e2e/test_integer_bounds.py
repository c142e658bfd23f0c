"""Numbers from the outside stay within the database columns' range: out of range is a 4xx JSON error, never a
500 (SQLite's driver overflows past 2**63, PostgreSQL's Integer columns past 2**31)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from registry.core.tables import INT32_MAX
from tests.support.server import LiveServer

HUGE = "99999999999999999999"
PAST_INT32 = str(INT32_MAX + 1)



def assert_refused(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"], body


@pytest.mark.parametrize(
    "url",
    [
        f"/v1/artifacts?after={HUGE}",
        f"/v1/artifacts?after={PAST_INT32}",
        f"/v1/audit/entries?after={HUGE}",
        f"/v1/audit/entries?after={PAST_INT32}",
        f"/v1/audit/proof/inclusion?index={PAST_INT32}",
        f"/v1/audit/proof/inclusion?index=0&tree_size={HUGE}",
        f"/v1/audit/proof/consistency?old_size=0&new_size={PAST_INT32}",
    ],
)
def test_out_of_range_queries_are_refused(http: httpx.Client, url: str) -> None:
    assert_refused(http.get(url))


@pytest.mark.parametrize("token_id", [PAST_INT32, HUGE, "0", "-1"])
def test_out_of_range_token_ids_are_refused(http: httpx.Client, token_id: str) -> None:
    assert_refused(http.post(f"/v1/tokens/{token_id}/revoke", json={}))


def test_in_range_edges_still_answer(http: httpx.Client) -> None:
    assert http.get(f"/v1/artifacts?after={INT32_MAX}").json() == {"items": [], "next": None}
    assert http.get(f"/v1/audit/entries?after={INT32_MAX}").json()["items"] == []
    missing = http.post(f"/v1/tokens/{INT32_MAX}/revoke", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "token_not_found"


def test_lineage_cursor_past_every_id_is_an_empty_page(http: httpx.Client, server: LiveServer, tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.json").write_text("{}\n")
    server.cli("push", str(model), "acme/bounds@1", check=True)
    page = http.get("/v1/artifacts/acme/bounds/versions/1/lineage", params={"cursor": "1.9999999999"})
    assert page.status_code == 200, page.text
    assert page.json()["edges"] == []
    assert_refused(http.get("/v1/artifacts/acme/bounds/versions/1/lineage", params={"cursor": "1." + HUGE}))
