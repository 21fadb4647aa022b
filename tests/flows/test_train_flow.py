"""The training flow end to end: real Prefect API, real MLflow store, real Keras training."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL

import tasks.model
from flows.train import WeightSharingError, train_flow
from siamese.data.shards import PairShards
from siamese.models.text import build_unshared_text_model
from tasks.tracking import ScoringModelError, _registry_scores, load_text_pair_scorer, model_name

EXPERIMENT = model_name("text")
SEQUENCE_MODEL = "siamese-text-sequences"  # generated sequences: not the raw-text siamese-text

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def trained(tiny_config, mlflow_store, tmp_path):
    """One flow run, kept in `tmp_path/work` so the test can compare against its files."""
    work_dir = tmp_path / "work"
    result = train_flow(config=tiny_config, work_dir=work_dir)
    return result, work_dir, MlflowClient(mlflow_store)


def test_flow_records_run_in_mlflow(trained, tiny_config):
    result, _, client = trained
    run = client.get_run(result["run_id"])

    assert run.info.status == "FINISHED"
    assert "failure" not in run.data.tags
    assert tiny_config.to_params().items() <= run.data.params.items()
    assert run.data.params["devices.devices"] == "/cpu:0"
    assert run.info.run_name == "text paraphrase symmetric seed 0"
    assert run.data.tags["mlflow.note.content"].startswith("A text Siamese model (symmetric head, similarity) trained on paraphrase")
    assert run.data.tags["prefect.flow_run_id"] in run.data.tags["mlflow.note.content"]
    assert run.data.tags["mlflow.source.git.commit"]
    train_loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [point.step for point in train_loss] == list(range(tiny_config.training.epochs))
    assert len(client.get_metric_history(run.info.run_id, "val/auc")) == tiny_config.training.epochs
    metrics = run.data.metrics
    assert {"test/roc_auc", "test/accuracy", "test/precision", "test/recall", "test/f1", "test/log_loss"} <= metrics.keys()
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
        "evaluation/score_histogram.png",
        "evaluation/confusion_matrix.json",
    } <= artifacts
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/sharing/report.json"))
    assert report["passed"] and report["params_saved"] == 20_608


def test_registered_model_predicts_like_trained_model(trained, mlflow_store):
    result, work_dir, client = trained
    registered = result["registered"]
    assert registered["name"] == SEQUENCE_MODEL and registered["aliases"] == ["challenger", "champion"]
    version = client.get_model_version(SEQUENCE_MODEL, registered["version"])
    assert version.run_id == result["run_id"]

    test = PairShards.load(work_dir / "test.shards").take(slice(None))
    expected = keras.saving.load_model(work_dir / "trained.keras").predict(test.inputs(), verbose=0)
    loaded = mlflow.pyfunc.load_model(f"models:/{SEQUENCE_MODEL}/{registered['version']}")
    np.testing.assert_allclose(loaded.predict(test.inputs()), expected, atol=1e-6)
    assert [spec.name for spec in loaded.metadata.signature.inputs.inputs] == ["left", "right"]
    assert loaded.metadata.saved_input_example_info is not None
    # The gate scores a split in chunks of about chunk_bytes: here 3 pairs a chunk, the last one short.
    shards = PairShards.load(work_dir / "test.shards")
    pair_bytes = 2 * 4 * int(np.prod(shards.item_shape))
    assert len(shards) % 3 != 0
    chunked = _registry_scores(f"models:/{SEQUENCE_MODEL}/{registered['version']}", shards, chunk_bytes=3 * pair_bytes)
    np.testing.assert_allclose(chunked, expected.reshape(-1), atol=1e-6)

    run = client.get_run(result["run_id"])
    (logged,) = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert logged.source_run_id == run.info.run_id
    assert registered["model_uri"] == f"models:/{logged.model_id}"
    store = Path(mlflow_store.removeprefix("sqlite:///")).parent
    assert logged.artifact_location.startswith(store.as_uri()), "model files belong in the run's store"


def test_batch_scoring_refuses_a_model_that_takes_sequences(trained):
    result, _, _ = trained
    uri = f"models:/{SEQUENCE_MODEL}/{result['registered']['version']}"
    with pytest.raises(ScoringModelError, match=r"does not take raw text pairs \(it takes 'left': Tensor\('float32'"):
        load_text_pair_scorer.fn(uri)


def test_flow_publishes_markdown_summary(trained):
    result, _, _ = trained
    # Asked over plain HTTP: Prefect 3.8.8's client sends nulls that its own server rejects (422).
    response = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={"artifacts": {"key": {"any_": ["training-summary"]}}, "sort": "CREATED_DESC", "limit": 1},
    )
    response.raise_for_status()
    (latest,) = response.json()
    assert result["run_id"] in latest["data"]
    assert "Weight sharing: passed" in latest["data"]


def test_unshared_model_fails_verification_and_registers_nothing(tiny_config, mlflow_store, monkeypatch):
    def build_unshared(config, dtype_policy, tokenizer):
        return build_unshared_text_model(features=config.data.features, units=config.model.units, head=config.model.head)

    monkeypatch.setattr(tasks.model, "build_siamese_model", build_unshared)

    with pytest.raises(WeightSharingError, match="same_encoder_object"):
        train_flow(config=tiny_config)

    client = MlflowClient(mlflow_store)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure"].startswith("WeightSharingError: weight-sharing verification failed")
    assert run.data.metrics["sharing/passed"] == 0.0
    assert client.search_model_versions() == []
