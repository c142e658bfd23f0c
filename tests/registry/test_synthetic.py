"""Synthetic-data provenance through lineage (layer 1), its policy check, and the SQL fingerprint index."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from sqlalchemy import select

from registry.artifacts.models import Version
from registry.artifacts.versions import get_artifact, get_or_create_artifact, open_version
from registry.audit.models import AuditEntry
from registry.core.names import parse_ref
from registry.gate import decisions as policy
from registry.lineage import edges as lineage
from registry.lineage.graph import everyone
from registry.policy import documents
from registry.policy.synthetic_limits import check_limits
from registry.push.commit import commit_version
from registry.synthetic import provenance as synthetic
from registry.synthetic.contamination import load_index, new_index, store_fingerprints
from registry.synthetic.models import ContaminationResult, SyntheticFingerprint
from scanners.contamination import FingerprintIndex
from signing.manifest import Manifest
from tests.scanners.contamination.textgen import make_records
from tests.support.service import Reg, edge

HUMAN_URL = {"external": {"kind": "url", "url": "https://example.org/wiki.jsonl", "digest": "sha256:" + "ab" * 32}}
OTHER_URL = {"external": {"kind": "url", "url": "https://example.org/web.jsonl", "digest": "sha256:" + "cd" * 32}}


def push(reg: Reg, reference: str, *decls: dict[str, Any], kind: str = "dataset") -> int:
    ref = parse_ref(reference, require_ref=True)
    with reg.session() as s:
        art = get_or_create_artifact(s, ref.namespace, ref.name, kind, "admin")
        version, resumed = open_version(s, reg.blobs, art, ref.ref or "", Manifest.from_entries([]), actor="admin")
        lineage.declare_at_open(s, version, lineage.parse_declarations(list(decls)), can_read=lambda _: True,
                                actor="admin", resumed=resumed)
        commit_version(s, reg.blobs, version, actor="admin")
        return version.id


def summary(reg: Reg, reference: str) -> dict[str, Any]:
    ref = parse_ref(reference, require_ref=True)
    with reg.session() as s:
        art = get_artifact(s, ref.namespace, ref.name)
        row = s.scalar(select(Version).where(Version.artifact_id == art.id, Version.version == ref.ref))
        assert row is not None
        return synthetic.lineage_summary(s, row)


def counted(reg: Reg, version_id: int, records: int) -> None:
    """What the contamination step stores after reading a dataset: here only its record count matters."""
    with reg.session() as s:
        s.add(ContaminationResult(version_id=version_id, verdict="clean", total_records=records, indexed_records=None,
                                  matched_fraction=0.0, report={}, statistical=None))


@pytest.fixture
def chain(reg: Reg) -> Reg:
    """human -> model trained on it -> generated data -> model trained on that -> more generated data."""
    push(reg, "syn/human@1", edge("imported_from", HUMAN_URL, human=True))
    push(reg, "syn/m0@1", edge("trained_on", "syn/human@1"), kind="model")
    push(reg, "syn/gen1@1", edge("generated_by", "syn/m0@1"))
    push(reg, "syn/m1@1", edge("trained_on", "syn/gen1@1"), kind="model")
    push(reg, "syn/gen2@1", edge("generated_by", "syn/m1@1"))
    return reg


def test_generated_by_depth_and_recursion(chain: Reg) -> None:
    human = summary(chain, "syn/human@1")
    assert human["histogram"] == {"0": 1.0} and human["synthetic_fraction"] == 0 and human["basis"] == "content"
    m0 = summary(chain, "syn/m0@1")
    assert m0["basis"] == "training data" and m0["histogram"] == {"0": 1.0} and m0["max_depth"] == 0
    gen1 = summary(chain, "syn/gen1@1")
    assert gen1["histogram"] == {"1": 1.0} and gen1["synthetic_fraction"] == 1.0 and gen1["max_depth"] == 1
    assert summary(chain, "syn/m1@1")["histogram"] == {"1": 1.0}
    gen2 = summary(chain, "syn/gen2@1")
    assert gen2["histogram"] == {"2": 1.0} and gen2["max_depth"] == 2 and not gen2["depth_lower_bound"]


def test_mixture_fractions_record_counts_and_equal_weights(chain: Reg) -> None:
    push(chain, "syn/mixf@1", edge("derived_from", "syn/human@1", mixture_fraction=0.7),
         edge("derived_from", "syn/gen1@1", mixture_fraction=0.3))
    assert summary(chain, "syn/mixf@1")["histogram"] == {"0": 0.7, "1": 0.3}
    push(chain, "syn/mixr@1", edge("derived_from", "syn/human@1", record_count=300),
         edge("derived_from", "syn/gen2@1", record_count=100))
    mixr = summary(chain, "syn/mixr@1")
    assert mixr["histogram"] == {"0": 0.75, "2": 0.25} and mixr["max_depth"] == 2
    assert any("record_count" in n for n in mixr["notes"])
    push(chain, "syn/mixe@1", edge("derived_from", "syn/human@1"), edge("derived_from", "syn/gen1@1"))
    mixe = summary(chain, "syn/mixe@1")
    assert mixe["histogram"] == {"0": 0.5, "1": 0.5}
    assert any("equal weights" in n for n in mixe["notes"])
    assert {i["parent"]: i["weight"] for i in mixe["inputs"]} == {"syn/human@1": 0.5, "syn/gen1@1": 0.5}
    # A fixed fraction plus unfractioned inputs: they share the remainder.
    push(chain, "syn/mixp@1", edge("derived_from", "syn/gen1@1", mixture_fraction=0.2),
         edge("derived_from", "syn/human@1"))
    assert summary(chain, "syn/mixp@1")["histogram"] == {"0": 0.8, "1": 0.2}


def test_remainder_and_bad_fractions_are_unknown(chain: Reg) -> None:
    push(chain, "syn/part@1", edge("derived_from", "syn/human@1", mixture_fraction=0.6))
    part = summary(chain, "syn/part@1")
    assert part["histogram"] == {"0": 0.6, "unknown": 0.4} and part["unknown_fraction"] == 0.4
    push(chain, "syn/over@1", edge("derived_from", "syn/human@1", mixture_fraction=0.8),
         edge("derived_from", "syn/gen1@1", mixture_fraction=0.5))
    over = summary(chain, "syn/over@1")
    assert over["histogram"] == {"unknown": 1.0} and "sum to 1.300" in over["notes"][0]


def test_unknown_provenance_fails_closed(chain: Reg) -> None:
    push(chain, "syn/scraped@1")  # no lineage at all
    push(chain, "syn/web@1", edge("imported_from", OTHER_URL))  # external, not declared human
    for ref in ("syn/scraped@1", "syn/web@1"):
        assert summary(chain, ref)["histogram"] == {"unknown": 1.0}
    push(chain, "syn/mu@1", edge("trained_on", "syn/scraped@1"), edge("trained_on", "syn/human@1"), kind="model")
    assert summary(chain, "syn/mu@1")["histogram"] == {"0": 0.5, "unknown": 0.5}
    push(chain, "syn/genu@1", edge("generated_by", "syn/mu@1"))
    genu = summary(chain, "syn/genu@1")
    assert genu["histogram"] == {"1": 1.0} and genu["depth_lower_bound"] is True
    push(chain, "syn/nomodel@1", kind="model")
    push(chain, "syn/genn@1", edge("generated_by", "syn/nomodel@1"))
    assert summary(chain, "syn/genn@1")["depth_lower_bound"] is True


def test_generated_data_conditioned_on_prompts_is_synthetic(chain: Reg) -> None:
    push(chain, "syn/qa@1", edge("generated_by", "syn/m1@1"), edge("derived_from", "syn/human@1"))
    qa = summary(chain, "syn/qa@1")
    assert qa["histogram"] == {"2": 1.0} and "prompts" in qa["notes"][0]


def test_model_parents_fine_tune_and_distillation(chain: Reg) -> None:
    push(chain, "syn/ft@1", edge("fine_tuned_from", "syn/m1@1", mixture_fraction=0.8),
         edge("trained_on", "syn/human@1", mixture_fraction=0.2), kind="model")
    assert summary(chain, "syn/ft@1")["histogram"] == {"0": 0.2, "1": 0.8}
    push(chain, "syn/student@1", edge("distilled_from", "syn/m0@1"), kind="model")
    assert summary(chain, "syn/student@1")["histogram"] == {"1": 1.0}
    push(chain, "syn/q@1", edge("quantized_from", "syn/ft@1"), kind="model")
    assert summary(chain, "syn/q@1")["histogram"] == {"0": 0.2, "1": 0.8}
    push(chain, "syn/eval@1", edge("evaluated_on", "syn/human@1"), kind="model")
    assert summary(chain, "syn/eval@1")["histogram"] == {"unknown": 1.0}


def test_human_records_kept(reg: Reg) -> None:
    human = push(reg, "hr/human@1", edge("imported_from", HUMAN_URL, human=True))
    counted(reg, human, 1000)
    push(reg, "hr/m0@1", edge("trained_on", "hr/human@1"), kind="model")
    gen = push(reg, "hr/gen@1", edge("generated_by", "hr/m0@1"))
    counted(reg, gen, 400)
    assert summary(reg, "hr/human@1")["human_records"] == 1000
    assert summary(reg, "hr/gen@1")["human_records"] == 0
    push(reg, "hr/m1@1", edge("trained_on", "hr/human@1", record_count=500), edge("trained_on", "hr/gen@1"),
         kind="model")
    m1 = summary(reg, "hr/m1@1")
    assert m1["human_records"] == 500 and m1["human_records_complete"] is True
    assert m1["histogram"] == {"0": 0.5, "1": 0.5}
    push(reg, "hr/scraped@1")
    push(reg, "hr/m2@1", edge("trained_on", "hr/human@1"), edge("trained_on", "hr/scraped@1"), kind="model")
    m2 = summary(reg, "hr/m2@1")
    assert m2["human_records"] == 1000 and m2["human_records_complete"] is False


def test_policy_limits_on_models_and_datasets(chain: Reg) -> None:
    push(chain, "syn/mix@1", edge("trained_on", "syn/human@1", mixture_fraction=0.6),
         edge("trained_on", "syn/gen2@1", mixture_fraction=0.4), kind="model")
    with chain.session() as s:
        documents.set_policy(s, "syn", documents.parse_policy({"max_synthetic_fraction": 0.3}), "admin")
    with chain.session() as s:
        model = s.scalar(select(Version).join(Version.artifact).where(Version.version == "1").where(
            Version.artifact.has(name="mix")))
        assert model is not None
        check = next(c for c in policy.evaluate(s, model, can_read=everyone).checks if c.check == "synthetic data")
        assert not check.ok and "40.0% synthetic" in check.detail and "exceeds the limit 30.0%" in check.detail
        human = s.scalar(select(Version).where(Version.artifact.has(name="human")))
        assert human is not None
        check = next(c for c in policy.evaluate(s, human, can_read=everyone).checks if c.check == "synthetic data")
        assert not check.ok and "contamination analysis has not finished" in check.detail
        limits = documents.parse_policy({"max_synthetic_fraction": 0.5, "max_recursion_depth": 1})
        documents.set_policy(s, "syn", limits, "admin")
    with chain.session() as s:
        model = s.scalar(select(Version).where(Version.artifact.has(name="mix")))
        assert model is not None
        check = next(c for c in policy.evaluate(s, model, can_read=everyone).checks if c.check == "synthetic data")
        assert not check.ok and check.detail == "recursion depth 2 exceeds the limit 1"


def test_check_limits_is_fail_closed() -> None:
    lin = {"synthetic_fraction": 0.1, "unknown_fraction": 0.3, "max_depth": 1, "depth_lower_bound": False,
           "basis": "content"}
    assert check_limits({"kind": "model", "lineage": lin}, max_fraction=None, max_depth=None) is None
    ok, detail = check_limits({"kind": "model", "lineage": lin}, max_fraction=0.35, max_depth=None) or (True, "")
    assert not ok and "unknown provenance (counted as synthetic" in detail
    ok, detail = check_limits({"kind": "model", "lineage": lin}, max_fraction=None, max_depth=3) or (True, "")
    assert not ok and "unknown provenance" in detail
    assert check_limits(None, max_fraction=0.5, max_depth=None) == (False, "no synthetic-data summary is available "
                                                                            "for this version")
    clean = {**lin, "unknown_fraction": 0.0}
    for fp, words in (({"status": "error", "matched_fraction": None, "error": "bad line"}, "failed: bad line"),
                      ({"status": "suspicious", "matched_fraction": 0.6, "per_generator": {"a/m@1": 6}}, "a/m@1"),
                      (None, "not finished")):
        ok, detail = check_limits({"kind": "dataset", "lineage": clean, "fingerprint": fp}, max_fraction=0.5,
                                  max_depth=None) or (True, "")
        assert not ok and words in detail
    assert check_limits({"kind": "dataset", "lineage": clean, "fingerprint": {"status": "clean",
                        "matched_fraction": 0.2}}, max_fraction=0.5, max_depth=2) == (
        True, "content 10.0% synthetic + 0.0% unknown provenance (counted as synthetic, fail closed) = 10.0% "
        "within the limit 50.0%; fingerprint match 20.0%; recursion depth 1 within the limit 2")


def test_fingerprints_round_trip_through_sql(reg: Reg) -> None:
    gen = push(reg, "fp/gen@1")
    texts = [f"record number {i} about the weather in a small coastal town today" for i in range(50)]
    own = FingerprintIndex()
    own.add_dataset(texts, "fp/gen@1", "fp/model@1")
    with reg.session() as s:
        assert store_fingerprints(s, gen, own, "fp/model@1") == 50
    with reg.session() as s:  # a retry replaces, never doubles
        assert store_fingerprints(s, gen, own, "fp/model@1") == 50
    with reg.session() as s:
        index = load_index(s)
        assert load_index(s, exclude_version=gen).sources == []
        assert len(load_index(s, namespace="fp")) == 50
        assert load_index(s, namespace="other").sources == []  # another namespace's data is never matched
    assert len(index) == 50 and index.dataset_refs == {"fp/gen@1"}
    report = index.match_dataset([texts[3], texts[7].replace("weather", "climate"), "a completely different "
                                  "sentence about trains and their timetables"])
    assert report.matched_records == 2 and report.exact_records == 1
    assert report.per_generator == {"fp/model@1": 2}
    # The passage samples went through SQL too: a truncated copy is found; without passages it is not.
    long_texts = make_records(10, random.Random(17), min_words=150, max_words=200)
    own = new_index()
    own.add_dataset(long_texts, "fp/gen@1", "fp/model@1")
    plain = new_index(passages=False)
    plain.add_dataset(long_texts, "fp/gen@1", "fp/model@1")
    with reg.session() as s:
        store_fingerprints(s, gen, own, "fp/model@1")
        rows = s.scalars(select(SyntheticFingerprint.passages).where(SyntheticFingerprint.version_id == gen)).all()
        assert len(rows) == 10 and all(r for r in rows)
        halves = [" ".join(t.split()[: len(t.split()) // 2]) for t in long_texts]
        assert load_index(s).match_dataset(halves).matched_records == 10
        assert load_index(s, passages=False).match_dataset(halves).matched_records < 10
        store_fingerprints(s, gen, plain, "fp/model@1")  # MIR_SYNTHETIC_PASSAGES=false stores none
        rows = s.scalars(select(SyntheticFingerprint.passages).where(SyntheticFingerprint.version_id == gen)).all()
        assert rows == [None] * 10


def test_limit_flag_is_audited(chain: Reg) -> None:
    from registry.synthetic.limits import flag_limits

    push(chain, "syn/deep@1", edge("trained_on", "syn/gen2@1"), kind="model")
    with chain.session() as s:
        documents.set_policy(s, "syn", documents.parse_policy({"max_recursion_depth": 1}), "admin")
        deep = s.scalar(select(Version).where(Version.artifact.has(name="deep")))
        assert deep is not None
        assert flag_limits(s, deep, "worker") is not None
    with chain.session() as s:
        entries = [json.loads(e.body) for e in s.scalars(
            select(AuditEntry).where(AuditEntry.action == "synthetic.limit_exceeded"))]
    assert len(entries) == 1 and "recursion depth 2 exceeds the limit 1" in entries[0]["details"]["reason"]


def measured(reg: Reg, version_id: int, fraction: float, per_dataset: dict[str, int], records: int = 100) -> None:
    """What the contamination step stores after matching a dataset against registered synthetic data."""
    with reg.session() as s:
        s.add(ContaminationResult(version_id=version_id, verdict="suspicious", total_records=records,
                                  indexed_records=None, matched_fraction=fraction,
                                  report={"fingerprint": {"per_dataset": per_dataset}}, statistical=None))


def test_measured_contamination_is_a_floor_that_descendants_inherit(chain: Reg) -> None:
    """A dataset declared human whose scan matched half its records to generated data is at least half
    synthetic, at the matched dataset's depth; a model trained on it inherits that and fails a 0.2 limit."""
    web = push(chain, "syn/web@1", edge("imported_from", HUMAN_URL, human=True))
    measured(chain, web, 0.5, {"syn/gen2@1": 50})
    data = summary(chain, "syn/web@1")
    assert data["histogram"] == {"0": 0.5, "2": 0.5} and data["synthetic_fraction"] == 0.5
    assert data["max_depth"] == 2 and data["depth_lower_bound"] is False and data["human_records"] == 50
    assert any("matched 50.0% of syn/web@1's records" in n for n in data["notes"])
    push(chain, "syn/student@1", edge("trained_on", "syn/web@1"), kind="model")
    assert summary(chain, "syn/student@1")["histogram"] == {"0": 0.5, "2": 0.5}
    # Unknown provenance becomes synthetic first; a label that names nothing gives a lower-bound depth of 1.
    scraped = push(chain, "syn/scraped@1")
    measured(chain, scraped, 0.3, {"gone/data@1": 30})
    scraped_summary = summary(chain, "syn/scraped@1")
    assert scraped_summary["histogram"] == {"1": 0.3, "unknown": 0.7} and scraped_summary["depth_lower_bound"]
    # Lineage that already declares more synthetic data than was matched is left alone.
    mixed = push(chain, "syn/mixed@1", edge("derived_from", "syn/human@1", mixture_fraction=0.4),
                 edge("derived_from", "syn/gen1@1", mixture_fraction=0.6))
    measured(chain, mixed, 0.5, {"syn/gen1@1": 50})
    assert summary(chain, "syn/mixed@1")["histogram"] == {"0": 0.4, "1": 0.6}
    with chain.session() as s:
        documents.set_policy(s, "syn", documents.parse_policy({"max_synthetic_fraction": 0.2}), "admin")
    with chain.session() as s:
        student = s.scalar(select(Version).where(Version.artifact.has(name="student")))
        assert student is not None
        check = next(c for c in policy.evaluate(s, student, can_read=everyone).checks if c.check == "synthetic data")
        assert not check.ok and "training data 50.0% synthetic" in check.detail
