"""Settings for the operator's commands: a bad ``MIR_*`` value is one clear line and exit 2, not a traceback."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from registry.core.settings import Settings

_err = Console(stderr=True, soft_wrap=True)


def load_settings(**overrides: Any) -> Settings:
    """``Settings`` from the environment (and the command's options), or exit 2 naming each bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for problem in exc.errors()[:10]:
            name = "MIR_" + "_".join(str(part) for part in problem["loc"]).upper()
            _err.print(f"[red]error:[/red] {escape(name)}: {escape(problem['msg'])}")
        raise typer.Exit(2) from exc
