"""``mir migrate`` and ``mir db grant``: the schema owner's commands (run by an operator, not the service).

Server-side modules are imported when a command runs, as ``mir serve`` does, so client commands stay light.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

db_app = typer.Typer(help="Database administration, run as the schema's owner", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def migrate() -> None:
    """Bring the schema up to date as its owner (MIR_MIGRATION_DATABASE_URL, else MIR_DATABASE_URL).

    With a separate service role (MIR_DATABASE_SERVICE_ROLE, or MIR_DATABASE_URL's user when it differs from
    the owner's) it then grants that role what `mir serve` needs: it may append to the audit log, never
    rewrite it.
    """
    from sqlalchemy.exc import DBAPIError

    from registry.server.db_roles import RoleError
    from registry.server.migrate import SchemaMismatchError, upgrade_and_grant
    from registry.server.operator_settings import load_settings

    try:
        revision, role = upgrade_and_grant(load_settings())
    except (SchemaMismatchError, RoleError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except DBAPIError as exc:
        err.print(f"[red]error:[/red] the database refused: {_first_line(exc)}")
        raise typer.Exit(1) from exc
    out.print(f"schema is up to date (revision {revision})")
    if role is not None:
        out.print(f"granted the service role {role!r} its rights: the audit log is append-only for it")


@db_app.command("grant")
def grant(
    role: Annotated[str, typer.Option(help="the database role `mir serve` connects as")],
) -> None:
    """Grant ROLE what the service needs on the current schema: append to the audit log, never rewrite it."""
    from sqlalchemy.exc import DBAPIError

    from registry.core.db import make_engine
    from registry.server.db_roles import RoleError, grant_service_role
    from registry.server.operator_settings import load_settings

    engine = make_engine(load_settings().resolved_migration_url)
    try:
        schema = grant_service_role(engine, role)
    except RoleError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except DBAPIError as exc:
        err.print(f"[red]error:[/red] the database refused: {_first_line(exc)}")
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    out.print(f"granted {role!r} the service's rights on schema {schema!r}")


def _first_line(exc: Exception) -> str:
    """The driver's message without SQL or parameters (which may hold URLs), never a traceback."""
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.add_typer(db_app, name="db")
