"""Fingerprint index: recall under light edits, attribution, reports, and the plain-array API."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

from scanners.contamination import (
    DuplicateDatasetError,
    FingerprintConfig,
    Fingerprinter,
    FingerprintIndex,
    Record,
    RecordFormatError,
    read_records,
)
from scanners.contamination.banding import BandIndex
from scanners.contamination.fingerprint import SCHEME
from scanners.contamination.perturb import edit_words
from scanners.report import Verdict
from tests.scanners.contamination.textgen import make_records, vocabulary


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return make_records(800, random.Random(1))


@pytest.fixture(scope="module")
def index(corpus: list[str]) -> FingerprintIndex:
    idx = FingerprintIndex()
    result = idx.add_dataset(corpus, "acme/synthetic@1", "acme/generator@2")
    assert (result.indexed, result.too_short) == (800, 0)
    return idx


@pytest.mark.parametrize("rate", [0.02, 0.05])
def test_recall_on_lightly_edited_copies(corpus: list[str], index: FingerprintIndex, rate: float) -> None:
    rng = random.Random(7)
    words, _ = vocabulary()
    edited = [edit_words(text, rate, rng, words) for text in corpus[:400]]
    assert sum(e != t for e, t in zip(edited, corpus[:400], strict=True)) >= 390
    report = index.match_dataset(edited)
    assert report.scored_records == 400
    assert report.matched_fraction >= 0.97, report.matched_fraction
    assert report.per_dataset == {"acme/synthetic@1": report.matched_records}


def test_unrelated_records_do_not_match(index: FingerprintIndex) -> None:
    unrelated = make_records(800, random.Random(99))
    report = index.match_dataset(unrelated)
    assert report.matched_records <= 1  # false-match rate <= 0.125 %
    assert report.to_report().verdict in (Verdict.CLEAN, Verdict.SUSPICIOUS)


def test_exact_copies_survive_case_punctuation_and_spacing() -> None:
    idx = FingerprintIndex()
    idx.add_dataset(["The model said: Hello, World! This is synthetic text."], "d", "g")
    matches = idx.query("the MODEL said hello   world -- this is synthetic text")
    assert len(matches) == 1 and matches[0].exact and matches[0].similarity == 1.0
    assert matches[0].ordinal == 0


def test_attribution_to_datasets_and_generators() -> None:
    rng = random.Random(3)
    a, b, c = make_records(50, rng), make_records(50, rng), make_records(50, rng)
    shared = a[0]
    idx = FingerprintIndex()
    idx.add_dataset(a, "ds/a", "gen/x")
    idx.add_dataset(b, "ds/b", "gen/y")
    idx.add_dataset([*c, shared], "ds/c", "gen/x")
    human = make_records(20, random.Random(1234))
    upload = [*a[1:11], *[edit_words(t, 0.05, rng) for t in b[:5]], shared, *human, "too short"]
    report = idx.match_dataset(upload)
    assert report.total_records == 37 and report.scored_records == 36 and report.unscored_records == 1
    assert report.matched_records == 16
    assert report.exact_records == 11
    assert report.per_dataset == {"ds/a": 11, "ds/b": 5, "ds/c": 1}
    assert report.per_generator == {"gen/x": 11, "gen/y": 5}
    assert report.matched_fraction == pytest.approx(16 / 36)
    by_source = {(s.dataset_ref, s.generator_ref): n for s, n in report.per_source.items()}
    assert by_source == {("ds/a", "gen/x"): 11, ("ds/b", "gen/y"): 5, ("ds/c", "gen/x"): 1}
    first = report.examples[0]
    assert (first.location, first.dataset_ref, first.matched_ordinal, first.exact) == ("record 0", "ds/a", 1, True)
    near = report.examples[10]
    assert near.dataset_ref == "ds/b" and not near.exact and 0.5 <= near.similarity < 1.0
    data = report.to_dict()
    json.dumps(data)
    assert data["matched_fraction"] == report.matched_fraction


def test_reports_from_files_name_locations(tmp_path: Path) -> None:
    rng = random.Random(5)
    synthetic = make_records(30, rng)
    idx = FingerprintIndex()
    idx.add_dataset(synthetic, "ds", "gen")
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "part-0").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_records(5, rng)))
    (upload / "part-1").write_text("".join(json.dumps({"text": t}) + "\n" for t in synthetic[:3]))
    report = idx.match_dataset(read_records(upload))
    assert [e.location for e in report.examples] == ["part-1:1", "part-1:2", "part-1:3"]
    scan = report.to_report(path="upload")
    assert scan.verdict is Verdict.SUSPICIOUS
    assert "3 of 8 records (37.50%)" in scan.findings[0].message
    assert scan.findings[1].member == "part-1:1"
    assert report.to_report(max_fraction=0.5).verdict is Verdict.CLEAN
    assert all(f.severity is not Verdict.MALICIOUS for f in scan.findings)


def test_nothing_assessable_is_an_error_not_clean() -> None:
    idx = FingerprintIndex()
    idx.add_dataset(make_records(5, random.Random(0)), "d", "g")
    assert idx.match_dataset([]).to_report().verdict is Verdict.ERROR
    only_short = idx.match_dataset(["yes", "thank you", Record("ok then", "f", 1, 1)])
    assert only_short.total_records == 3 and only_short.scored_records == 0
    assert only_short.to_report().verdict is Verdict.ERROR
    empty_index = FingerprintIndex()
    assert empty_index.match_dataset(make_records(3, random.Random(0))).to_report().verdict is Verdict.CLEAN


def test_dataset_added_twice_is_refused() -> None:
    idx = FingerprintIndex()
    idx.add_dataset(make_records(3, random.Random(0)), "d", "g")
    with pytest.raises(DuplicateDatasetError, match="'d' is already"):
        idx.add_dataset(make_records(3, random.Random(1)), "d", "g2")
    with pytest.raises(ValueError, match="generator_ref must be a non-empty string"):
        idx.add_dataset([], "e", "")
    with pytest.raises(TypeError, match="records must be Record or str"):
        idx.add_dataset([b"bytes"], "f", "g")  # type: ignore[list-item]


def test_band_candidates_equal_datasketch_lsh(corpus: list[str]) -> None:
    """Our numpy banding returns exactly the candidates of datasketch's MinHashLSH for the same (b, r)."""
    config = FingerprintConfig(bands=16, rows=8)
    fp = Fingerprinter(config)
    rng = random.Random(11)
    records = corpus[:300]
    sigs = np.stack([fp.signature(t) for t in records])
    queries = [edit_words(t, 0.05 if i < 50 else 0.3, rng) for i, t in enumerate(records[:100])]
    queries += make_records(50, rng)
    qsigs = np.stack([fp.signature(t) for t in queries])
    bands = BandIndex(config.bands, config.rows)
    bands.add(sigs[:150])
    bands.add(sigs[150:])  # two chunks: the lazy merge must keep ids right
    qidx, rids = bands.candidates(qsigs, max_bucket=10_000)
    ours: list[set[int]] = [set() for _ in queries]
    for q, r in zip(qidx.tolist(), rids.tolist(), strict=True):
        ours[q].add(r)

    class _Sig:
        scheme = SCHEME

        def __init__(self, values: np.ndarray) -> None:
            self.hashvalues = values

        def __len__(self) -> int:
            return len(self.hashvalues)

    lsh = MinHashLSH(num_perm=config.num_perm, params=(config.bands, config.rows))
    for i, sig in enumerate(sigs):
        lsh.insert(i, _Sig(sig))
    theirs = [set(lsh.query(_Sig(s))) for s in qsigs]
    assert ours == theirs
    # The comparison means something: light edits are candidates, unrelated records are not.
    assert sum(bool(s) for s in ours[:50]) >= 40
    assert not any(ours[100:])


