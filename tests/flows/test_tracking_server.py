"""The training flow against a real `mlflow server` process, as a team runs it: SQLite backend,
artifacts proxied by the server, the client configured only through MLFLOW_TRACKING_URI."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from flows.train import train_flow
from tasks.tracking import TrackingUnavailableError

pytestmark = pytest.mark.usefixtures("prefect_api")

STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path, monkeypatch) -> str:
    port = free_port()
    (tmp_path / "server").mkdir()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}",
            "--artifacts-destination", (tmp_path / "server" / "artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(1)
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited: {server.stderr.read()[-3000:]}")
    else:
        server.kill()
        pytest.fail(f"mlflow server did not answer on {uri} within {STARTUP_SECONDS} s")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    server.terminate()
    server.wait(timeout=30)


def test_flow_records_and_registers_through_a_tracking_server(tracking_server, tiny_config, tmp_path):
    result = train_flow(config=tiny_config, work_dir=tmp_path / "work")

    client = MlflowClient(tracking_server)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts go through the server"
    assert "sharing/report.json" in {item.path for item in client.list_artifacts(run.info.run_id, "sharing")}
    stored = tmp_path / "server" / "artifacts"
    assert any(path.name == "report.json" for path in stored.rglob("*")), "the server wrote the files"
    registered = result["registered"]
    assert str(client.get_model_version_by_alias(registered["name"], "champion").version) == registered["version"]
    model = mlflow.pyfunc.load_model(f"models:/{registered['name']}@champion")
    assert model.metadata.signature is not None


def test_unreachable_tracking_server_fails_fast_naming_it(monkeypatch, tiny_config):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    with pytest.raises(TrackingUnavailableError, match=re.escape(f"MLflow tracking server {uri} is unreachable after 3 attempts")):
        train_flow(config=tiny_config)
