"""The registry module against a real store: log and register each family's model, aliases, scores as serving gives them."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from task_helpers import register_untrained, sequences_config, text_config, vision_config

import tasks.registry
from siamese.families import ModelFormat, family_of
from tasks.registry import (
    ScoringModelError,
    champion_version,
    claim_champion,
    load_text_pair_scorer,
    log_and_register_model,
    version_scores,
)


@pytest.fixture(scope="module")
def sequences(module_store, tmp_path_factory):
    return register_untrained(sequences_config(num_pairs=70), tmp_path_factory.mktemp("sequences"))


@pytest.fixture(scope="module")
def text(module_store, tmp_path_factory):
    directory = tmp_path_factory.mktemp("text")
    return text_config(directory), register_untrained(text_config(directory), directory / "work")


def uri(registered: dict) -> str:
    return f"models:/{registered['name']}/{registered['version']}"


def test_a_new_version_is_registered_as_challenger_under_its_run(sequences, module_store):
    registered, _, _, run_id = sequences
    assert registered["name"] == "siamese-text-sequences" and registered["version"] == "1"
    assert registered["aliases"] == ["challenger"] and registered["model_uri"].startswith("models:/m-")
    client = MlflowClient(module_store)
    version = client.get_model_version(registered["name"], "1")
    assert version.run_id == run_id and version.tags["run_id"] == run_id
    aliases = client.get_registered_model(registered["name"]).aliases
    assert {alias: str(version) for alias, version in aliases.items()} == {"challenger": "1"}
    (logged,) = client.search_logged_models(experiment_ids=[client.get_run(run_id).info.experiment_id])
    assert registered["model_uri"] == f"models:/{logged.model_id}" and logged.source_run_id == run_id
    store = module_store.removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert logged.artifact_location.startswith(f"file://{store}/"), "model files belong in the run's store"
    assert "model_summary.txt" in {item.path for item in client.list_artifacts(run_id)}


def test_a_keras_model_takes_float32_tensors_and_ships_an_input_example(sequences):
    registered = sequences[0]
    info = mlflow.models.get_model_info(uri(registered))
    inputs = [(spec.name, spec.type, spec.shape) for spec in info.signature.inputs.inputs]
    assert inputs == [("left", np.dtype("float32"), (-1, -1, 8)), ("right", np.dtype("float32"), (-1, -1, 8))]
    assert [spec.name for spec in info.signature.outputs.inputs] == ["similarity"]
    assert info.saved_input_example_info is not None


def test_version_scores_read_a_split_in_chunks_and_match_the_keras_model(sequences, monkeypatch):
    registered, paths, model_path, _ = sequences
    config = sequences_config()
    family = family_of(config.kind)
    test = family.load_split(config, paths["test"])
    expected = keras.saving.load_model(model_path).predict(test.head(len(test)).inputs(), verbose=0).reshape(-1)
    pair_bytes = 2 * 4 * 5 * 8  # two sides of 5 timesteps x 8 features, float32
    assert len(test) % 3 != 0, "the last chunk is a short one"
    monkeypatch.setattr(tasks.registry, "SCORING_CHUNK_BYTES", 3 * pair_bytes)
    scores, threshold = version_scores(uri(registered), test, family.model_format)
    assert scores.shape == (len(test),) and threshold is None, "registered without a threshold"
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_the_champion_alias_is_read_and_moved(sequences):
    name = sequences[0]["name"]
    assert champion_version(name) is None
    assert claim_champion(name, "1", None) == "1"
    assert champion_version(name) == "1"


def test_batch_scoring_refuses_a_model_that_takes_tensors(sequences):
    with pytest.raises(ScoringModelError, match=r"does not take raw text pairs \(it takes 'left': Tensor\('float32'") as error:
        load_text_pair_scorer.fn(uri(sequences[0]))
    assert "models:/siamese-text@champion" in str(error.value)


def test_a_text_model_takes_raw_strings_and_scores_like_its_keras_file(text):
    config, (registered, paths, model_path, _) = text
    assert registered["name"] == "siamese-text" and family_of(config.kind).model_format is ModelFormat.RAW_TEXT
    signature = mlflow.models.get_model_info(uri(registered)).signature
    assert {(spec.name, spec.type.name) for spec in signature.inputs.inputs} == {("left", "string"), ("right", "string")}
    test = family_of(config.kind).load_split(config, paths["test"])
    expected = keras.saving.load_model(model_path).predict(test.inputs(), verbose=0).reshape(-1)
    scores, threshold = version_scores(uri(registered), test, ModelFormat.RAW_TEXT)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert threshold is None
    loaded = load_text_pair_scorer.fn(uri(registered))
    scored = loaded.predict(pd.DataFrame({"left": test.left[:3], "right": test.right[:3]}))
    assert list(scored.columns) == ["similarity"], "registered without a threshold: no decision"
    assert loaded.threshold is None
    np.testing.assert_allclose(scored.similarity.to_numpy(), expected[:3], rtol=1e-6)


def test_a_regression_model_says_it_predicts_a_number(module_store, tmp_path):
    registered = register_untrained(vision_config(task="regression"), tmp_path)[0]
    assert registered["name"] == "siamese-vision"
    signature = mlflow.models.get_model_info(registered["model_uri"]).signature
    assert [spec.name for spec in signature.outputs.inputs] == ["prediction"]
    assert [spec.shape for spec in signature.inputs.inputs] == [(-1, 16, 16, 3)] * 2


# Registered again with a threshold: new versions, after the tests above that count versions.


def test_a_text_model_registered_with_a_threshold_stores_it_and_decides_with_it(text, module_store):
    config, (_, paths, model_path, run_id) = text
    registered = log_and_register_model.fn(run_id, model_path, paths["test"], config, threshold=0.4375)

    info = mlflow.models.get_model_info(uri(registered))
    assert info.metadata["threshold"] == 0.4375 and "validation" in info.metadata["threshold_rule"]
    assert [(spec.name, spec.type.name) for spec in info.signature.outputs.inputs] == [("similarity", "double"), ("is_similar", "boolean")]
    assert MlflowClient(module_store).get_model_version(registered["name"], registered["version"]).tags["threshold"] == "0.4375"
    loaded = load_text_pair_scorer.fn(uri(registered))
    assert loaded.threshold == 0.4375
    test = family_of(config.kind).load_split(config, paths["test"])
    scored = loaded.predict(pd.DataFrame({"left": test.left, "right": test.right}))
    assert list(scored.columns) == ["similarity", "is_similar"]
    assert scored.is_similar.tolist() == (scored.similarity >= 0.4375).tolist()
    # The loader may decide at another threshold through the model config.
    stricter = mlflow.pyfunc.load_model(uri(registered), model_config={"threshold": 1.0})
    assert not stricter.predict(pd.DataFrame({"left": test.left[:3], "right": test.right[:3]})).is_similar.any()


def test_a_keras_model_registered_with_a_threshold_carries_it_in_its_metadata(sequences):
    _, paths, model_path, run_id = sequences
    registered = log_and_register_model.fn(run_id, model_path, paths["test"], sequences_config(num_pairs=70), threshold=0.625)
    assert mlflow.models.get_model_info(uri(registered)).metadata["threshold"] == 0.625
    assert mlflow.pyfunc.load_model(uri(registered)).metadata.metadata["threshold"] == 0.625
