"""Passage containment and hard-wrap normalisation: truncated, re-chunked and wrapped copies of registered
records match; unrelated text and one-record-per-line files are left alone (issue 17, defect 3)."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scanners.contamination import FingerprintIndex, read_records
from scanners.contamination.passages import PassageConfig, PassageIndex, passage_fingerprint, shingle_hashes
from scanners.contamination.perturb import edit_words
from scanners.contamination.textnorm import words
from tests.scanners.contamination.textgen import make_records, vocabulary


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return make_records(300, random.Random(3), min_words=120, max_words=300)


@pytest.fixture(scope="module", params=["passages", "record level"])
def index(request: pytest.FixtureRequest, corpus: list[str]) -> FingerprintIndex:
    idx = FingerprintIndex() if request.param == "passages" else FingerprintIndex(passages=None)
    idx.add_dataset(corpus, "acme/synthetic@1", "acme/generator@1")
    return idx


def first_halves(texts: list[str]) -> list[str]:
    return [" ".join(t.split()[: len(t.split()) // 2]) for t in texts]


def rechunked(texts: list[str], size: int) -> list[str]:
    tokens = " ".join(texts).split()
    return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens) - size + 1, size)]


def test_truncated_and_rechunked_copies_match(corpus: list[str], index: FingerprintIndex) -> None:
    halves = index.match_dataset(first_halves(corpus))
    pieces = index.match_dataset(rechunked(corpus, 100))
    if index._passages is None:  # the record-level matcher misses most of them: why passages exist
        assert halves.matched_fraction < 0.9 and pieces.matched_fraction < 0.2
        return
    assert halves.matched_fraction == 1.0 and pieces.matched_fraction >= 0.99, (halves, pieces.matched_fraction)
    assert pieces.per_generator == {"acme/generator@1": pieces.matched_records}
    example = pieces.examples[0]
    assert example.contained and not example.exact and 0.5 <= example.similarity <= 1.0
    assert "contained in record" in " ".join(f.message for f in pieces.to_report().findings)


def test_heavier_edits_match_with_passages(corpus: list[str], index: FingerprintIndex) -> None:
    vocab, _ = vocabulary()
    edited = [edit_words(t, 0.2, random.Random(i), vocab) for i, t in enumerate(corpus)]
    fraction = index.match_dataset(edited).matched_fraction
    assert fraction >= 0.8 if index._passages is not None else fraction < 0.3


def test_unrelated_text_does_not_match(index: FingerprintIndex) -> None:
    unrelated = make_records(600, random.Random(4), min_words=20, max_words=300)
    assert index.match_dataset(unrelated).matched_records == 0
    assert index.match_dataset(first_halves(unrelated) + rechunked(unrelated, 100)).matched_records == 0


def test_half_of_a_record_is_not_enough_for_a_mixed_record(corpus: list[str]) -> None:
    """A record whose passages are mostly new text does not match: at least half must be contained."""
    idx = FingerprintIndex()
    idx.add_dataset(corpus[:10], "d@1", "g")
    new = make_records(10, random.Random(5), min_words=300, max_words=300)
    mostly_new = [" ".join(c.split()[:80]) + " " + n for c, n in zip(corpus[:10], new, strict=True)]
    assert idx.match_dataset(mostly_new).matched_records == 0
    mostly_copied = [c + " " + " ".join(n.split()[:40]) for c, n in zip(corpus[:10], new, strict=True)]
    assert idx.match_dataset(mostly_copied).matched_records == 10


def test_passage_samples_are_consistent_and_round_trip(corpus: list[str]) -> None:
    config = PassageConfig()
    tokens = words(corpus[0])
    whole, passages = passage_fingerprint(tokens, config)
    assert np.all(np.diff(whole.astype(np.float64)) > 0)  # distinct and sorted
    assert set(np.concatenate(passages).tolist()) == set(whole.tolist())  # the windows cover the record
    assert shingle_hashes(tokens[:50], 3).tolist() == shingle_hashes(tokens, 3)[:48].tolist()  # position-free
    idx = FingerprintIndex()
    idx.add_dataset(corpus[:5], "d@1", "g")
    samples = idx.passage_samples()
    assert [s.tolist() for s in samples] == [passage_fingerprint(words(t), config)[0].tolist() for t in corpus[:5]]
    rebuilt = FingerprintIndex()
    arrays = idx.arrays()
    hashes, signatures = np.asarray(arrays["record_hashes"], np.uint8), np.asarray(arrays["signatures"], np.uint32)
    rebuilt.add_fingerprints(hashes, signatures, dataset_ref="d@1", generator_ref="g", samples=samples)
    assert rebuilt.match_dataset(first_halves(corpus[:5])).matched_records == 5
    without = FingerprintIndex()
    without.add_fingerprints(hashes, signatures, dataset_ref="d@1", generator_ref="g", samples=[None] * 5)
    assert without.match_dataset(rechunked(corpus[:5], 60)).matched_records == 0


def test_boilerplate_hashes_are_ignored() -> None:
    """A shingle sample shared by more registered records than max_postings proves nothing."""
    config = PassageConfig(max_postings=3, min_shared=2)
    shared = np.arange(0, 40, 2, dtype=np.uint64)
    table = PassageIndex(config)
    table.add(range(5), [shared] * 5)
    assert table.query([shared]) == [None]
    table = PassageIndex(config)
    table.add(range(3), [shared] * 3)
    hit = table.query([shared])[0]
    assert hit is not None and hit.record_id == 0 and hit.containment == 1.0 and hit.shared == 20


def test_config_validation() -> None:
    bad: dict[str, Any]
    for bad in ({"ngram": 0}, {"window": 4}, {"min_containment": 0.0}, {"min_passage_share": 1.5},
                {"sample": True}):
        with pytest.raises(ValueError):
            PassageConfig(**bad)


def test_hard_wrapped_text_is_read_by_paragraph(tmp_path: Path, corpus: list[str]) -> None:
    wrapped = tmp_path / "wrapped.txt"
    wrapped.write_text("\n\n".join(textwrap.fill(t, 80) for t in corpus[:20]) + "\n", encoding="utf-8")
    records = list(read_records(wrapped))
    assert [r.text for r in records] == [" ".join(t.split()) for t in corpus[:20]]
    assert records[1].line == len(textwrap.fill(corpus[0], 80).splitlines()) + 2
    # One record per line (lengths where they end, not at a width) stays one record per line.
    lines = tmp_path / "lines.txt"
    short = make_records(50, random.Random(6), min_words=3, max_words=14)
    lines.write_text("\n".join(short) + "\n", encoding="utf-8")
    assert [r.text for r in read_records(lines)] == short
    # And paragraphs can be asked for explicitly.
    paragraphs = tmp_path / "paragraphs.txt"
    paragraphs.write_text("a b c\nd e\n\n\nf g\n", encoding="utf-8")
    assert [r.text for r in read_records(paragraphs, text_unit="paragraph")] == ["a b c d e", "f g"]
    assert [r.text for r in read_records(paragraphs)] == ["a b c", "d e", "f g"]
    # A wrapped text with no blank line, longer than the record limit, is cut at line boundaries, not refused.
    book = tmp_path / "book.txt"
    book.write_text(textwrap.fill(" ".join(corpus[:40]), 80) + "\n", encoding="utf-8")
    pieces = list(read_records(book, max_record_bytes=2000))
    assert len(pieces) > 5 and all(len(r.text) <= 2000 for r in pieces)
    assert " ".join(r.text for r in pieces) == " ".join(" ".join(corpus[:40]).split())
