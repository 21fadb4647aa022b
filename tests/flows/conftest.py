"""Flow fixtures: one flow run per model family, trained and registered once per session, and real processes.

Tests that only read what a run recorded share these runs instead of training again; each run
has its own MLflow store, so a test that trains more (the gate, failures) starts from a clean one.

Real processes that tests only wait for (`siamese train`, `siamese score` and `siamese ui` in a
fresh directory, an `mlflow server`) start as soon as collection ends (tests/early.py).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import NamedTuple

import early
import httpx
import mlflow
import pytest
from flow_helpers import BLANK_ROWS, FlowRun, sequences_config, text_pairs_config, vision_config
from mlflow import MlflowClient

from siamese.config import Config
from siamese.data.sample_questions import sample_question_pairs


def run_flow(directory: Path, config: Config | dict, uri: str, source: Path | None = None) -> FlowRun:
    """Train `config` through the real flow into the store at `uri`, the project's place for it: `directory/mlruns`."""
    from flows.train import train_flow

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        result = train_flow(config=config, work_dir=directory / "work")
    return FlowRun(result, source, directory / "work", uri, directory)


def project_store(directory: Path, new_store) -> str:
    return new_store(directory.resolve() / "mlruns" / "mlflow.db")


@pytest.fixture(scope="session")
def sequences_run(tmp_path_factory, new_store, prefect_api) -> FlowRun:
    """The default family on a few hundred short generated pairs."""
    directory = tmp_path_factory.mktemp("sequences-run")
    return run_flow(directory, sequences_config(), project_store(directory, new_store))


@pytest.fixture(scope="session")
def stereo_run(tmp_path_factory, new_store, prefect_api) -> FlowRun:
    """The vision family on generated stereo pairs of 16x16 pixels.

    The config goes in as JSON (the shape of a TOML file), as deployments and the Prefect UI pass it.
    """
    directory = tmp_path_factory.mktemp("stereo-run")
    return run_flow(directory, vision_config().to_dict(), project_store(directory, new_store))


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, new_store, prefect_api) -> FlowRun:
    """The text family on a CSV of 200 question pairs, two of them invalid and dropped."""
    directory = tmp_path_factory.mktemp("text-run")
    pairs = sample_question_pairs(200, seed=1)
    pairs.loc[list(BLANK_ROWS), "question2"] = ""
    source = directory / "questions.csv"
    pairs.to_csv(source, index=False)
    config = text_pairs_config(source, drop_invalid_rows=True)
    return run_flow(directory, config, project_store(directory, new_store), source)


def use_store(run: FlowRun, monkeypatch) -> MlflowClient:
    """Point this test at a run's MLflow store (`models:/...` resolves there)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.uri)
    mlflow.set_tracking_uri(run.uri)
    return MlflowClient(run.uri)


@pytest.fixture
def text_store(text_run, monkeypatch) -> MlflowClient:
    return use_store(text_run, monkeypatch)


@pytest.fixture
def sequences_store(sequences_run, monkeypatch) -> MlflowClient:
    return use_store(sequences_run, monkeypatch)


@pytest.fixture
def stereo_store(stereo_run, monkeypatch) -> MlflowClient:
    return use_store(stereo_run, monkeypatch)


# Real processes started as soon as collection ends (tests/early.py)


SIAMESE = str(Path(sys.executable).with_name("siamese"))
# The README's path for a new user, in a fresh directory: train on a file of question pairs, score
# new pairs with the champion, open the MLflow UI (left running). Each command starts its own
# temporary Prefect API.
QUESTION_FILE_COMMANDS = """
export PREFECT_HOME="$PWD/prefect-home"  # its own: no other Prefect server of the session shares its database
"$1" train --data questions.csv --epochs 1 --set model.units=8 --set model.embedding_dim=16 --set gate.min_quality=0.0 --set gate.min_test_pairs=0 \\
    > train.out 2> train.err