def test_plain_array_api_rebuilds_the_same_index(index: FingerprintIndex, corpus: list[str]) -> None:
    arrays = index.arrays()
    assert arrays["signatures"].dtype == np.uint32 and arrays["record_hashes"].shape == (800, 32)
    rebuilt = FingerprintIndex(index.config, index.fingerprinter.permutations)
    for lo in range(0, 800, 300):  # as if read back from SQL rows in chunks
        rebuilt.add_fingerprints(
            arrays["record_hashes"][lo : lo + 300],
            arrays["signatures"][lo : lo + 300],
            dataset_ref=["acme/synthetic@1"] * len(arrays["ordinals"][lo : lo + 300]),
            generator_ref="acme/generator@2",
            ordinals=arrays["ordinals"][lo : lo + 300],
        )
    rng = random.Random(2)
    queries = [edit_words(t, 0.05, rng) for t in corpus[:50]]
    assert rebuilt.match_dataset(queries).to_dict() == index.match_dataset(queries).to_dict()
    fp = rebuilt.fingerprinter.fingerprint(corpus[0])
    assert fp is not None
    found = rebuilt.query_fingerprints(
        np.frombuffer(fp.record_hash, dtype=np.uint8)[None, :], fp.signature[None, :]
    )[0]
    assert found[0].exact and found[0].ordinal == 0


