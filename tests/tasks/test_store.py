"""Where the MLflow store is, and a new local store opened by two processes at once."""

from __future__ import annotations

import sys
from pathlib import Path

import early
import pytest

from tasks.store import is_server, sqlite_database, tracking_uri, ui_command

# Opens the store the environment names and registers a model there: what a run does first.
OPEN_STORE = """
import sys
from tasks.store import mlflow_client
client = mlflow_client()
client.create_registered_model(f"model-{sys.argv[1]}")
print(len(client.search_registered_models()))
"""


def test_the_default_store_is_sqlite_under_mlruns_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert sqlite_database(tracking_uri()) == tmp_path.resolve() / "mlruns" / "mlflow.db"
    assert ui_command().endswith(f"ui --backend-store-uri sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db")


def test_a_team_server_named_in_the_environment_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking_uri() == "http://mlflow.internal:5000" and is_server(tracking_uri())
    assert sqlite_database(tracking_uri()) is None
    assert ui_command() == "open http://mlflow.internal:5000"


# Two processes at once on a store that does not exist yet; each prints the registered models it then sees.
OPEN_STORE_TWICE = """
export MLFLOW_TRACKING_URI="sqlite:///$PWD/mlruns/mlflow.db"
"$1" -c "$2" 1 > one.out 2> one.err & first=$!
"$1" -c "$2" 2 > two.out 2> two.err & second=$!
wait $first; echo $? > one.code
wait $second; echo $? > two.code
"""
early.register("store_opened_twice", lambda: early.command(["bash", "-c", OPEN_STORE_TWICE, "bash", sys.executable, OPEN_STORE]))


@pytest.fixture
def store_opened_twice(request) -> Path:
    process = early.started(request, "store_opened_twice")
    early.result(process)
    return process.directory


def test_two_processes_creating_one_new_store_at_once_both_succeed(store_opened_twice):
    """The first open creates and migrates the database: without the lock the second process would fail."""
    for name in ("one", "two"):
        assert (store_opened_twice / f"{name}.code").read_text().strip() == "0", (store_opened_twice / f"{name}.err").read_text()[-3000:]
    counts = [int((store_opened_twice / f"{name}.out").read_text().split()[-1]) for name in ("one", "two")]
    assert max(counts) == 2, "both registered their model in the one store"
