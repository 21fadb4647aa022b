"""The training flow against a real `mlflow server` process, as a team runs it: SQLite backend,
artifacts proxied by the server, the client configured only through MLFLOW_TRACKING_URI."""

from __future__ import annotations

import re
import socket

import mlflow
import pytest
from flow_helpers import sequences_config
from mlflow import MlflowClient

from flows.train import train_flow
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
