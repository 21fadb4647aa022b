"""Where the MLflow store is, and one client per store: importable without MLflow or TensorFlow.

`siamese ui` needs only `tracking_uri`, so MLflow is imported inside the functions that use it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from siamese.locks import FileLock

if TYPE_CHECKING:
    from mlflow import MlflowClient

LOCAL_STORE = Path("mlruns")  # the default store, relative to where the command runs
_READY_STORES: set[str] = set()  # SQLite stores this process has opened (and created or migrated)
# The password of a URI's user information: `scheme://user:PASSWORD@host` (RFC 3986 keeps `/`, `@` and spaces out of it).
_URI_PASSWORD = re.compile(r"(?P<user>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^/\s@]*@")
# MLflow's HTTP client retries a failed request 7 times with growing pauses (about 4 minutes for a
# dead server) and waits 120 s for each answer; with Prefect's task retries on top, a tracking
# server that died mid-run hung a command for 17 minutes. These bounds (a user's settings win) fail
# a request to a dead server in about 3 s, and to one that accepts but never answers in under 50 s.
HTTP_REQUEST_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # pauses of 0 and 2 s (plus up to 1 s of jitter) between tries
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",  # seconds to wait for a connection, or for the server's next bytes
}


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set (a team's server), else the SQLite store under `mlruns/`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"


def mask_credentials(text: str) -> str:
    """`text` with the password of every URI in it replaced by `***`: `http://user:***@host:5000`.

    A tracking server's credentials may ride in `MLFLOW_TRACKING_URI`; whatever prints or stores a
    URI, or a message that may quote one (MLflow's errors do), passes it through here first.
    """
    return _URI_PASSWORD.sub(r"\g<user>***@", text)


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
    MLflow's HTTP retries and timeouts are bounded first (`HTTP_REQUEST_DEFAULTS`).
    """
    import mlflow
    from mlflow import MlflowClient

    _bound_http_requests()
    uri = _credentials_to_mlflow(tracking_uri())
    mlflow.set_tracking_uri(uri)
    database = sqlite_database(uri)
    if database is None or uri in _READY_STORES:
        return MlflowClient(uri)
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(database.with_name(f"{database.name}.lock")):
        client = MlflowClient(uri)
        client.search_registered_models(max_results=1)  # opens the registry's store too
    _READY_STORES.add(uri)
    return client


def _bound_http_requests() -> None:
    """Set `HTTP_REQUEST_DEFAULTS` in the environment where the user has not: MLflow reads them at every request."""
    for variable, value in HTTP_REQUEST_DEFAULTS.items():
        if not os.environ.get(variable):
            os.environ[variable] = value


def _credentials_to_mlflow(uri: str) -> str:
    """`uri` without its user and password, which go to MLflow's `MLFLOW_TRACKING_USERNAME` / `_PASSWORD` instead.

    MLflow quotes the URI in its errors (`API request to http://user:pass@host/... failed`), and
    a failed task's error is stored in Prefect's database and the MLflow run's `failure` tag.
    From these variables MLflow sends the same basic authentication with a URI that holds no
    password. Variables the user set win.
    """
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    for variable, value in (("MLFLOW_TRACKING_USERNAME", parts.username), ("MLFLOW_TRACKING_PASSWORD", parts.password)):
        if not os.environ.get(variable):
            os.environ[variable] = unquote(value or "")
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def ui_command() -> str:
    """The command that opens the MLflow UI on this store."""
    uri = tracking_uri()
    if is_server(uri):
        return f"open {mask_credentials(uri)}"
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
