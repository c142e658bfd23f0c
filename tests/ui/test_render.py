"""The web interface's escaping and redirect rules, without a server: what makes user text inert."""

from __future__ import annotations

import pytest

from registry.ui.pages import safe_next
from registry.ui.render import ENV, filesize, safe_href, version_url


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JAVASCRIPT:alert(1)", " javascript:x", "data:text/html,x",
                                 "vbscript:x", "//evil.example", "/relative", "http:/x", "https://a\n.example"])
def test_only_absolute_http_urls_become_links(url: str) -> None:
    assert safe_href(url) is None


def test_http_urls_are_links() -> None:
    assert safe_href("https://huggingface.co/org/base") == "https://huggingface.co/org/base"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/ui", "/\\evil.example", "/uix",
                                    "/v1/tokens", "", "/ui\n/x", "javascript:alert(1)"])
def test_sign_in_never_redirects_off_the_interface(target: str) -> None:
    assert safe_next(target) == "/ui"


def test_sign_in_keeps_an_interface_path() -> None:
    assert safe_next("/ui/artifacts/a/b?x=1") == "/ui/artifacts/a/b?x=1"


def test_templates_escape_every_user_string() -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
    html = ENV.from_string("<p title='{{ x }}'>{{ x }}</p>").render(x=hostile)
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html and "&#34;&gt;" in html


def test_urls_quote_every_segment() -> None:
    assert version_url("a/b@1.0+x") == "/ui/artifacts/a/b/versions/1.0%2Bx"
    assert version_url("a/b@1", "lineage") == "/ui/artifacts/a/b/versions/1/lineage"


def test_sizes_read_like_a_file_manager() -> None:
    assert [filesize(n) for n in (None, 0, 999, 1000, 1_500_000)] == ["-", "0 B", "999 B", "1.0 KB", "1.5 MB"]