def test_plain_array_api_validates_shapes() -> None:
    idx = FingerprintIndex()
    good_h = np.zeros((2, 32), dtype=np.uint8)
    good_s = np.zeros((2, 128), dtype=np.uint32)
    with pytest.raises(ValueError, match="signatures must be uint32"):
        idx.add_fingerprints(good_h, good_s.astype(np.uint64), dataset_ref="d", generator_ref="g")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="record_hashes must be uint8 of shape"):
        idx.add_fingerprints(good_h[:1], good_s, dataset_ref="d", generator_ref="g")
    with pytest.raises(ValueError, match="has 1 labels for 2 records"):
        idx.add_fingerprints(good_h, good_s, dataset_ref=["d"], generator_ref="g")
    with pytest.raises(ValueError, match="ordinals must be 2 non-negative"):
        idx.add_fingerprints(good_h, good_s, dataset_ref="d", generator_ref="g", ordinals=[0, -1])
    assert len(idx) == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="bands \\* rows <= num_perm"):
        FingerprintConfig(num_perm=64, bands=32, rows=4)
    with pytest.raises(ValueError, match="match_threshold"):
        FingerprintConfig(match_threshold=0.0)
    with pytest.raises(ValueError, match="differ from"):
        FingerprintConfig.from_dict({"num_perm": 128})
    assert FingerprintConfig.from_dict(FingerprintConfig().to_dict()) == FingerprintConfig()


@settings(max_examples=40, deadline=None)
@given(tokens=st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=6, max_size=40))
def test_indexed_text_always_matches_itself(tokens: list[str]) -> None:
    text = " ".join(tokens)
    idx = FingerprintIndex()
    assert idx.add_dataset([text], "d", "g").indexed == 1
    matches = idx.query(text.upper())
    assert matches and matches[0].exact


def test_failed_add_leaves_the_index_unchanged(tmp_path: Path) -> None:
    idx = FingerprintIndex()
    first = make_records(20, random.Random(0))
    idx.add_dataset(first, "ds/ok", "gen")
    bad = tmp_path / "bad.jsonl"
    good = make_records(30, random.Random(1))
    bad.write_text("".join(json.dumps({"text": t}) + "\n" for t in good) + "{broken\n")
    with pytest.raises(RecordFormatError, match=r"bad\.jsonl:31: invalid JSON"):
        idx.add_dataset(read_records(bad), "ds/bad", "gen/new", batch_size=8)
    assert len(idx) == 20 and idx.dataset_refs == {"ds/ok"}
    assert [s.dataset_ref for s in idx.sources] == ["ds/ok"]
    assert not idx.query(good[0])
    bad.write_text("".join(json.dumps({"text": t}) + "\n" for t in good))
    assert idx.add_dataset(read_records(bad), "ds/bad", "gen/new").indexed == 30
    assert len(idx) == 50 and idx.query(good[0])[0].ordinal == 0
    assert idx.match_dataset(first + good).per_dataset == {"ds/ok": 20, "ds/bad": 30}
