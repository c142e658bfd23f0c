"""The semantic layer's model and index: offline from the packaged files, and the ANN graph agrees with exact search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from scanners.contamination.semantic import DIM, Embedder, SemanticIndex, match_records
from tests.scanners.contamination.textgen import vocabulary

# Run in a fresh interpreter with the Hub switched off and every network call refused (an audit hook raises
# on any socket use), recording the files it opens.
OFFLINE = r"""
import json, sys
opened = []
def hook(event, args):
    if event.startswith("socket.") and event != "socket.__new__":
        raise RuntimeError(f"network use: {event} {args!r}")
    if event == "open" and isinstance(args[0], str):
        opened.append(args[0])
sys.addaudithook(hook)
from scanners.contamination.semantic import Embedder, _package_dir
embedder = Embedder.load()
vectors = embedder.embed(["Glaciers flow slowly downhill under their own weight, grinding the valley floor."])
data = [p for p in opened if not p.endswith((".py", ".pyc", ".so")) and "__pycache__" not in p]
print(json.dumps({"key": embedder.key, "norm": float((vectors ** 2).sum()), "opened": data,
                  "package": str(_package_dir())}))
"""


def test_model_loads_offline_from_the_packaged_files_only(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}  # an empty home: no cache to fall back on
    done = subprocess.run([sys.executable, "-c", OFFLINE], env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert abs(out["norm"] - 1.0) < 1e-5 and out["key"].startswith("wordllama-l2s-256:")
    package = out["package"]
    model_files = [p for p in out["opened"] if "wordllama" in p]
    assert model_files and all(p.startswith(package) for p in model_files), out["opened"]


def test_ann_graph_finds_what_exact_search_finds() -> None:
    """The HNSW graph (forced here; a large index turns to it) returns what exact search returns on near copies."""
    words = vocabulary()[0][:3000]
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(words, size=40)) for _ in range(400)]
    embedder = Embedder.load()
    vectors = embedder.embed(texts)
    graph, exact = SemanticIndex(exact_below=0, graph_after=0), SemanticIndex()
    for index in (graph, exact):
        index.add(vectors, "ns/gen@1", "ns/model@1", np.arange(len(texts)))
    # Queries: each text with a few words dropped (near copies), and unrelated word lists.
    near = [" ".join(t.split()[3:]) for t in texts[:100]]
    found, truth = graph.nearest(embedder.embed(near)), exact.nearest(embedder.embed(near))
    assert [f.record_id if f else None for f in found] == [t.record_id if t else None for t in truth]
    assert [t.record_id for t in truth if t] == list(range(100))
    assert graph.uses_graph and not exact.uses_graph
    report = match_records(graph, embedder, [*near, "too short to score"], threshold=0.9)
    assert report.total_records == 101 and report.scored_records == 100 and report.matched_records == 100
    assert report.per_dataset == {"ns/gen@1": 100} and report.to_report(max_fraction=0.5).verdict == "suspicious"
    assert SemanticIndex().nearest(np.zeros((2, DIM), dtype=np.float32)) == [None, None]
