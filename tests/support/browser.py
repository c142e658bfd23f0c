"""Driving Debian's Chromium with Playwright for the web interface tests: no browser is ever downloaded.

The tests fail, never skip, when Chromium is missing: ``make test`` installs it (``apt-get install chromium
chromium-driver``). axe-core is served from ``tests/support/axe/`` at a same-origin URL, so the page's
Content-Security-Policy stays as strict as in production.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("MIR_TEST_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).parent / "axe" / "axe.min.js"
AXE_PATH = "/__test__/axe.min.js"
SERIOUS = ("serious", "critical")


def chromium_path() -> str:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's (apt-get install -y chromium "
                    "chromium-driver; `make test` does) or set MIR_TEST_CHROMIUM")
    return CHROMIUM


@contextmanager
def launched() -> Iterator[Any]:
    """A headless Chromium (Debian's binary) under Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


def only_local(page: Any, base_url: str) -> list[str]:
    """Abort every request that leaves the registry's origin (an air-gapped network); returns what was tried."""
    origin = urlsplit(base_url).netloc
    leaked: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).netloc == origin:
            if urlsplit(url).path == AXE_PATH:
                route.fulfill(body=AXE.read_bytes(), content_type="text/javascript")
            else:
                route.continue_()
        else:
            leaked.append(url)
            route.abort()

    page.route("**/*", handle)
    return leaked


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the current page (axe served from the page's origin)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE_PATH)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"][:5]]}
        for v in result["violations"] if v.get("impact") in SERIOUS
    ]


def sign_in(page: Any, base_url: str, token: str, path: str = "/ui") -> None:
    """Open ``path`` signed out (the sign-in form answers), paste the token, land on ``path``."""
    page.goto(base_url + path)
    page.fill("#token", token)
    page.click("form[action='/ui/login'] button[type=submit]")
    page.wait_for_load_state()
