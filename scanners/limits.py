"""Resource limits for one scan.

The defaults let multi-GB checkpoints through (raw tensor data is skipped, not
read) while refusing inputs built to exhaust the scanner: decompression bombs,
absurd nesting, huge memo tables or stacks. Tests pass smaller limits to build
small bombs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on the work and memory of one scan; exceeding one is an ``error``, a bomb ``malicious``."""

    max_depth: int = 6
    """Nesting of containers: zip in gzip, nested pickle in a pickle, ..."""
    max_decompressed_total: int = 64 * GiB
    """Sum of bytes produced by all decompressors of one scan."""
    max_ratio: float = 1000.0
    """Decompressed/compressed ratio above which a stream is a bomb..."""
    ratio_min_bytes: int = 100 * MiB
    """...once it has produced at least this many bytes (small highly compressible files are fine)."""
    max_zip_members: int = 200_000
    max_inline_value: int = 4 * MiB
    """Strings/bytes in a pickle larger than this are skipped, not held in memory."""
    max_retained_bytes: int = 256 * MiB
    """Total pickle string/bytes content kept in memory for one pickle."""
    max_stack: int = 5_000_000
    max_memo: int = 10_000_000
    max_line: int = 64 * KiB
    """Longest protocol-0 text argument (GLOBAL names, INT, STRING...)."""
    max_safetensors_header: int = 100_000_000
    max_npy_header: int = 1 * MiB
    max_spool: int = 8 * GiB
    """Largest decompressed archive copied to a temporary file to be read as a zip."""
    max_findings: int = 1000
    max_metadata_items: int = 16_000_000
    """Items in one file's metadata (GGUF keys, tensors and array elements; HDF5 objects; ONNX fields):
    more is an ``error``, never a hang."""
    max_config_bytes: int = 64 * MiB
    """Largest metadata document read into memory: a Keras config, a GGUF chat template."""
    extra_safe_globals: frozenset[str] = field(default_factory=frozenset)
    """Pickle globals (``module.name``) trusted beyond the built-in allowlist; never lifts a malicious one."""
