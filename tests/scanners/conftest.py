"""Fixtures for the pickle/format scanner tests: the shared corpus, built once per session."""

from __future__ import annotations

import pytest

from scanners import Limits
from tests.scanners.corpus import Sample, build_corpus

SMALL_BOMB_MIB = 8

# Limits that turn an 8 MiB zeros member into a bomb, so the test corpus stays small.
BOMB_LIMITS = Limits(ratio_min_bytes=4 << 20, max_ratio=200.0)


@pytest.fixture(scope="session")
def corpus() -> dict[str, Sample]:
    return {s.name: s for s in build_corpus(bomb_mib=SMALL_BOMB_MIB)}
