"""Tiny configs of each model family and the record of a flow run, shared by the flow tests."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from siamese.config import (
    Config,
    GateConfig,
    ImageDataConfig,
    ModelKind,
    SequenceDataConfig,
    TextFileDataConfig,
    TextModelConfig,
    TextPairModelConfig,
    TrainingConfig,
    VisionModelConfig,
)

BLANK_ROWS = (3, 10)  # data rows of the training file whose question2 is blank: dropped by the run
IMAGE_SIZE = 16
ANY_FIRST_MODEL = GateConfig(min_quality=0.0, min_test_pairs=0)  # a tiny model becomes the first champion whatever its AUC


class FlowRun(NamedTuple):
    result: dict
    source: Path | None  # the user's data file, if any
    work_dir: Path  # holds the splits and trained.keras
    uri: str  # the MLflow store it was recorded in: `mlruns/mlflow.db` of the run's directory
    directory: Path  # where `siamese ui` (or `make train`) run from finds that store by default


def sequences_config(**training) -> Config:
    """Seconds to train: a few hundred short generated pairs, two epochs."""
    return Config(
        kind=ModelKind.SEQUENCES,
        data=SequenceDataConfig(num_pairs=200, timesteps=6),
        training=TrainingConfig(**{"epochs": 2, "batch_size": 32} | training),
        gate=ANY_FIRST_MODEL,
    )


def text_pairs_config(path: Path, **data) -> Config:
    """Seconds to train: a small vocabulary, 8 LSTM units on 16-wide embeddings, two epochs."""
    return Config(
        kind=ModelKind.TEXT,
        data=TextFileDataConfig(path=str(path), **data),
        model=TextPairModelConfig(units=8, vocabulary_size=200, sequence_length=12, embedding_dim=16),
        training=TrainingConfig(epochs=2, batch_size=32),
        gate=ANY_FIRST_MODEL,
    )


def vision_config(**data) -> Config:
    """Seconds to train: a hundred 16x16 pairs, a 4-filter compact backbone, one epoch."""
    return Config(
        kind=ModelKind.VISION,
        data=ImageDataConfig(**{"num_pairs": 120, "image_size": IMAGE_SIZE} | data),
        model=VisionModelConfig(filters=4),
        training=TrainingConfig(epochs=1, batch_size=32),
    )


def wait_until_answering(url: str, server: subprocess.Popen, log: Path, check: str, timeout: float = 120.0) -> None:
    """Return once a server `server` started answers `GET url + check` with 200; fail with its log if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}{check}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
        if server.poll() is not None:
            pytest.fail(f"{' '.join(map(str, server.args[:3]))} exited {server.returncode}: {log.read_text()[-3000:]}")
    pytest.fail(f"{' '.join(map(str, server.args[:3]))} did not answer on {url} within {timeout:g} s: {log.read_text()[-3000:]}")
