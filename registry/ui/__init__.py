"""The web interface at ``/ui``: server-rendered pages (Jinja2, autoescaped) over the same domain functions and
the same authorization as the API, plus the locally served assets of ``/docs``.

Why server-rendered: every read page works without JavaScript, there is no front-end build to install or audit,
and one strict Content-Security-Policy (scripts from the registry only, no inline code) covers every page. The
lineage graph is the one place that needs script: a small vanilla module in ``static/``.
"""
