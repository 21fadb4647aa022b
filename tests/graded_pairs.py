"""A generated file of graded text pairs (STS layout), learnable: the score is the share of words the two sides share."""

from __future__ import annotations

import numpy as np
import pandas as pd

WORDS = tuple(
    "apple river stone cloud tiger piano garden window candle forest bridge silver rocket harbor meadow lantern "
    "violin desert island marble thunder pepper castle saddle mirror anchor velvet glacier falcon orchard".split()
)
WORDS_PER_TEXT = 6


def graded_pairs(rows: int, seed: int = 0, low: float = 0.0, high: float = 5.0) -> pd.DataFrame:
    """`rows` pairs as `sentence1`, `sentence2`, `score`: six words each, the score `low..high` by shared words.

    The right text keeps 0 to 5 of the left text's words (never all six, so no pair is its own
    twin) and fills up with other words, shuffled; the score is `low + (high - low) * shared / 5`.
    """
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(rows):
        left = list(rng.choice(WORDS, WORDS_PER_TEXT, replace=False))
        shared = int(rng.integers(0, WORDS_PER_TEXT))
        others = [word for word in WORDS if word not in left]
        right = left[:shared] + list(rng.choice(others, WORDS_PER_TEXT - shared, replace=False))
        rng.shuffle(right)
        score = low + (high - low) * shared / (WORDS_PER_TEXT - 1)
        records.append((" ".join(left), " ".join(right), round(score, 3)))
    return pd.DataFrame(records, columns=["sentence1", "sentence2", "score"])
