"""Where the MLflow store is, and a new local store opened by two processes at once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import early
import mlflow
import pytest
from mlflow.exceptions import MlflowException

from tasks.store import HTTP_REQUEST_DEFAULTS, is_server, mask_credentials, mlflow_client, sqlite_database, tracking_uri, ui_command

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


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://user:pass@host:5000", "http://user:***@host:5000"),
        ("https://ci-bot:s3cr%40t@mlflow.example.com/api", "https://ci-bot:***@mlflow.example.com/api"),
        ("http://:token@host", "http://:***@host"),
        ("http://user:pa:ss@host/", "http://user:***@host/"),
        (
            "API request to http://u:p@10.0.0.1:5000/api/2.0/mlflow/runs/get failed; retry http://v:q@h",
            "API request to http://u:***@10.0.0.1:5000/api/2.0/mlflow/runs/get failed; retry http://v:***@h",
        ),
        # Nothing to hide: unchanged.
        ("http://host:5000/path?a=b@c", "http://host:5000/path?a=b@c"),
        ("http://user@host", "http://user@host"),
        ("sqlite:////home/me/mlruns/mlflow.db", "sqlite:////home/me/mlruns/mlflow.db"),
        ("no URI here: user:pass@host", "no URI here: user:pass@host"),
    ],
)
def test_mask_credentials_hides_only_the_password_of_each_uri(text, masked):
    assert mask_credentials(text) == masked


def test_a_server_with_credentials_in_its_uri_is_shown_without_the_password(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ci-bot:hunter2@mlflow.example.com")
    assert ui_command() == "open https://ci-bot:***@mlflow.example.com"


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


def test_credentials_in_the_uri_reach_mlflow_as_its_variables_so_its_errors_cannot_quote_them(monkeypatch):
    from mlflow.utils.credentials import get_default_host_creds

    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(variable, "")  # unset for the test (empty counts as unset), restored after it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ci-bot:s3cr%40t@127.0.0.1:9/")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a refused connection fails at once

    client = mlflow_client()

    assert mlflow.get_tracking_uri() == "http://127.0.0.1:9/"
    credentials = get_default_host_creds(mlflow.get_tracking_uri())  # what MLflow's REST client authenticates with
    assert (credentials.username, credentials.password) == ("ci-bot", "s3cr@t")
    with pytest.raises(MlflowException) as refused:
        client.get_experiment_by_name("anything")
    assert "127.0.0.1:9" in str(refused.value) and "s3cr" not in str(refused.value)


def test_credentials_set_in_mlflow_variables_win_over_the_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "me")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "from-the-variable")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://other:from-the-uri@mlflow.example.com")

    mlflow_client()

    assert mlflow.get_tracking_uri() == "https://mlflow.example.com"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "from-the-variable"


def test_mlflow_http_retries_and_timeout_are_bounded_where_the_user_set_none(monkeypatch):
    """MLflow's own defaults (7 retries with backoff, 120 s per answer) kept a dead server's command waiting for minutes."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    for variable in HTTP_REQUEST_DEFAULTS:
        monkeypatch.setenv(variable, "")  # unset for the test (empty counts as unset), restored after it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # the user's: kept
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")

    mlflow_client()

    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2 and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 1
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 300
