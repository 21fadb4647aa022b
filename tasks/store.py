"""Where the MLflow store is: importable without MLflow or TensorFlow, so `siamese ui` starts at once."""

from __future__ import annotations

import os
from pathlib import Path

LOCAL_STORE = Path("mlruns")  # the default store, relative to where the command runs


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set (a team's server), else the SQLite store under `mlruns/`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"
