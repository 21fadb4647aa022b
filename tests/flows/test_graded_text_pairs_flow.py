"""The training flow on a file of graded text pairs (0-5 scores, `data.task = "regression"`), end to end.

One training run for the module: real Prefect API, real MLflow store, a tiny tokenised LSTM
model; the registered model is loaded back from the registry and must answer on the file's scale.
"""

from __future__ import annotations

import dataclasses

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from flow_helpers import FlowRun, text_pairs_config
from graded_pairs import graded_pairs
from mlflow import MlflowClient

from flows.train import train_flow
from siamese.config import GateConfig

pytestmark = pytest.mark.usefixtures("prefect_api")

TEXT = "siamese-text-graded"  # not `siamese-text`: its versions answer on the file's scale, not 0..1


@pytest.fixture(scope="module")
def graded_run(tmp_path_factory, new_store, prefect_api) -> FlowRun:
    """200 generated pairs scored 0-5 by shared words; the gate judges Pearson with an explicit bar of 0, so the first model is champion."""
    directory = tmp_path_factory.mktemp("graded-run")
    source = directory / "sts.csv"
    graded_pairs(200, seed=2).to_csv(source, index=False)
    config = dataclasses.replace(text_pairs_config(source, task="regression"), gate=GateConfig(metric="pearson", min_quality=0.0, min_test_pairs=0))
    uri = new_store(directory.resolve() / "mlruns" / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        result = train_flow(config=config, work_dir=directory / "work")
    return FlowRun(result, source, directory / "work", uri, directory)


@pytest.fixture
def client(graded_run, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", graded_run.uri)
    mlflow.set_tracking_uri(graded_run.uri)
    return MlflowClient(graded_run.uri)


def test_correlations_and_errors_are_logged_beside_the_baselines(graded_run, client):
    run = client.get_run(graded_run.result["run_id"])
    metrics, params = run.data.metrics, run.data.params
    assert run.info.status == "FINISHED"
    assert {"test/pearson", "test/spearman", "test/mse", "test/mae", "test/rmse", "test/baseline_mae"} <= metrics.keys()
    assert -1.0 <= metrics["test/pearson"] <= 1.0
    for baseline in ("tfidf_cosine", "char_tfidf_cosine", "siamese_linear"):
        assert -1.0 <= metrics[f"baseline/{baseline}_pearson"] <= 1.0
        assert f"baseline/{baseline}_spearman" in metrics
    assert metrics["baseline/tfidf_cosine_pearson"] > 0.8, "the scores are word overlap"
    assert "test/roc_auc" not in metrics and not any(key.startswith("calibration/") for key in metrics)
    assert params["data.task"] == "regression"
    assert (float(params["data.score_min"]), float(params["data.score_max"])) == (0.0, 5.0)
    assert graded_run.result["threshold"] is None


def test_the_registered_model_scores_raw_text_on_the_files_scale(graded_run, client):
    registered = graded_run.result["registered"]
    assert registered["name"] == TEXT and not client.search_registered_models("name = 'siamese-text'"), "never beside 0/1 models"
    assert set(registered["aliases"]) == {"champion", "challenger"}
    gate, metrics = graded_run.result["gate"], client.get_run(graded_run.result["run_id"]).data.metrics
    assert gate.metric == "pearson" and gate.challenger == pytest.approx(metrics["test/pearson"], abs=1e-6)
    test = pd.read_parquet(graded_run.work_dir / "test.parquet")
    frame = pd.DataFrame({"left": test.left, "right": test.right})

    scores = mlflow.pyfunc.load_model(f"models:/{TEXT}@champion").predict(frame)

    assert list(scores.columns) == ["similarity"], "no threshold, so no is_similar"
    predicted = scores.similarity.to_numpy()
    assert np.all((predicted >= 0.0) & (predicted <= 5.0)) and predicted.mean() > 1.0, "the 0-5 scale, not 0..1"
    trained = keras.saving.load_model(graded_run.work_dir / "trained.keras")
    expected = trained.predict({"left": frame.left.to_numpy(object), "right": frame.right.to_numpy(object)}, verbose=0)
    np.testing.assert_allclose(predicted, expected[:, 0], rtol=1e-5)
    info = mlflow.models.get_model_info(f"models:/{TEXT}/{registered['version']}")
    assert (info.metadata["score_min"], info.metadata["score_max"]) == (0.0, 5.0) and "threshold" not in info.metadata
    version = client.get_model_version(TEXT, registered["version"])
    assert version.tags["score_max"] == "5.0" and "threshold" not in version.tags


def test_siamese_score_decides_on_the_files_scale_only_when_given_a_threshold(graded_run, client, tmp_path):
    from flows.score import score_flow

    source = tmp_path / "pairs.csv"
    pd.DataFrame({"left": ["how do i learn chess", "what is chess"], "right": ["how do i learn chess", "why cook"]}).to_csv(source, index=False)
    champion = f"models:/{TEXT}@champion"
    undecided = score_flow(model_uri=champion, input_path=source, output_path=tmp_path / "undecided.csv")
    assert undecided.threshold.value is None and pd.read_csv(tmp_path / "undecided.csv").is_similar.isna().all()
    decided = score_flow(model_uri=champion, input_path=source, output_path=tmp_path / "decided.csv", threshold=2.5)
    scores = pd.read_csv(tmp_path / "decided.csv")
    assert decided.threshold.value == 2.5 and scores.is_similar.tolist() == (scores.similarity >= 2.5).tolist()
