"""Word-level edits for measuring how well fingerprints survive light editing of copied records.

An edit is one substitution, deletion or insertion of a word, chosen
uniformly; ``rate`` is the fraction of the record's words edited, rounded,
with at least one edit, so short records are always changed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def edit_words(text: str, rate: float, rng: random.Random, vocabulary: Sequence[str] | None = None) -> str:
    """``text`` with ``max(1, round(rate * words))`` random word edits (new words drawn from ``vocabulary``)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be in [0, 1]")
    tokens = text.split()
    if not tokens:
        return text
    pool = list(vocabulary) if vocabulary else tokens
    for _ in range(max(1, round(rate * len(tokens)))):
        op = rng.randrange(3)
        position = rng.randrange(len(tokens))
        if op == 0:
            tokens[position] = rng.choice(pool)
        elif op == 1 and len(tokens) > 1:
            del tokens[position]
        else:
            tokens.insert(position, rng.choice(pool))
    return " ".join(tokens)
