"""Rendering pages: one autoescaping Jinja2 environment, the filters templates need, and URLs built from names.

Autoescape is on for every template, and no template marks user text ``|safe``: names, descriptions, paths,
findings and lineage attributes are always text, never markup. Links to user-supplied URLs pass
:func:`safe_href`, so a ``javascript:`` source URL is shown, never made clickable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from registry.auth.tokens import Principal
from registry.ui.security import page_csrf

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def filesize(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in _UNITS:
        if size < 1000 or unit == _UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{value} B"


def when(value: str | datetime | None) -> str:
    """ISO timestamps as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if value is None:
        return "-"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def from_ms(value: int | None) -> str:
    """Milliseconds since the epoch (tree head timestamps) as a UTC time."""
    return "-" if value is None else when(datetime.fromtimestamp(value / 1000, tz=UTC))


def short(digest: str | None, keep: int = 12) -> str:
    if not digest:
        return "-"
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:keep]}…" if hexpart else digest[:keep]


def safe_href(url: object) -> str | None:
    """``url`` when it is an absolute http(s) URL, else None (shown as text, never linked)."""
    if not isinstance(url, str) or any(ord(c) < 0x20 for c in url):
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _seg(value: str) -> str:
    return quote(value, safe="")


def artifact_url(artifact: str) -> str:
    namespace, _, name = artifact.partition("/")
    return f"/ui/artifacts/{_seg(namespace)}/{_seg(name)}"


def version_url(ref: str, page: str = "") -> str:
    """``ns/name@version`` to its version page (or one of its sub-pages)."""
    artifact, _, version = ref.rpartition("@")
    return f"{artifact_url(artifact)}/versions/{_seg(version)}{'/' + page if page else ''}"


def query_url(path: str, **params: object) -> str:
    pairs = [f"{quote(k)}={quote(str(v), safe='')}" for k, v in params.items() if v not in (None, "")]
    return path + ("?" + "&".join(pairs) if pairs else "")


ENV = Environment(loader=PackageLoader("registry.ui", "templates"), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(filesize=filesize, when=when, from_ms=from_ms, short=short, safe_href=safe_href)
ENV.globals.update(artifact_url=artifact_url, version_url=version_url, query_url=query_url)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page: the template with who is signed in and the CSRF token its forms need."""
    principal = getattr(request.state, "principal", None)
    html = ENV.get_template(template).render(
        principal=principal if isinstance(principal, Principal) else None,
        csrf=page_csrf(request),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
