"""Shared fixtures: one temporary Prefect API for the session, a fresh MLflow store per test."""

from __future__ import annotations

import os
import tempfile

# Before Prefect or TensorFlow are imported anywhere: a private Prefect home, no telemetry, quiet TF.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="siamese-tests-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from siamese.config import Config, GateConfig, SequenceDataConfig, TrainingConfig


@pytest.fixture(scope="session")
def prefect_api():
    """A real, temporary Prefect API server shared by every flow test (start-up costs ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A real MLflow store (SQLite + artifacts) in this test's temporary directory."""
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def tiny_config() -> Config:
    """Seconds to train: a few hundred short pairs, one epoch."""
    return Config(
        data=SequenceDataConfig(num_pairs=200, timesteps=6),
        training=TrainingConfig(epochs=2, batch_size=32),
        gate=GateConfig(min_quality=0.0),  # a tiny model becomes the first champion whatever its AUC
    )


@pytest.fixture
def write_class_folders() -> Callable[..., Path]:
    """Writes `root/<class>/<image>.png`: each class a colour and stripe pattern, each image a noisy variant."""

    def write(root: Path, classes: int = 8, images: int = 4) -> Path:
        from PIL import Image

        rng = np.random.default_rng(0)
        for index in range(classes):
            folder = root / f"class_{index}"
            folder.mkdir(parents=True)
            base = np.zeros((20, 20, 3))
            base[:, :: 2 + index % 3] = rng.uniform(0, 255, size=3)
            for number in range(images):
                pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{number}.png")
        return root

    return write
