"""``GET /v1/artifacts`` for a token that reads a few namespaces among many: every page is filled with readable
artifacts (hidden rows in between do not shorten it), paging with ``limit=1`` walks each readable artifact exactly
once, and no ``next`` cursor is the id of an artifact the caller cannot read."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from registry.client.http import MirClient
from tests.support.server import LiveServer
from tests.support.trees import make_tree

# Creation order: readable artifacts sit behind runs of hidden ones longer than any small multiple of the limit.
LAYOUT = [
    *(f"hidden{i}/m" for i in range(9)),
    "shown-a/one",
    *(f"hidden{i}/n" for i in range(9)),
    "shown-b/two",
    "shown-a/three",
    *(f"hidden{i}/o" for i in range(9)),
    "shown-b/four",
    *(f"hidden{i}/p" for i in range(3)),
]
READABLE = [repo for repo in LAYOUT if repo.startswith("shown-")]


def _walk(server: LiveServer, token: str, limit: int, **params: Any) -> list[tuple[str, int | None]]:
    """Every (artifact, next) pair, following ``next`` until it is null."""
    seen: list[tuple[str, int | None]] = []
    after = 0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(len(LAYOUT) + 2):
            page = http.get("/v1/artifacts", params={"limit": limit, "after": after, **params})
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["items"] or body["next"] is None, body  # never an empty page that says "there is more"
            seen.extend((item["artifact"], body["next"]) for item in body["items"])
            if body["next"] is None:
                return seen
            after = body["next"]
    raise AssertionError(f"paging did not end: {seen}")


@pytest.fixture(scope="module")
def tenants(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Push LAYOUT and return each artifact's id (what the admin's ``next`` cursors say with limit=1)."""
    tree = make_tree(tmp_path_factory.mktemp("listing") / "m", {"w.txt": b"w"})
    with MirClient(server.url, server.admin_token) as client:
        for repo in LAYOUT:
            client.push(tree, f"{repo}@1")
    ids = {repo: after for repo, after in _walk(server, server.admin_token, 1) if after is not None}
    assert list(ids) == LAYOUT
    return ids


@pytest.fixture(scope="module")
def reader(server: LiveServer) -> str:
    with MirClient(server.url, server.admin_token) as client:
        return str(client.create_token("few-namespaces", ["read:shown-a", "write:shown-b"])["token"])


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_paging_walks_every_readable_artifact_once(
    server: LiveServer, tenants: dict[str, int], reader: str, limit: int
) -> None:
    seen = _walk(server, reader, limit)
    assert [repo for repo, _ in seen] == READABLE
    readable_ids = {tenants[repo] for repo in READABLE if repo in tenants}
    for repo, after in seen:
        assert after is None or after in readable_ids, f"next {after} after {repo} is a hidden artifact's id"


def test_first_page_is_full(server: LiveServer, tenants: dict[str, int], reader: str) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reader}"}) as http:
        body = http.get("/v1/artifacts", params={"limit": 1}).json()
        assert [item["artifact"] for item in body["items"]] == READABLE[:1]
        assert body["next"] == tenants[READABLE[0]]
        every = http.get("/v1/artifacts", params={"limit": 1000}).json()
        assert [item["artifact"] for item in every["items"]] == READABLE and every["next"] is None
        # The last readable artifact ends the walk: no cursor pointing into the hidden rows after it.
        last = http.get("/v1/artifacts", params={"limit": 1, "after": tenants[READABLE[-1]]}).json()
        assert last == {"items": [], "next": None}


def test_kind_filter_pages_the_same_way(server: LiveServer, tenants: dict[str, int], reader: str) -> None:
    assert [repo for repo, _ in _walk(server, reader, 1, kind="model")] == READABLE
    assert _walk(server, reader, 1, kind="dataset") == []
