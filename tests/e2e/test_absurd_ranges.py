"""Range headers whose numbers are longer than any file size (thousands of digits): answered 416, or ignored
with the whole file, on ``/v1`` downloads and HF resolve; never a 500 or a dropped connection."""

from __future__ import annotations

import httpx
import pytest

from registry.client.http import MirClient
from tests.support.server import LiveServer

NINES = "9" * 5000
CONTENT = bytes(range(256)) * 40


@pytest.fixture(scope="module")
def pushed(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("ranges")
    (root / "w.bin").write_bytes(CONTENT)
    with MirClient(server.url, server.admin_token) as client:
        client.push(root, "acme/ranges@1")
    return "acme/ranges"


@pytest.mark.parametrize("where", ["v1", "hf"])
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"bytes=0-{NINES}", (206, 0, len(CONTENT))),  # the end is capped at the last byte
        (f"bytes=-{NINES}", (206, 0, len(CONTENT))),  # a suffix longer than the file is the whole file
        (f"bytes={NINES}-", (416, 0, 0)),  # starts past the end
        (f"bytes={NINES}-{NINES}", (416, 0, 0)),
        (f"bytes=10-{'0' * 5000}11", (206, 10, 12)),  # leading zeros still spell a small number
        (f"bytes={'1' * 20}-", (416, 0, 0)),  # just past int64
    ],
)
def test_huge_range_numbers(
    http: httpx.Client, pushed: str, where: str, header: str, expected: tuple[int, int, int]
) -> None:
    url = f"/v1/artifacts/{pushed}/versions/1/files/w.bin" if where == "v1" else f"/{pushed}/resolve/1/w.bin"
    response = http.get(url, headers={"Range": header})
    status, start, stop = expected
    assert response.status_code == status, response.text[:300]
    if status == 416:
        assert response.headers["Content-Range"] == f"bytes */{len(CONTENT)}"
    else:
        assert response.content == CONTENT[start:stop]
        assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(CONTENT)}"
