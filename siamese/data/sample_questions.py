"""A sample file of labelled question pairs, for trying the text pipeline without real data.

Questions come from intent templates about topics. A duplicate pair asks the same intent about
the same topic in other words; a non-duplicate asks another intent about the same topic (many
shared words) or the same intent about another topic. Word overlap therefore only partly
separates them, which is what the TF-IDF baseline shows.

    python -m siamese.data.sample_questions questions.csv --rows 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

TOPICS = (
    "python", "machine learning", "guitar", "french", "chess", "photography", "cooking", "running",
    "investing", "drawing", "swimming", "statistics", "piano", "gardening", "spanish", "calculus",
    "yoga", "public speaking", "web design", "baking", "knitting", "astronomy", "rust", "painting",
)  # fmt: skip
INTENTS = (
    ("how do i learn {t}?", "what is the best way to learn {t}?", "how can i teach myself {t}?"),
    ("how long does it take to get good at {t}?", "how many months until i am decent at {t}?",
     "what is a realistic timeline to become good at {t}?"),
    ("what equipment do i need for {t}?", "what should i buy to start {t}?", "which gear is essential for {t}?"),
    ("is {t} hard for beginners?", "how difficult is {t} when you are new to it?", "is {t} difficult to pick up?"),
    ("what are common mistakes in {t}?", "which errors do beginners make in {t}?", "what should i avoid doing in {t}?"),
    ("can i make money with {t}?", "is it possible to earn a living from {t}?", "how do people get paid for {t}?"),
)  # fmt: skip


def sample_question_pairs(rows: int, seed: int = 0, duplicate_share: float = 0.4) -> pd.DataFrame:
    """`rows` pairs in the Quora layout: `question1`, `question2`, `is_duplicate` (0/1)."""
    rng = np.random.default_rng(seed)
    records = [_pair(rng, rng.random() < duplicate_share) for _ in range(rows)]
    return pd.DataFrame(records, columns=["question1", "question2", "is_duplicate"])


def _pair(rng: np.random.Generator, duplicate: bool) -> tuple[str, str, int]:
    intent, topic = rng.integers(len(INTENTS)), rng.integers(len(TOPICS))
    first, second = rng.choice(len(INTENTS[intent]), size=2, replace=False)
    if duplicate:
        return _ask(INTENTS[intent][first], topic, rng), _ask(INTENTS[intent][second], topic, rng), 1
    if rng.random() < 0.5:  # same topic, another intent
        other_intent = (intent + rng.integers(1, len(INTENTS))) % len(INTENTS)
        return _ask(INTENTS[intent][first], topic, rng), _ask(INTENTS[other_intent][second], topic, rng), 0
    other_topic = (topic + rng.integers(1, len(TOPICS))) % len(TOPICS)  # same intent, another topic
    return _ask(INTENTS[intent][first], topic, rng), _ask(INTENTS[intent][second], other_topic, rng), 0


def _ask(template: str, topic: int, rng: np.random.Generator) -> str:
    question = template.format(t=TOPICS[topic])
    return question[0].upper() + question[1:] if rng.random() < 0.7 else question


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a sample CSV/TSV/Parquet file of labelled question pairs.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frame = sample_question_pairs(args.rows, args.seed)
    suffix = args.output.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(args.output, index=False)
    else:
        frame.to_csv(args.output, index=False, sep="\t" if suffix in (".tsv", ".tab") else ",")
    print(f"wrote {len(frame)} question pairs ({int(frame.is_duplicate.sum())} duplicates) to {args.output}")


if __name__ == "__main__":
    main()
