"""Helpers of the text pair flow tests."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from siamese.config import Config, GateConfig, TextFileDataConfig, TextModelConfig, TrainingConfig

BLANK_ROWS = (3, 10)  # data rows of the training file whose question2 is blank: dropped by the run


class TextRun(NamedTuple):
    result: dict
    source: Path  # the training CSV
    work_dir: Path  # holds trained.keras
    uri: str  # the MLflow store it was recorded in


def text_pairs_config(path: Path, **data) -> Config:
    """Seconds to train: a small vocabulary, 8 LSTM units on 16-wide embeddings, two epochs."""
    return Config(
        data=TextFileDataConfig(path=str(path), **data),
        model=TextModelConfig(units=8, vocabulary_size=200, sequence_length=12, embedding_dim=16),
        training=TrainingConfig(epochs=2, batch_size=32),
        gate=GateConfig(min_quality=0.0),  # a tiny model becomes the first champion whatever its AUC
    )
