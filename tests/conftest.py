"""Shared fixtures: one temporary Prefect API for the session, a fresh MLflow store per test, image folders.

The tiers: `tests/` and `tests/families/` test the library, `tests/tasks/` the Prefect tasks
called directly, `tests/flows/` the flows and the command line end to end (tiny configs of each
family in `tests/flows/flow_helpers.py`, one trained run per family shared by the session).
"""

from __future__ import annotations

import os
import shutil
import tempfile

# Before Prefect or TensorFlow are imported anywhere: a private Prefect home, no telemetry, quiet TF.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="siamese-tests-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path
from typing import Callable

import early  # tests/early.py: pytest puts this folder on sys.path for its conftest
import numpy as np
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that wait for a process started early run last: it has the rest of the session to finish (tests/early.py)."""
    items.sort(key=early.waits_for_early_process)  # stable: the order is kept otherwise


def pytest_collection_finish(session: pytest.Session) -> None:
    early.start_used(session)


def pytest_sessionfinish(session: pytest.Session) -> None:
    early.stop_all(session)


@pytest.fixture(scope="session")
def prefect_api():
    """A real, temporary Prefect API server shared by every flow test (start-up costs ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def new_store(tmp_path_factory) -> Callable[[Path], str]:
    """Makes a new, empty MLflow store at a database path; returns its URI.

    MLflow creates and migrates a new SQLite database in about a second, and the suite opens a
    few dozen: each new store is a copy of one migrated, empty database instead. (The first
    creation itself, and two processes creating one store at once, are tested in
    tests/tasks/test_store.py.)
    """
    from mlflow import MlflowClient

    empty = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{empty}").search_registered_models(max_results=1)  # creates both stores' tables

    def make(database: Path) -> str:
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty, database)
        return f"sqlite:///{database}"

    return make


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, new_store) -> str:
    """A real MLflow store (SQLite + artifacts) in this test's temporary directory."""
    uri = new_store(tmp_path / "mlflow" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
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
