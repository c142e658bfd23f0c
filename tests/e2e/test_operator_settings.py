"""A bad MIR_* value stops the operator's commands with one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.server import MIR


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [(["serve"], "MIR_PORT", "abc"), (["worker", "--once"], "MIR_SYNTHETIC_MATCH_SCOPE", "everyone"),
     (["migrate"], "MIR_AUTO_MIGRATE", "perhaps"), (["fsck"], "MIR_CHUNK_SIZE", "-x")],
)
def test_bad_settings_are_one_line(tmp_path: Path, command: list[str], variable: str, value: str) -> None:
    env = {**os.environ, "MIR_DATA_DIR": str(tmp_path / "data"), variable: value}
    env.pop("MIR_DATABASE_URL", None)
    result = subprocess.run([*MIR, *command], env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and variable in result.stderr
    assert not (tmp_path / "data").exists(), "nothing is created before the settings are valid"