echo $? > train.code
"$1" score --model models:/siamese-text@champion --input new_pairs.csv --output scores.parquet --chunk-rows 16 \\
    > score.out 2> score.err
echo $? > score.code
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false  # no background job workers: 7 more processes importing MLflow
exec "$1" ui --port "$2" > ui.out 2> ui.err
"""


class QuestionFileCommands(NamedTuple):
    directory: Path
    train: early.CommandResult
    score: early.CommandResult


def _write_question_files(directory: Path) -> None:
    sample_question_pairs(150, seed=3).to_csv(directory / "questions.csv", index=False)
    new_pairs = sample_question_pairs(40, seed=4).drop(columns="is_duplicate")
    new_pairs.loc[5, "question2"] = ""
    new_pairs.to_csv(directory / "new_pairs.csv", index=False)


def _start_question_file_commands() -> early.EarlyProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    port = _free_port()
    commands = early.command(["bash", "-c", QUESTION_FILE_COMMANDS, "bash", SIAMESE, str(port)], _write_question_files, env)
    return commands._replace(url=f"http://127.0.0.1:{port}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_mlflow_server() -> early.EarlyProcess:
    port = _free_port()
    mlflow_program = str(Path(sys.executable).with_name("mlflow"))
    script = (
        '"$1" server --backend-store-uri "sqlite:///$PWD/mlflow.db" --artifacts-destination "file://$PWD/artifacts" '
        f"--host 127.0.0.1 --port {port} --workers 1"
    )
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers: 7 processes fewer
    server = early.command(["bash", "-c", f"exec {script}", "bash", mlflow_program], env=env)
    return server._replace(url=f"http://127.0.0.1:{port}")


early.register("question_file_commands", _start_question_file_commands)
early.register("mlflow_server", _start_mlflow_server)


@pytest.fixture(scope="session")
def question_file_commands(request) -> QuestionFileCommands:
    """`siamese train --data questions.csv`, then `siamese score` with the champion, in a fresh directory."""
    process = early.started(request, "question_file_commands")
    deadline = time.monotonic() + 900
    while not (process.directory / "score.code").exists() and process.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)

    def result(command: str) -> early.CommandResult:
        code = process.directory / f"{command}.code"
        read = lambda suffix: (process.directory / f"{command}.{suffix}").read_text()  # noqa: E731
        return early.CommandResult(int(code.read_text()) if code.exists() else -1, read("out"), read("err"))

    return QuestionFileCommands(process.directory, result("train"), result("score"))


@pytest.fixture(scope="session")
def mlflow_server(request) -> tuple[str, Path]:
    """A real `mlflow server` (SQLite backend, proxied artifacts); its URI and its directory."""
    server = early.started(request, "mlflow_server")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server.url, server.directory
        except httpx.TransportError:
            time.sleep(0.5)
        if server.process.poll() is not None:
            pytest.fail(f"mlflow server exited: {(server.directory / 'stderr').read_text()[-3000:]}")
    pytest.fail(f"mlflow server did not answer on {server.url} within 120 s")


class UiServer(NamedTuple):
    url: str
    output: Path  # what `siamese ui` printed
    directory: Path  # where it runs, trained in by `siamese train`


@pytest.fixture(scope="session")
def question_file_ui(question_file_commands, request) -> UiServer:
    """`siamese ui` where `siamese train` ran, as a user opens it next: it finds the `mlruns/` store there."""
    process = early.started(request, "question_file_commands")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{process.url}/health", timeout=2).raise_for_status()
            return UiServer(process.url, process.directory / "ui.out", process.directory)
        except httpx.HTTPError:
            time.sleep(0.5)
        if process.process.poll() is not None:
            pytest.fail(f"siamese ui exited: {(process.directory / 'ui.err').read_text()[-3000:]}")
    pytest.fail(f"siamese ui did not answer on {process.url} within 120 s")
