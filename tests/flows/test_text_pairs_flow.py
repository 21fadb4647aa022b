"""The training flow on a file of raw text pairs: validation, lineage, baselines, a pyfunc over raw strings.

Real Prefect API, real MLflow store, real Keras training of a tiny tokenised LSTM model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from flow_helpers import text_pairs_config

from flows.train import train_flow
from siamese.config import ModelKind
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.tables import PairFileError
from siamese.families import family_of

pytestmark = pytest.mark.usefixtures("prefect_api")

FAMILY = family_of(ModelKind.TEXT)
TEXT = FAMILY.registered_name


def test_run_records_the_dataset_it_learned_from(text_run, text_store):
    result, source, client = text_run.result, text_run.source, text_store
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    assert run.data.params["data.sha256"] == sha256
    assert run.data.params["data.dropped_rows"] == "2" and run.data.metrics["data/dropped_rows"] == 2
    assert run.data.params["data.columns"] == "question1, question2, is_duplicate"
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert json.loads(dataset.source) == {"uri": str(source.resolve())}
    assert sha256.startswith(dataset.digest)
    profile = json.loads(dataset.profile)
    sizes = {name: int(run.data.params[f"data.{name}_pairs"]) for name in ("train", "validation", "test")}
    assert profile == {"file_rows": 200, "dropped_rows": 2} | {f"{name}_rows": size for name, size in sizes.items()}
    assert sum(sizes.values()) == 198


def test_baselines_are_logged_beside_the_test_metrics(text_run, text_store):
    result, client = text_run.result, text_store
    metrics = client.get_run(result["run_id"]).data.metrics
    assert {"baseline/majority_accuracy", "baseline/tfidf_cosine_auc", "test/roc_auc"} <= metrics.keys()
    assert metrics["baseline/majority_auc"] == 0.5
    assert 0.0 <= metrics["baseline/tfidf_cosine_auc"] <= 1.0


def test_registered_model_scores_raw_text_like_the_keras_model(text_run, text_store):
    result, source, work_dir, client = text_run.result, text_run.source, text_run.work_dir, text_store
    registered = result["registered"]
    assert registered["name"] == TEXT and set(registered["aliases"]) == {"champion", "challenger"}
    assert str(client.get_model_version_by_alias(TEXT, "champion").version) == registered["version"]
    pairs = pd.read_csv(source).iloc[20:40]
    frame = pd.DataFrame({"left": pairs.question1.to_numpy(), "right": pairs.question2.to_numpy()})

    loaded = mlflow.pyfunc.load_model(f"models:/{TEXT}@champion")
    scores = loaded.predict(frame)

    trained = keras.saving.load_model(work_dir / "trained.keras")
    expected = trained.predict({"left": frame.left.to_numpy(object), "right": frame.right.to_numpy(object)}, verbose=0)
    assert list(scores.columns) == ["similarity", "is_similar"] and len(scores) == len(frame)
    np.testing.assert_allclose(scores.similarity.to_numpy(), expected[:, 0], rtol=1e-6)
    assert scores.is_similar.tolist() == (scores.similarity >= result["threshold"]).tolist()
    swapped = loaded.predict(frame.rename(columns={"left": "right", "right": "left"}))
    np.testing.assert_allclose(swapped.similarity.to_numpy(), scores.similarity.to_numpy(), rtol=1e-6)


def test_signature_says_raw_strings_in_one_similarity_out(text_run, text_store):
    result = text_run.result
    info = mlflow.models.get_model_info(f"models:/{TEXT}/{result['registered']['version']}")
    inputs = {(spec.name, spec.type.name) for spec in info.signature.inputs.inputs}
    assert inputs == {("left", "string"), ("right", "string")}
    assert [(spec.name, spec.type.name) for spec in info.signature.outputs.inputs] == [("similarity", "double"), ("is_similar", "boolean")]


def test_the_threshold_calibrated_on_validation_is_logged_and_stored_with_the_model(text_run, text_store):
    result, client = text_run.result, text_store
    registered = result["registered"]
    metrics = client.get_run(result["run_id"]).data.metrics
    threshold = metrics["calibration/threshold"]
    assert result["threshold"] == threshold and 0.0 < threshold < 1.0
    assert 0.0 < metrics["calibration/f1"] <= 1.0 and 0.0 <= metrics["calibration/equal_error_rate"] <= 1.0
    assert mlflow.models.get_model_info(f"models:/{TEXT}/{registered['version']}").metadata["threshold"] == threshold
    assert float(client.get_model_version(TEXT, registered["version"]).tags["threshold"]) == threshold


def test_registered_model_names_rows_it_cannot_score(text_run, text_store):
    result = text_run.result
    loaded = mlflow.pyfunc.load_model(f"models:/{TEXT}/{result['registered']['version']}")
    with pytest.raises(ValueError, match=r"1 of 2 rows cannot be scored \(row 1: empty or missing left text\)"):
        loaded.predict(pd.DataFrame({"left": ["How do I learn chess?", "   "], "right": ["What is chess?", "Why?"]}))


def test_sharing_verification_covers_the_tokenised_encoder(text_run, text_store):
    result, client = text_run.result, text_store
    metrics = client.get_run(result["run_id"]).data.metrics
    assert metrics["sharing/passed"] == 1.0
    pieces = metrics["sharing/encoder_params"]  # the lexical encoder: one learned weight per n-gram of its bags
    assert 0 < pieces <= 4 * 200  # four bags of at most vocabulary_size (200) terms each
    assert metrics["sharing/head_params"] == 2 * pieces + 1  # symmetric head: [|a-b|, a*b] -> Dense(1)
    assert metrics["sharing/unshared_params"] == 2 * metrics["sharing/encoder_params"] + metrics["sharing/head_params"]


def test_invalid_file_stops_before_any_run_and_registers_nothing(tmp_path, mlflow_store):
    pairs = sample_question_pairs(60, seed=2)
    pairs.loc[[4, 7, 9], "is_duplicate"] = 2
    source = tmp_path / "bad.csv"
    pairs.to_csv(source, index=False)

    with pytest.raises(PairFileError, match=r"column 'is_duplicate': 3 rows .*lines 6, 9, 11"):
        train_flow(config=text_pairs_config(source), work_dir=tmp_path / "work")

    client = MlflowClient(mlflow_store)
    assert client.search_registered_models() == []
    experiment = client.get_experiment_by_name(FAMILY.experiment)
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


def test_a_model_trained_with_random_unrelated_pairs_registers_apart_from_pair_models(tmp_path, mlflow_store):
    source = tmp_path / "questions.csv"
    sample_question_pairs(200, seed=3).to_csv(source, index=False)
    base = text_pairs_config(source)
    config = dataclasses.replace(base, model=dataclasses.replace(base.model, head="monotone", random_negatives=1.0))

    result = train_flow(config=config, work_dir=tmp_path / "work")

    client = MlflowClient(mlflow_store)
    assert result["registered"]["name"] == FAMILY.collection_registered_name
    assert [model.name for model in client.search_registered_models()] == [FAMILY.collection_registered_name]
    run = client.get_run(result["run_id"])
    assert run.data.params["model.random_negatives"] == "1.0" and run.data.params["model.head"] == "monotone"
