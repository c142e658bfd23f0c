"""What a new user of the ``mir`` CLI meets first: version, completion, progress, and clear words for mistakes.

Everything runs the real program in a subprocess; pushes go to the real server on both databases.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.support.server import LiveServer
from tests.support.trees import make_tree

MIR_SCRIPT = str(Path(sys.executable).parent / "mir")  # the console script `pip install` made


def run_mir(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MIR_SCRIPT, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": env.pop("HOME", "/nonexistent"), **env},
    )


def test_version_flag(tmp_path: Path) -> None:
    done = run_mir("--version", HOME=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mir {version('mir')}"


def test_shell_completion_is_offered_and_completes_commands(tmp_path: Path) -> None:
    # --show-completion writes the script for the shell it runs under: a bash that stays the parent (the
    # trailing command keeps bash from exec'ing mir), whatever shell started the tests.
    script = subprocess.run(
        ["bash", "-c", 'mir --show-completion; exit "$?"'], capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
        env={"PATH": f"{Path(MIR_SCRIPT).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert script.returncode == 0, script.stderr
    assert "_MIR_COMPLETE=complete_bash" in script.stdout
    answered = run_mir(_MIR_COMPLETE="complete_bash", COMP_WORDS="mir pu", COMP_CWORD="1", HOME=str(tmp_path))
    assert answered.stdout.split() == ["push", "pull"], answered


class _NotMir(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>nothing here</html>"
        self.send_response(200 if self.path.startswith("/v1/artifacts") else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def other_web_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotMir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("command", [["ls"], ["show", "acme/x@1"]])
def test_a_url_that_is_another_web_server_is_named_as_such(
    other_web_server: str, tmp_path: Path, command: list[str]
) -> None:
    done = run_mir(*command, MIR_URL=other_web_server, MIR_TOKEN="mir_x", HOME=str(tmp_path),
                   MIR_CONFIG_DIR=str(tmp_path))
    assert done.returncode == 1, done
    assert "does not answer as a mir registry" in done.stderr, done.stderr
    assert f"{other_web_server}/v1/health" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wrong_path_on_a_real_registry_is_named_and_a_missing_version_is_not(
    server: LiveServer, tmp_path: Path
) -> None:
    wrong = server.cli("ls", MIR_URL=server.url + "/nope")
    assert wrong.returncode == 1
    assert "does not answer as a mir registry" in wrong.stderr and "MIR_URL" in wrong.stderr, wrong.stderr
    assert "Not Found (not_found)" not in wrong.stderr
    missing = server.cli("show", "acme/never-pushed@1")
    assert missing.returncode == 1 and "mir registry" not in missing.stderr, missing.stderr


def test_push_shows_hashing_and_says_when_nothing_is_uploaded(server: LiveServer, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "m", {"w.bin": b"w" * 50_000, "config.json": b"{}"})
    first = server.cli("push", str(tree), "everyday/model@1", check=True)
    assert "hash 2 file(s)" in first.stderr, first.stderr
    assert "upload 2 file(s)" in first.stderr
    again = server.cli("push", str(tree), "everyday/model@2", check=True)
    assert "nothing to upload: all 2 file(s) already stored" in again.stderr, again.stderr
    assert "upload 0 file(s)" not in again.stderr
    assert "0 uploaded, 2 already stored" in again.stdout
