"""MLflow tracking tasks called directly against a real SQLite store: runs, params, metrics, artifacts."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from task_helpers import sequences_config, text_config

from siamese.devices import DevicePlan
from siamese.evaluation import Calibration
from siamese.families import SourceFile
from siamese.sharing import SharingCheck, SharingReport
from tasks.store import HTTP_REQUEST_DEFAULTS
from tasks.tracking import (
    TrackingUnavailableError,
    check_tracking_store,
    end_run,
    epoch_metrics_logger,
    fail_orphaned_runs,
    log_dataset,
    log_evaluation,
    log_sharing_report,
    log_stopping,
    log_training,
    start_run,
)

REPORT = SharingReport(
    checks=(SharingCheck("same_encoder_object", True, "one encoder"),),
    encoder_params=100,
    head_params=9,
    total_params=109,
    unshared_params=209,
    max_encoding_difference=0.0,
)


@pytest.fixture
def client(mlflow_store) -> MlflowClient:
    return MlflowClient(mlflow_store)


def test_a_local_store_needs_no_check(mlflow_store):
    assert check_tracking_store.fn() == mlflow_store


def test_a_tracking_server_that_does_not_answer_fails_fast_naming_it(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there once closed
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match=re.escape(f"MLflow tracking server {uri} is unreachable after 2 attempts")):
        check_tracking_store.fn(attempts=2, delay_seconds=0.0)
    assert time.monotonic() - started < 15


def test_a_run_goes_to_its_familys_experiment_with_the_whole_config(client, mlflow_store):
    config = sequences_config()
    run = client.get_run(start_run.fn(config))
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "siamese-text"
    store = mlflow_store.removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert experiment.artifact_location.startswith(f"file://{store}/artifacts/"), "artifacts beside the database"
    assert run.data.params == config.to_params()
    assert run.info.run_name == "sequences paraphrase symmetric seed 0"
    assert run.data.tags["mlflow.note.content"].startswith("A sequences Siamese model (symmetric head, similarity) trained on paraphrase")
    assert run.data.tags["mlflow.source.git.commit"]
    logged = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.json"))
    assert logged == config.to_dict()


def test_a_text_run_is_named_after_its_file(client, tmp_path):
    run = client.get_run(start_run.fn(text_config(tmp_path)))
    assert run.info.run_name == "text questions.csv symmetric seed 0"


def test_training_dataset_sharing_and_evaluation_are_logged_under_their_keys(client, tmp_path):
    run_id = start_run.fn(sequences_config())
    log_training.fn(run_id, DevicePlan("tensorflow", ("/cpu:0",), "float32"), 2.5, 40.0, {"train": 6, "validation": 2, "test": 2})
    source = SourceFile("/data/q.csv", "ab" * 32, 12, {"empty or missing left text": 2}, ("q1", "q2", "y"))
    log_dataset.fn(run_id, source, {"train": 6, "validation": 2, "test": 2})
    log_sharing_report.fn(run_id, REPORT)
    plot = tmp_path / "roc_curve.png"
    plot.write_bytes(b"\x89PNG")
    calibration = Calibration(threshold=0.42, f1=0.8, equal_error_threshold=0.47, equal_error_rate=0.2)
    log_evaluation.fn(run_id, {"roc_auc": 0.75}, [[3, 1], [0, 4]], [plot], {"majority_auc": 0.5}, calibration)

    run = client.get_run(run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["devices.devices"] == "/cpu:0" and params["data.train_pairs"] == "6"
    assert metrics["train/seconds"] == 2.5 and metrics["train/pairs_per_second"] == 40.0
    assert params["data.sha256"] == "ab" * 32 and params["data.columns"] == "q1, q2, y" and params["data.dropped_rows"] == "2"
    assert metrics["data/dropped_rows"] == 2
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "q.csv" and json.loads(dataset_input.dataset.source) == {"uri": "/data/q.csv"}
    assert json.loads(dataset_input.dataset.profile) == {
        "file_rows": 12, "dropped_rows": 2, "train_rows": 6, "validation_rows": 2, "test_rows": 2,
    }  # fmt: skip
    assert metrics["sharing/passed"] == 1.0 and metrics["sharing/params_saved"] == 100
    assert metrics["test/roc_auc"] == 0.75 and metrics["baseline/majority_auc"] == 0.5
    assert {key: value for key, value in metrics.items() if key.startswith("calibration/")} == {
        "calibration/threshold": 0.42, "calibration/f1": 0.8, "calibration/equal_error_threshold": 0.47, "calibration/equal_error_rate": 0.2,
    }  # fmt: skip
    artifacts = {item.path for folder in ("", "data", "evaluation", "sharing") for item in client.list_artifacts(run_id, folder or None)}
    assert {
        "config.json", "data/dropped_rows.json", "sharing/report.json", "evaluation/confusion_matrix.json", "evaluation/roc_curve.png",
    } <= artifacts  # fmt: skip
    matrix = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/confusion_matrix.json"))
    assert matrix["counts"] == [[3, 1], [0, 4]]


def test_a_run_ends_finished_or_failed_with_its_reason(client):
    finished, failed = start_run.fn(sequences_config()), start_run.fn(sequences_config())
    end_run.fn(finished, None)
    end_run.fn(failed, "WeightSharingError: weight-sharing verification failed")
    assert client.get_run(finished).info.status == "FINISHED" and "failure" not in client.get_run(finished).data.tags
    assert client.get_run(failed).info.status == "FAILED"
    assert client.get_run(failed).data.tags["failure"] == "WeightSharingError: weight-sharing verification failed"


CHILD_OWNING_A_RUN = """
import time
from mlflow import MlflowClient
from tasks.tracking import owner_tags
client = MlflowClient()
run = client.create_run(client.create_experiment("killed"), tags=owner_tags())
print(run.info.run_id, flush=True)
time.sleep(600)
"""


def test_a_run_whose_process_was_killed_is_failed_by_the_next_command_and_live_ones_are_not(client):
    repository = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", CHILD_OWNING_A_RUN], cwd=repository, stdout=subprocess.PIPE, text=True)
    killed = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    live = start_run.fn(sequences_config())  # owned by this test's process
    elsewhere = client.create_run(client.get_run(live).info.experiment_id, tags={"siamese.host": "another-host", "siamese.pid": "1"})
    assert client.get_run(killed).info.status == "RUNNING"
    assert fail_orphaned_runs.fn() == [killed]
    assert client.get_run(killed).info.status == "FAILED"
    owner = rf"pid {child.pid} on {re.escape(socket.gethostname())}"
    assert re.match(rf"its process \({owner}\) ended without ending the run", client.get_run(killed).data.tags["failure"])
    assert client.get_run(live).info.status == client.get_run(elsewhere.info.run_id).info.status == "RUNNING"
    assert fail_orphaned_runs.fn() == []


def test_epoch_metrics_are_namespaced_train_and_val(client):
    run_id = start_run.fn(sequences_config())
    logger = epoch_metrics_logger(run_id)
    logger.on_epoch_end(0, {"loss": 0.7, "auc": 0.6, "val_loss": 0.8, "val_auc": 0.55})
    logger.on_epoch_end(1, {"loss": 0.5, "auc": 0.7, "val_loss": 0.6, "val_auc": 0.65})
    assert set(client.get_run(run_id).data.metrics) == {"train/loss", "train/auc", "val/loss", "val/auc"}
    assert [(point.step, point.value) for point in client.get_metric_history(run_id, "val/auc")] == [(0, 0.55), (1, 0.65)]


def test_where_training_stopped_is_logged_with_the_epoch_it_kept(client):
    stopped, unmonitored = start_run.fn(sequences_config()), start_run.fn(sequences_config())
    log_stopping(stopped, stopped_epoch=5, best_epoch=2)
    log_stopping(unmonitored, stopped_epoch=3, best_epoch=None)
    assert client.get_run(stopped).data.metrics == {"train/stopped_epoch": 5, "train/best_epoch": 2}
    assert client.get_run(unmonitored).data.metrics == {"train/stopped_epoch": 3}, "no validation metric chose an epoch"


def test_a_dropping_learning_rate_is_logged_per_epoch(client):
    run_id = start_run.fn(sequences_config())
    logger = epoch_metrics_logger(run_id)
    logger.on_epoch_end(0, {"loss": 0.7, "learning_rate": 0.01})
    logger.on_epoch_end(1, {"loss": 0.6, "learning_rate": 0.005})
    assert [(point.step, point.value) for point in client.get_metric_history(run_id, "train/learning_rate")] == [(0, 0.01), (1, 0.005)]


# A tracking server that stops answering: bounded waits, and a message naming the step

RUN_ID = "0" * 32  # any run: the request never reaches a store
REFUSED = r"\(POST /api/2.0/mlflow/runs/log-batch: \[Errno 111\] Connection refused, 3 tries\)"


def project_http_defaults(monkeypatch) -> None:
    """MLflow's HTTP settings left to the project (empty counts as unset; the test's values are restored after it)."""
    for variable in HTTP_REQUEST_DEFAULTS:
        monkeypatch.setenv(variable, "")


@pytest.fixture
def dead_server(monkeypatch) -> str:
    """The URI of a tracking server that died: nothing listens on its port any more."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    project_http_defaults(monkeypatch)
    return uri


