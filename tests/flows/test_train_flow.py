"""The training flow end to end on generated sequences: real Prefect API, real MLflow store, real Keras training.

The tests that read what a run recorded share the session's `sequences_run`; only the failure
path trains again.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import keras
import mlflow
import numpy as np
import pytest
from flow_helpers import sequences_config
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL

from flows.train import WeightSharingError, train_flow
from siamese.config import ModelKind
from siamese.evaluation import evaluate_scores
from siamese.families import FAMILIES, family_of
from siamese.families.sequences import GeneratedSequences
from siamese.models.text import build_unshared_text_model

SEQUENCES = family_of(ModelKind.SEQUENCES)

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_flow_records_run_in_mlflow(sequences_run, sequences_store):
    result, client, config = sequences_run.result, sequences_store, sequences_config()
    run = client.get_run(result["run_id"])

    assert run.info.status == "FINISHED"
    assert "failure" not in run.data.tags
    assert config.to_params().items() <= run.data.params.items()
    assert run.data.params["devices.devices"] == "/cpu:0"
    assert run.info.run_name == "sequences paraphrase symmetric seed 0"
    assert run.data.tags["mlflow.note.content"].startswith("A sequences Siamese model (symmetric head, similarity) trained on paraphrase")
    assert run.data.tags["prefect.flow_run_id"] in run.data.tags["mlflow.note.content"]
    assert run.data.tags["mlflow.source.git.commit"]
    assert client.get_experiment(run.info.experiment_id).name == SEQUENCES.experiment
    train_loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [point.step for point in train_loss] == list(range(config.training.epochs))
    assert len(client.get_metric_history(run.info.run_id, "val/auc")) == config.training.epochs
    metrics = run.data.metrics
    assert {"test/roc_auc", "test/accuracy", "test/precision", "test/recall", "test/f1", "test/log_loss"} <= metrics.keys()
    assert {"test/equal_error_rate", "calibration/threshold", "calibration/f1", "calibration/equal_error_rate"} <= metrics.keys()
    assert metrics["sharing/passed"] == 1.0
    assert metrics["sharing/encoder_params"] == 20_608
    assert metrics["sharing/total_params"] == 20_673
    assert metrics["sharing/unshared_params"] == 41_281

    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    artifacts |= {item.path for folder in ("evaluation", "sharing") for item in client.list_artifacts(run.info.run_id, folder)}
    assert {
        "config.json",
        "model_summary.txt",
        "sharing/report.json",
        "evaluation/roc_curve.png",
        "evaluation/precision_recall_curve.png",
        "evaluation/score_histogram.png",
        "evaluation/confusion_matrix.json",
    } <= artifacts
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/sharing/report.json"))
    assert report["passed"] and report["params_saved"] == 20_608


def test_registered_model_predicts_like_trained_model(sequences_run, sequences_store):
    result, work_dir, client = sequences_run.result, sequences_run.work_dir, sequences_store
    registered = result["registered"]
    name = SEQUENCES.registered_name
    assert registered["name"] == name and registered["aliases"] == ["challenger", "champion"]
    assert result["gate"].decision == "promote" and result["gate"].champion is None, "the first model, over the bar"
    version = client.get_model_version(name, registered["version"])
    assert version.run_id == result["run_id"]
    assert version.tags["gate.decision"] == "promote" and version.description.startswith("Gate: promote")
    assert str(client.get_model_version_by_alias(name, "champion").version) == registered["version"]

    test = SEQUENCES.load_split(sequences_config(), work_dir / "test.shards")
    inputs = test.head(len(test)).inputs()
    expected = keras.saving.load_model(work_dir / "trained.keras").predict(inputs, verbose=0)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{registered['version']}")
    np.testing.assert_allclose(loaded.predict(inputs), expected, atol=1e-6)
    assert [spec.name for spec in loaded.metadata.signature.inputs.inputs] == ["left", "right"]
    assert loaded.metadata.saved_input_example_info is not None
    # What the gate scored the version with: the flow's own scores file, the registered model's scores.
    np.testing.assert_allclose(np.load(work_dir / "challenger-scores.npy"), expected.reshape(-1), atol=1e-6)
    # The threshold chosen on validation travels with the model and decided the logged test metrics.
    threshold = loaded.metadata.metadata["threshold"]
    metrics = client.get_run(result["run_id"]).data.metrics
    assert threshold == metrics["calibration/threshold"] == result["threshold"]
    at_threshold = evaluate_scores(test.labels, expected, threshold).metrics
    for key in ("accuracy", "precision", "recall", "f1"):
        assert metrics[f"test/{key}"] == pytest.approx(at_threshold[key], abs=1e-6), key

    run = client.get_run(result["run_id"])
    (logged,) = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert logged.source_run_id == run.info.run_id
    assert registered["model_uri"] == f"models:/{logged.model_id}"
    store = Path(sequences_run.uri.removeprefix("sqlite:///")).parent
    assert logged.artifact_location.startswith(store.as_uri()), "model files belong in the run's store"


def api(path: str, body: dict) -> list[dict]:
    # Asked over plain HTTP: Prefect 3.8.8's client sends nulls that its own server rejects (422).
    response = httpx.post(f"{PREFECT_API_URL.value()}{path}", json=body)
    response.raise_for_status()
    return response.json()


def test_flow_publishes_markdown_summary(sequences_run):
    result = sequences_run.result
    artifacts = api("/artifacts/filter", {"artifacts": {"key": {"any_": ["training-summary"]}}, "sort": "CREATED_DESC", "limit": 50})
    (summary,) = [artifact for artifact in artifacts if result["run_id"] in artifact["data"]]
    assert "Weight sharing: passed" in summary["data"]
    assert f"Registered: `{SEQUENCES.registered_name}` version 1" in summary["data"]
    assert "Gate: **promote**" in summary["data"]


def test_the_gate_is_a_subflow_whose_steps_show_in_the_ui(sequences_run, sequences_store):
    parent = sequences_store.get_run(sequences_run.result["run_id"]).data.tags["prefect.flow_run_id"]
    parent_tasks = {task["id"]: task["name"] for task in api("/task_runs/filter", {"flow_runs": {"id": {"any_": [parent]}}})}
    gates = api("/flow_runs/filter", {"flows": {"name": {"any_": ["registry-gate"]}}, "limit": 200})
    (gate,) = [run for run in gates if run["parent_task_run_id"] in parent_tasks]
    assert gate["state_type"] == "COMPLETED"
    gate_tasks = api("/task_runs/filter", {"flow_runs": {"id": {"any_": [gate["id"]]}}, "sort": "EXPECTED_START_TIME_ASC"})
    steps = [task["name"] for task in gate_tasks]
    expected = ["find-champion", "score-version", "judge-challenger", "record-gate-decision", "move-champion-alias"]
    assert [next(name for name in expected if step.startswith(name)) for step in steps] == expected, steps


class UnsharedSequences(GeneratedSequences):
    """The sequences family with a twin that has one encoder per side: what verification must catch."""

    def build(self, config, train, dtype_policy):
        return build_unshared_text_model(features=config.data.features, units=config.model.units, head=config.model.head)


def test_unshared_model_fails_verification_and_registers_nothing(mlflow_store, monkeypatch, tmp_path):
    monkeypatch.setitem(FAMILIES, ModelKind.SEQUENCES, UnsharedSequences())

    with pytest.raises(WeightSharingError, match="same_encoder_object"):
        train_flow(config=sequences_config(epochs=1), work_dir=tmp_path / "work")

    client = MlflowClient(mlflow_store)
    (run,) = client.search_runs([client.get_experiment_by_name(SEQUENCES.experiment).experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure"].startswith("WeightSharingError: weight-sharing verification failed")
    assert run.data.metrics["sharing/passed"] == 0.0
    assert client.search_model_versions() == []
