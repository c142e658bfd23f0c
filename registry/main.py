"""The ``mir`` program: the user's commands plus the operator's (serve, worker, migrate, db, fsck, gc).

This is the one place where the user-side CLI and the server-side commands meet: ``registry.cli`` never
imports the server, and the server never imports the CLI.
"""

from __future__ import annotations

from registry.cli.main import app
from registry.server import cli_db, cli_fsck, cli_gc, cli_serve

cli_serve.register(app)
cli_db.register(app)
cli_fsck.register(app)
cli_gc.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
