"""Where the MLflow store is, and one client per store: importable without MLflow or TensorFlow.

`siamese ui` needs only `tracking_uri`, so MLflow is imported inside the functions that use it.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

LOCAL_STORE = Path("mlruns")  # the default store, relative to where the command runs
_READY_STORES: set[str] = set()  # SQLite stores this process has opened (and created or migrated)


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set (a team's server), else the SQLite store under `mlruns/`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_database(uri: str) -> Path | None:
    """The database file of a local SQLite store; None for a server."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def mlflow_client() -> MlflowClient:
    """A client of the project's store, with MLflow's fluent API pointed at it too (`models:/...` resolves there).

    A new local SQLite store is created (or migrated) under a file lock: two runs starting at once
    on a new store would both migrate it, and one would fail; the lock makes the second wait and
    then find the store up to date. MLflow caches the opened stores for the rest of the process.
    """
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    database = sqlite_database(uri)
    if database is None or uri in _READY_STORES:
        return MlflowClient(uri)
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f"{database.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(uri)
            client.search_registered_models(max_results=1)  # opens the registry's store too
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(uri)
    return client


def ui_command() -> str:
    """The command that opens the MLflow UI on this store."""
    uri = tracking_uri()
    if is_server(uri):
        return f"open {uri}"
    # The mlflow beside this interpreter: it works without activating the virtual environment.
    installed = Path(sys.executable).with_name("mlflow")
    program = os.path.relpath(installed) if installed.exists() else "mlflow"
    return f"{program} ui --backend-store-uri {uri}"


def import_store_backend() -> None:
    """Import the SQL store code MLflow loads when a local store is first opened (1.3 s on 2 cores).

    Only an import, with nothing opened and nothing that can fail on bad data, so the command
    line can do it while it waits for the Prefect API instead of inside the first MLflow task.
    """
    if tracking_uri().startswith("sqlite:"):
        import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
