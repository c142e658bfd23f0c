"""What a process imports before it does any work.

Every `mir push`/`mir pull` pays the CLI's imports before it sends a byte, every API replica, scan worker and
test server pays its own at start (the scan sandboxes' are checked in tests/scanners/test_sandbox.py).
Libraries that only some paths need (the scanners' format libraries, the contamination analysis's numpy, scipy
and datasketch, torch, the S3 client) are imported where those paths run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "scipy", "datasketch", "torch", "transformers", "py7zr", "h5py", "boto3", "usearch", "wordllama")


def _heavy_imports(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["registry.main", "registry.cli.main", "registry.server.serve",
                                    "registry.server.app", "registry.scanning.worker"])
def test_entry_points_import_no_optional_heavy_library(module: str) -> None:
    assert _heavy_imports(module) == set()


def test_the_cli_does_not_build_the_servers_request_models() -> None:
    """The API's request bodies (registry.core.schemas: pydantic models, ~0.06 s to build with cached bytecode)
    are the server's: `mir push` and `mir pull` need only the lineage spelling, from registry.core.parent_specs."""
    code = "import sys, registry.cli.main; print('registry.core.schemas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_the_cli_does_not_import_the_policy_engine_or_pydantic() -> None:
    """pydantic (via the policy engine's documents, ~0.1 s with cached bytecode) is for the commands that check a
    verification bundle offline; `mir push`, `mir pull` and online verification start without it."""
    code = "import sys, registry.cli.main; print(sorted({'pydantic', 'registry.policy.engine'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
