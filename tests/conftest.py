"""Shared fixtures: one temporary Prefect API for the session, a fresh MLflow store per test."""

from __future__ import annotations

import os
import tempfile

# Before Prefect or TensorFlow are imported anywhere: a private Prefect home, no telemetry, quiet TF.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="siamese-tests-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from siamese.config import Config, SequenceDataConfig, TrainingConfig


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
    )
