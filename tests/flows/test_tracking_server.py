"""The training flow against a real `mlflow server` process, as a team runs it: SQLite backend,
artifacts proxied by the server, the client configured only through MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from flow_helpers import sequences_config, wait_until_answering
from mlflow import MlflowClient

from flows.train import train_flow
from tasks.store import HTTP_REQUEST_DEFAULTS
from tasks.tracking import TrackingUnavailableError

pytestmark = pytest.mark.usefixtures("prefect_api")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tracking_server(mlflow_server, monkeypatch) -> str:
    """The session's `mlflow server` (started as collection ends), named by MLFLOW_TRACKING_URI only."""
    uri, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_flow_records_and_registers_through_a_tracking_server(tracking_server, mlflow_server, tmp_path):
    result = train_flow(config=sequences_config(epochs=1), work_dir=tmp_path / "work")

    client = MlflowClient(tracking_server)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts go through the server"
    assert "sharing/report.json" in {item.path for item in client.list_artifacts(run.info.run_id, "sharing")}
    stored = mlflow_server[1] / "artifacts"
    assert any(path.name == "report.json" for path in stored.rglob("*")), "the server wrote the files"
    registered = result["registered"]
    assert str(client.get_model_version_by_alias(registered["name"], "champion").version) == registered["version"]
    model = mlflow.pyfunc.load_model(f"models:/{registered['name']}@champion")
    assert model.metadata.signature is not None


def test_unreachable_tracking_server_fails_fast_naming_it(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    with pytest.raises(TrackingUnavailableError, match=re.escape(f"MLflow tracking server {uri} is unreachable after 3 attempts")):
        train_flow(config=sequences_config())


# A tracking server that dies mid-run, then comes back

SIAMESE = str(Path(sys.executable).with_name("siamese"))
# Far more epochs than the test lets run, none stopping early: the server dies while training goes on.
TRAIN_FOR_LONG = [
    "train", "--num-pairs", "200", "--timesteps", "6", "--set", "data.features=8", "--units", "4", "--batch-size", "32",
    "--epochs", "2000", "--patience", "0", "--devices", "cpu",
]  # fmt: skip


def start_tracking_server(directory: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on loopback with its store in `directory`, in a process group of its own (its workers are children)."""
    program = str(Path(sys.executable).with_name("mlflow"))
    command = [
        program, "server", "--backend-store-uri", f"sqlite:///{directory}/mlflow.db", "--artifacts-destination",
        f"file://{directory}/artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
    with open(directory / "server.log", "a") as log:
        return subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=log, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL, as a crash or an out-of-memory kill ends a server: nothing of it gets to answer or clean up."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def run_with_an_epoch_logged(client: MlflowClient, command: subprocess.Popen, output: Path) -> str:
    """The id of the command's RUNNING run once it holds a first epoch's metrics (training has started)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("siamese-text")
        runs = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") if experiment else []
        if runs and "train/loss" in runs[0].data.metrics:
            return runs[0].info.run_id
        if command.poll() is not None:
            pytest.fail(f"siamese train exited {command.returncode} before training: {(output / 'stderr').read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail("siamese train logged no epoch within 300 s")


@pytest.mark.slow  # a tracking server started twice, a `siamese train` process and a second flow run: about a minute
def test_a_server_dying_mid_training_fails_the_command_within_a_minute_and_the_next_run_fails_the_run_left_running(tmp_path, monkeypatch):
    store, output = tmp_path / "server", tmp_path / "command"
    store.mkdir()
    output.mkdir()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_tracking_server(store, port)
    try:
        wait_until_answering(uri, server, store / "server.log", "/health")
        env = {key: value for key, value in os.environ.items() if key not in ("PREFECT_API_URL", *HTTP_REQUEST_DEFAULTS)}
        env |= {"MLFLOW_TRACKING_URI": uri, "TMPDIR": str(output)}  # the command's debug log too
        with open(output / "stdout", "w") as stdout, open(output / "stderr", "w") as stderr:
            command = subprocess.Popen([SIAMESE, *TRAIN_FOR_LONG], cwd=output, env=env, stdout=stdout, stderr=stderr)
        try:
            run_id = run_with_an_epoch_logged(MlflowClient(uri), command, output)
            kill_group(server)
            died = time.monotonic()
            command.wait(timeout=300)
            took = time.monotonic() - died
        finally:
            kill_group(command)
        message = (output / "stderr").read_text()
        assert command.returncode == 1, message[-3000:]
        assert took < 60, f"the command ended {took:.0f} s after its tracking server died"
        assert f"siamese: training failed: tracking server {uri} stopped answering during train-model's per-epoch metric logging (" in message
        assert f"so run {run_id} stays RUNNING until the next siamese train or retrain on this host marks it FAILED" in message

        server = start_tracking_server(store, port)  # back, on the same store and address
        wait_until_answering(uri, server, store / "server.log", "/health")
        client = MlflowClient(uri)
        assert client.get_run(run_id).info.status == "RUNNING"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(tmp_path)  # the next run's training state goes here
        result = train_flow(config=sequences_config(epochs=1), work_dir=tmp_path / "next")

        left = client.get_run(run_id)
        assert left.info.status == "FAILED"
        owner = f"pid {command.pid} on {socket.gethostname()}"
        assert left.data.tags["failure"].startswith(f"its process ({owner}) ended without ending the run"), left.data.tags["failure"]
        assert client.get_run(result["run_id"]).info.status == "FINISHED"
    finally:
        kill_group(server)
