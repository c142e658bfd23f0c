"""Generated record sets for the fingerprint tests: words drawn with English prose frequencies.

The vocabulary and its frequencies come from the Python Language Reference
text shipped in the standard library (``pydoc_data.topics``), so frequent
words ("the", "of", "a") recur across unrelated records as they do in real
datasets, which is what makes false matches possible at all.
"""

from __future__ import annotations

import pydoc_data.topics
import random
import re
from collections import Counter
from functools import lru_cache
from itertools import accumulate


@lru_cache(maxsize=1)
def vocabulary() -> tuple[list[str], list[int]]:
    words = re.findall(r"[A-Za-z]+", " ".join(pydoc_data.topics.topics.values()))
    counts = Counter(w.lower() for w in words)
    common = counts.most_common(8000)
    return [w for w, _ in common], [c for _, c in common]


@lru_cache(maxsize=1)
def _cumulative() -> list[int]:
    return list(accumulate(vocabulary()[1]))


def make_records(n: int, rng: random.Random, min_words: int = 20, max_words: int = 80) -> list[str]:
    words, cumulative = vocabulary()[0], _cumulative()
    return [
        " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(min_words, max_words))) for _ in range(n)
    ]