@pytest.mark.usefixtures("prefect_api")
def test_a_logging_task_whose_server_died_fails_within_seconds_naming_itself_without_retries(dead_server):
    """Through Prefect's engine: MLflow's 7 retries with backoff (4 minutes) and 2 task retries 5 s apart would take far longer."""
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as error:
        log_training(RUN_ID, DevicePlan("tensorflow", ("/cpu:0",), "float32"), 2.5, 40.0, {"train": 6})
    assert time.monotonic() - started < 10
    assert re.fullmatch(rf"tracking server {re.escape(dead_server)} stopped answering during log-training {REFUSED}", str(error.value))


def test_the_epoch_logger_stops_training_within_seconds_when_its_server_died(dead_server):
    logger = epoch_metrics_logger(RUN_ID)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match=rf"stopped answering during per-epoch metric logging {REFUSED}"):
        model.fit(np.ones((8, 2)), np.ones(8), epochs=1000, verbose=0, callbacks=[logger])
    assert time.monotonic() - started < 10, "training stopped at its first epoch's metrics"


def test_a_failed_run_whose_server_died_is_tried_once_and_the_message_says_it_stays_running(dead_server):
    failure = f"tracking server {dead_server} stopped answering during log-evaluation (POST /api/2.0/mlflow/runs/log-batch: ...)"
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as error:
        end_run.fn(RUN_ID, f"TrackingUnavailableError: {failure}")
    assert time.monotonic() - started < 5, "one look at /health, refused at once"
    assert str(error.value) == (
        f"{failure}; the server does not answer now either, so run {RUN_ID} stays RUNNING until the next siamese train or "
        "retrain on this host marks it FAILED"
    )
    with pytest.raises(TrackingUnavailableError, match=rf"^tracking server {re.escape(dead_server)} stopped answering during end-mlflow-run"):
        end_run.fn(RUN_ID, None)


def test_a_server_that_accepts_but_never_answers_fails_after_the_users_own_timeout(monkeypatch):
    project_http_defaults(monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # a user's setting wins over the project's 15 s
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections wait in the backlog, never accepted: no answer ever comes
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(TrackingUnavailableError, match=r"stopped answering during log-stopping \(POST /api/2.0/mlflow/runs/log-batch: timed out, 3 tries\)"):
            log_stopping(RUN_ID, stopped_epoch=3, best_epoch=2)
    assert time.monotonic() - started < 12, "3 tries of 1 s, pauses of 0 and 2-3 s"


def test_registry_and_gate_tasks_whose_server_died_fail_naming_their_step(dead_server):
    from tasks.gate import find_champion
    from tasks.registry import read_aliases

    with pytest.raises(TrackingUnavailableError, match=rf"^tracking server {re.escape(dead_server)} stopped answering during find-champion \("):
        find_champion.fn("siamese-text")
    with pytest.raises(TrackingUnavailableError, match=r"stopped answering during read-aliases \(GET /api/2.0/mlflow/model-versions/get"):
        read_aliases.fn({"name": "siamese-text", "version": "1"})
