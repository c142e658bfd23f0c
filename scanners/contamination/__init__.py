"""Synthetic-data contamination detectors (layers 2 and 3: fingerprints and a statistical detector).

Layer 2, fingerprints: ``FingerprintIndex`` keeps exact hashes and MinHash
signatures of every record of datasets registered as synthetic, labelled with
the dataset and generator references, and matches uploads against them
(``match_dataset`` -> ``ContaminationReport``). Records are streamed from
JSON lines, CSV, Parquet, text or directories by ``read_records``.

Layer 3, statistics (needs torch + transformers, imported lazily):
``ZeroShotDetector`` scores texts with a causal LM and estimates a dataset's
synthetic fraction; ``KGWWatermarkDetector`` tests a generator's declared KGW
watermark.
"""

from scanners.contamination.detector import (
    Calibration,
    FractionEstimate,
    TextScore,
    ZeroShotDetector,
    estimate_from_scores,
    reservoir_sample,
)
from scanners.contamination.errors import (
    ContaminationError,
    DetectorUnavailableError,
    DuplicateDatasetError,
    IndexFormatError,
    ModelLoadError,
    RecordFormatError,
)
from scanners.contamination.fingerprint import Fingerprint, FingerprintConfig, Fingerprinter
from scanners.contamination.index import AddResult, FingerprintBatch, FingerprintIndex
from scanners.contamination.lm import LoadedLM, generate_texts, load_causal_lm
from scanners.contamination.records import Record, read_records
from scanners.contamination.results import ContaminationReport, Match, MatchExample, Source
from scanners.contamination.sniff import RecordFormat, sniff_file
from scanners.contamination.watermark import KGWWatermarkDetector, WatermarkResult, WatermarkScan

__all__ = [
    "AddResult",
    "Calibration",
    "ContaminationError",
    "ContaminationReport",
    "DetectorUnavailableError",
    "DuplicateDatasetError",
    "Fingerprint",
    "FingerprintBatch",
    "FingerprintConfig",
    "FingerprintIndex",
    "Fingerprinter",
    "FractionEstimate",
    "IndexFormatError",
    "KGWWatermarkDetector",
    "LoadedLM",
    "Match",
    "MatchExample",
    "ModelLoadError",
    "Record",
    "RecordFormat",
    "RecordFormatError",
    "Source",
    "TextScore",
    "WatermarkResult",
    "WatermarkScan",
    "ZeroShotDetector",
    "estimate_from_scores",
    "generate_texts",
    "load_causal_lm",
    "read_records",
    "reservoir_sample",
    "sniff_file",
]
