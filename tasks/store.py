"""Where the MLflow store is: importable without MLflow or TensorFlow, so `siamese ui` starts at once."""

from __future__ import annotations

import os
from pathlib import Path

LOCAL_STORE = Path("mlruns")  # the default store, relative to where the command runs


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set (a team's server), else the SQLite store under `mlruns/`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"


def import_store_backend() -> None:
    """Import the SQL store code MLflow loads when a local store is first opened (1.3 s on 2 cores).

    Only an import, with nothing opened and nothing that can fail on bad data, so the command
    line can do it while it waits for the Prefect API instead of inside the first MLflow task.
    """
    if tracking_uri().startswith("sqlite:"):
        import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
