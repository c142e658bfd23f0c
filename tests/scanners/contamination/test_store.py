"""Index persistence without pickle: round trip, atomic replacement, and every kind of damage."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scanners.contamination import FingerprintConfig, FingerprintIndex, IndexFormatError
from scanners.contamination.perturb import edit_words
from scanners.contamination.store import MANIFEST, load_index, save_index
from tests.scanners.contamination.textgen import make_records


@pytest.fixture(scope="module")
def records() -> list[str]:
    return make_records(200, random.Random(4))


@pytest.fixture
def saved(tmp_path: Path, records: list[str]) -> Path:
    idx = FingerprintIndex(FingerprintConfig(num_perm=64, bands=16, rows=4))
    idx.add_dataset(records[:100], "ds/one", "gen/a")
    idx.add_dataset(records[100:], "ds/two", "gen/b")
    save_index(idx, tmp_path / "idx")
    return tmp_path / "idx"


def manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    return data


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    (path / MANIFEST).write_text(json.dumps(data))


def replace_array(path: Path, name: str, array: np.ndarray, allow_pickle: bool = False) -> None:
    """Swap an array file and fix its digest, so only the content checks can catch it."""
    data = manifest(path)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    (path / data["files"][name]["name"]).write_bytes(buffer.getvalue())
    data["files"][name]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    write_manifest(path, data)


def test_round_trip(saved: Path, records: list[str]) -> None:
    loaded = load_index(saved)
    assert len(loaded) == 200
    assert loaded.config == FingerprintConfig(num_perm=64, bands=16, rows=4)
    assert loaded.dataset_refs == {"ds/one", "ds/two"}
    rng = random.Random(0)
    report = loaded.match_dataset([edit_words(t, 0.02, rng) for t in records[95:105]] + records[:2])
    assert report.per_dataset == {"ds/one": 7, "ds/two": 5}
    assert report.per_generator == {"gen/a": 7, "gen/b": 5}
    files = sorted(p.name for p in saved.iterdir())
    assert len(files) == 8 and MANIFEST in files


def test_passage_samples_round_trip(saved: Path, records: list[str]) -> None:
    """Version 2 keeps the passage samples: a truncated copy still matches after a load; a version 1 index
    (no samples) loads and matches at record level only."""
    halves = [" ".join(t.split()[: len(t.split()) // 2]) for t in records[:100]]
    original = FingerprintIndex(FingerprintConfig(num_perm=64, bands=16, rows=4))
    original.add_dataset(records[:100], "ds/one", "gen/a")
    loaded = load_index(saved)
    assert [s.tolist() for s in loaded.passage_samples()[:100]] == [s.tolist() for s in original.passage_samples()]
    assert loaded.match_dataset(halves).matched_records == original.match_dataset(halves).matched_records >= 95
    data = manifest(saved)
    for name in ("passage_hashes", "passage_offsets"):
        (saved / data["files"].pop(name)["name"]).unlink()
    data.update(version=1)
    del data["passages"], data["passage_entries"]
    write_manifest(saved, data)
    old = load_index(saved)
    assert len(old) == 200 and old.match_dataset(records[:3]).matched_records == 3
    assert old.match_dataset(halves).matched_records < 95


def test_saved_files_load_without_pickle(saved: Path) -> None:
    for entry in manifest(saved)["files"].values():
        array = np.load(saved / entry["name"], allow_pickle=False)
        assert array.dtype != object


def test_resave_replaces_and_cleans_up(saved: Path, records: list[str]) -> None:
    loaded = load_index(saved)
    loaded.add_dataset(make_records(10, random.Random(8)), "ds/three", "gen/c")
    save_index(loaded, saved)
    again = load_index(saved)
    assert len(again) == 210 and "ds/three" in again.dataset_refs
    assert len(list(saved.iterdir())) == 8


def test_interrupted_save_keeps_the_previous_index(saved: Path) -> None:
    """Arrays of a new generation without the manifest rename: the old manifest still loads its own files."""
    (saved / "signatures-00000000deadbeef.npy").write_bytes(b"half written")
    assert len(load_index(saved)) == 200


def test_duplicate_dataset_after_load(saved: Path) -> None:
    loaded = load_index(saved)
    with pytest.raises(ValueError, match="already in the fingerprint index"):
        loaded.add_dataset(["some words that are long enough to index"], "ds/one", "gen/a")


def test_tampered_array_is_detected(saved: Path) -> None:
    entry = manifest(saved)["files"]["signatures"]
    path = saved / entry["name"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=r"signatures-[0-9a-f]+\.npy: SHA-256 differs"):
        load_index(saved)


def test_missing_array_file(saved: Path) -> None:
    (saved / manifest(saved)["files"]["ordinals"]["name"]).unlink()
    with pytest.raises(IndexFormatError, match=r"ordinals-.*cannot read"):
        load_index(saved)


def test_pickled_object_array_is_refused(saved: Path) -> None:
    replace_array(saved, "ordinals", np.array([object()] * 200, dtype=object), allow_pickle=True)
    with pytest.raises(IndexFormatError, match=r"not a valid \.npy array|larger than"):
        load_index(saved)


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        ("signatures", np.zeros((200, 32), dtype=np.uint64), "is not uint32"),
        ("signatures", np.zeros((200, 64), dtype=np.uint64), "larger than its declared shape"),
        ("signatures", np.zeros((199, 64), dtype=np.uint32), r"\(199, 64\) is not uint32 \(200, 64\)"),
        ("source_ids", np.full(200, 7, dtype=np.uint32), "source_ids refer to sources"),
        ("ordinals", np.full(200, -1, dtype=np.int64), "negative record ordinal"),
        ("record_hashes", np.zeros((200, 8), dtype=np.float32), "dtype float32 is not uint8"),
        ("permutations", np.zeros((2, 64), dtype=np.uint32), "must be odd"),
        ("permutations", np.ones((2, 64), dtype=np.uint32), "differ from the stored ones"),
    ],
)
def test_inconsistent_arrays(saved: Path, name: str, array: np.ndarray, message: str) -> None:
    replace_array(saved, name, array)
    with pytest.raises(IndexFormatError, match=message):
        load_index(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format="something else"), "not a fingerprint index manifest"),
        (lambda m: m.update(version=3), "unsupported index version 3"),
        (lambda m: m["passages"].update(window=2), "bad passages config"),
        (lambda m: m["passages"].pop("sample"), "bad passages config"),
        (lambda m: m.update(passage_entries=m["passage_entries"] + 1), "passage_hashes"),
        (lambda m: m.update(scheme="legacy"), "signature scheme 'legacy'"),
        (lambda m: m["config"].update(num_perm=63), "bad config"),
        (lambda m: m["config"].update(extra=1), "bad config"),
        (lambda m: m.update(records=-1), "'records' missing"),
        (lambda m: m.update(records=True), "'records' missing"),
        (lambda m: m["sources"].append({"dataset_ref": "x"}), "malformed source entry"),
        (lambda m: m["sources"].append(m["sources"][0]), "duplicate source entries"),
        (lambda m: m["files"]["signatures"].update(name="../../etc/passwd"), "unexpected file name"),
        (lambda m: m["files"]["signatures"].update(name=m["files"]["ordinals"]["name"]), "unexpected file name"),
        (lambda m: m["files"].pop("permutations"), "lacks file entry 'permutations'"),
        (lambda m: m["probe"].update(text="other"), "altered signature probe"),
        (lambda m: m["probe"]["signature"].__setitem__(0, 1), "differ from the stored ones"),
        (lambda m: m.update(datasets=[""]), "datasets must be non-empty strings"),
    ],
)
def test_bad_manifests(saved: Path, change: Any, message: str) -> None:
    data = manifest(saved)
    change(data)
    write_manifest(saved, data)
    with pytest.raises(IndexFormatError, match=message):
        load_index(saved)


def test_unreadable_manifests(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(IndexFormatError, match=r"index\.json: cannot read"):
        load_index(tmp_path / "nowhere")
    (saved / MANIFEST).write_bytes(b"\xff\xfe not json")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        load_index(saved)
    (saved / MANIFEST).write_text("[" * 100_000)
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        load_index(saved)


def test_empty_index_round_trip(tmp_path: Path) -> None:
    save_index(FingerprintIndex(), tmp_path / "e")
    loaded = load_index(tmp_path / "e")
    assert len(loaded) == 0
    assert loaded.match_dataset(make_records(2, random.Random(0))).matched_records == 0
