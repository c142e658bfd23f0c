"""The whole corpus: benign files clean, third-party files suspicious, the rest never clean."""

from __future__ import annotations

from scanners import Report, Verdict, scan_bytes
from tests.scanners.conftest import BOMB_LIMITS
from tests.scanners.corpus import Sample

# Malicious samples whose payload is not a known gadget: flagged, but "only" suspicious.
SUSPICIOUS_ONLY = {"builtins_print.pkl", "ext_code.pkl"}


def _scan(sample: Sample) -> Report:
    return scan_bytes(sample.data, name=sample.name, limits=BOMB_LIMITS)


def _describe(sample: Sample, report: Report) -> str:
    lines = [f"{sample.name}: {report.verdict.value} ({report.format})"]
    lines += [f"    {f.severity.value} {f.member} @{f.offset}: {f.message}" for f in report.findings[:6]]
    return "\n".join(lines)


def test_benign_files_are_clean(corpus: dict[str, Sample]) -> None:
    bad = [_describe(s, r) for s in corpus.values() if s.category == "benign" and (r := _scan(s)).verdict.rank]
    assert not bad, "false positives:\n" + "\n".join(bad)


def test_third_party_files_are_suspicious_with_a_reason(corpus: dict[str, Sample]) -> None:
    for sample in (s for s in corpus.values() if s.category == "third_party"):
        report = _scan(sample)
        assert report.verdict is Verdict.SUSPICIOUS, _describe(sample, report)
        assert all(f.severity is Verdict.SUSPICIOUS for f in report.findings)
        assert any("allowlist" in f.message or "TorchScript" in f.message for f in report.findings)


def test_an_allowlisted_sklearn_estimator_is_clean(corpus: dict[str, Sample]) -> None:
    report = _scan(corpus["sklearn_logreg.joblib"])
    assert (report.verdict, report.format) == (Verdict.CLEAN, "joblib"), report.findings


def test_malformed_files_are_never_clean(corpus: dict[str, Sample]) -> None:
    for sample in (s for s in corpus.values() if s.category == "malformed"):
        report = _scan(sample)
        assert report.verdict in (Verdict.ERROR, Verdict.SUSPICIOUS), _describe(sample, report)
        if sample.name.endswith(".pkl"):
            assert report.verdict is Verdict.ERROR, _describe(sample, report)


def test_malicious_files_are_caught(corpus: dict[str, Sample]) -> None:
    missed = []
    for sample in (s for s in corpus.values() if s.category == "malicious"):
        report = _scan(sample)
        want = Verdict.SUSPICIOUS if sample.name in SUSPICIOUS_ONLY else Verdict.MALICIOUS
        if report.verdict is not want:
            missed.append(_describe(sample, report))
    assert not missed, "\n".join(missed)


def test_formats_are_detected_from_content(corpus: dict[str, Sample]) -> None:
    expected = {
        "torch_mlp_state_dict.pt": "pytorch-zip",
        "torch_mlp_legacy.pt": "pytorch-legacy",
        "numpy_float.npy": "npy",
        "numpy_arrays.npz": "npz",
        "joblib_arrays.joblib": "joblib",
        "joblib_arrays_zlib.joblib": "zlib:joblib",
        "weights.safetensors": "safetensors",
        "config.json": "text",
        "torchscript_mlp.pt": "torchscript",
        "gzip_wrapped.pkl.gz": "gzip:pickle",
        "xz_wrapped.pkl.xz": "xz:pickle",
        "tar_evil.tar": "tar",
    }
    for name, fmt in expected.items():
        assert _scan(corpus[name]).format == fmt, name
