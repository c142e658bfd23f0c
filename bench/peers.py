"""How each peer scanner is driven, and how its answer maps to mir's four verdicts.

Shared by ``bench/scan_bench.py`` and ``bench/peer_corpus_bench.py`` so both benches judge the
peers the same way. Each adapter takes a path and returns ``malicious``, ``suspicious``,
``error``, ``clean`` or ``skip`` (the peer does not handle that format); ``call`` turns an
exception into ``crash`` and keeps the peers' logging off the terminal.

- picklescan ``scan_file_path``: dangerous globals -> malicious, suspicious globals ->
  suspicious, ``scan_err`` -> error, else clean.
- modelscan ``ModelScan().scan``: CRITICAL/HIGH issues -> malicious, MEDIUM/LOW ->
  suspicious, errors -> error, a file it skips as unsupported -> skip (what its CLI
  reports as "no supported files"), else clean.
- fickling: its own format routing (``polyglot.find_file_properties``, then
  ``loader.scan_zip_archive`` / ``loader.scan_file`` with ``graceful=True``, as its
  Hugging Face scanner does): LIKELY_UNSAFE and worse -> malicious, SUSPICIOUS /
  POSSIBLY_UNSAFE -> suspicious, parse errors -> error, formats it skips -> skip.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scanners import scan_path

Tool = Callable[[Path], str]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Peers log and print freely; keep the table readable."""
    out, err = io.StringIO(), io.StringIO()
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield None
    finally:
        logging.disable(logging.NOTSET)


def run_mir(path: Path) -> str:
    return scan_path(path).verdict.value


def run_picklescan(path: Path) -> str:
    from picklescan.scanner import SafetyLevel, scan_file_path

    res = scan_file_path(str(path))
    if res.issues_count or res.infected_files or any(g.safety is SafetyLevel.Dangerous for g in res.globals):
        return "malicious"
    if res.suspicious_count or any(g.safety is SafetyLevel.Suspicious for g in res.globals):
        return "suspicious"
    if res.scan_err:
        return "error"
    return "clean"


def run_modelscan(path: Path) -> str:
    from modelscan.modelscan import ModelScan

    results = ModelScan().scan(str(path))
    severities = {i.get("severity") for i in results.get("issues", [])}
    if severities & {"CRITICAL", "HIGH"}:
        return "malicious"
    if severities:
        return "suspicious"
    if results.get("errors"):
        return "error"
    if not results["summary"]["scanned"]["total_scanned"]:
        return "skip"
    return "clean"


def run_fickling(path: Path) -> str:
    from fickling.analysis import Severity
    from fickling.loader import scan_file, scan_zip_archive
    from fickling.polyglot import find_file_properties

    props = find_file_properties(str(path))
    ext = path.suffix.lower()
    if props["is_torch_zip"] or props["is_standard_zip"] or ext in (".pt", ".pth"):
        results = list(scan_zip_archive(str(path), graceful=True).values())
    elif props["is_valid_pickle"] or ext in (".bin", ".pkl", ".pickle"):
        results = [scan_file(str(path), graceful=True)]
    else:
        return "skip"
    if not results:
        return "clean"
    worst = max((r.severity for r in results), key=lambda s: s.value[0])
    if worst.value[0] >= Severity.LIKELY_UNSAFE.value[0]:
        return "malicious"
    if any(r.errors for r in results) and worst.value[0] <= Severity.SUSPICIOUS.value[0]:
        return "error"
    if worst.value[0] > Severity.LIKELY_SAFE.value[0]:
        return "suspicious"
    return "clean"


TOOLS: dict[str, Tool] = {
    "mir": run_mir,
    "picklescan": run_picklescan,
    "modelscan": run_modelscan,
    "fickling": run_fickling,
}
PEER_MODULES = {"picklescan": "picklescan", "modelscan": "modelscan", "fickling": "fickling"}
SHORT = {"malicious": "MAL", "suspicious": "sus", "error": "err", "clean": "ok", "skip": "skip", "crash": "CRASH"}


def call(tool: Tool, path: Path) -> str:
    """Run one tool on one file, quietly; an exception is a ``crash`` answer, not a bench failure."""
    with quiet():
        try:
            return tool(path)
        except Exception:
            return "crash"
