"""``mir scan``: registered on a Typer app, exit codes 0 clean / 1 flagged / 2 error, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import typer
from typer.testing import CliRunner

from registry.cli.scan import register
from scanners import Limits, Verdict, scan_path
from tests.scanners.corpus import npy_bytes, os_system_pickle

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:
        """mir (test shell)."""

    return app


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.npy").write_bytes(npy_bytes(np.ones(4)))
    (root / "sub" / "config.json").write_text('{"a": 1}\n')
    return root


def test_clean_directory_exits_0(tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["scan", str(_tree(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "2 clean" in result.output


def test_malicious_file_in_a_tree_exits_1(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "sub" / "model.bin").write_bytes(os_system_pickle(2))
    result = runner.invoke(_app(), ["scan", str(root)])
    assert result.exit_code == 1
    assert "malicious" in result.output and "posix.system" in result.output


def test_suspicious_exits_1_and_error_exits_2(tmp_path: Path) -> None:
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x00\x01\x02 not a known format")
    assert runner.invoke(_app(), ["scan", str(odd)]).exit_code == 1
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"\x80\x04\x95")
    assert runner.invoke(_app(), ["scan", str(broken)]).exit_code == 2
    assert runner.invoke(_app(), ["scan", str(tmp_path / "missing")]).exit_code == 2
    (tmp_path / "evil.pkl").write_bytes(os_system_pickle(2))
    assert runner.invoke(_app(), ["scan", str(broken), str(tmp_path / "evil.pkl")]).exit_code == 1


def test_json_output(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "evil.pkl").write_bytes(os_system_pickle(4))
    result = runner.invoke(_app(), ["scan", "--json", str(root)])
    reports = json.loads(result.stdout)
    by_name = {Path(r["path"]).name: r for r in reports}
    assert by_name["evil.pkl"]["verdict"] == "malicious"
    assert by_name["evil.pkl"]["findings"][0]["symbol"] == "posix.system"
    assert by_name["weights.npy"]["verdict"] == "clean"


def test_sandbox_option(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(os_system_pickle(2))
    result = runner.invoke(_app(), ["scan", "--sandbox", "--json", str(tmp_path)])
    assert result.exit_code == 1
    assert json.loads(result.stdout)[0]["verdict"] == "malicious"


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    (root / "loop").symlink_to(root, target_is_directory=True)
    result = runner.invoke(_app(), ["scan", "--json", str(root)])
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 2


def test_runs_as_a_program(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(os_system_pickle(2))
    code = (
        "import typer; from registry.cli.scan import register; app = typer.Typer(); register(app)\n"
        "@app.callback()\ndef main() -> None: pass\napp()"
    )
    proc = subprocess.run([sys.executable, "-c", code, "scan", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr


def test_sarif_output_for_code_scanning(tmp_path: Path) -> None:
    """The real `mir` program, as a CI job runs it: findings land on their files with a level and a rule."""
    tree = _tree(tmp_path / "repo")
    (tree / "evil.pkl").write_bytes(os_system_pickle())
    done = subprocess.run(
        [sys.executable, "-m", "registry.main", "scan", ".", "--format", "sarif"],
        cwd=tree, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    log = json.loads(done.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    [run] = log["runs"]
    assert run["tool"]["driver"]["name"] == "mir scan"
    rule_ids = {rule["id"] for rule in run["tool"]["driver"]["rules"]}
    assert run["results"], "the malicious pickle must be reported"
    for result in run["results"]:
        assert result["ruleId"] in rule_ids and result["message"]["text"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "evil.pkl"
    assert any(r["level"] == "error" and ".system" in r["message"]["text"] for r in run["results"])
    clean = subprocess.run([sys.executable, "-m", "registry.main", "scan", "sub", "--format", "sarif"],
                           cwd=tree, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0 and json.loads(clean.stdout)["runs"][0]["results"] == []
    assert runner.invoke(_app(), ["scan", str(tree), "--format", "xml"]).exit_code == 2


def test_trusted_globals_lift_suspicious_but_never_malicious(tmp_path: Path) -> None:
    import pickle

    from sklearn.preprocessing import FunctionTransformer

    model = tmp_path / "ft.pkl"
    model.write_bytes(pickle.dumps(FunctionTransformer(np.log1p)))
    assert runner.invoke(_app(), ["scan", str(model)]).exit_code == 1
    trust = ["--trust-global", "sklearn.preprocessing._function_transformer.FunctionTransformer",
             "--trust-global", "numpy.log1p"]
    assert runner.invoke(_app(), ["scan", str(model), *trust]).exit_code == 0
    (tmp_path / "evil.pkl").write_bytes(os_system_pickle())
    evil = runner.invoke(_app(), ["scan", str(tmp_path / "evil.pkl"), "--trust-global", "os.system", "--sandbox"])
    assert evil.exit_code == 2 and "cannot be trusted" in evil.output and "os.system" in evil.output
    # Below the CLI's refusal, the scanner itself never lifts a gadget either.
    gadgets = frozenset({"os.system", "posix.system"})
    report = scan_path(tmp_path / "evil.pkl", limits=Limits(extra_safe_globals=gadgets))
    assert report.verdict is Verdict.MALICIOUS


def test_the_pre_commit_hook_runs_mir_scan() -> None:
    import yaml

    hooks = yaml.safe_load((Path(__file__).resolve().parents[2] / ".pre-commit-hooks.yaml").read_text())
    [hook] = hooks
    assert hook["id"] == "mir-scan" and hook["entry"] == "mir scan" and hook["language"] == "python"
    import re

    pattern = re.compile(hook["files"])
    assert all(pattern.search(name) for name in ("model.pt", "a/b.pkl", "w.safetensors", "m.gguf", "x.joblib"))
    assert not pattern.search("README.md")
