"""Model tasks called directly: devices, a seeded build, training logged per epoch, sharing verification, evaluation.

They hand each other `.keras` paths: each test reads what the previous step wrote.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from mlflow import MlflowClient
from task_helpers import sequences_config, text_config, vision_config

from siamese.evaluation import calibrate_threshold, evaluate_scores
from siamese.families import family_of
from siamese.models.text import build_text_model, build_unshared_text_model
from siamese.training import TrainingCheckpoint, compile_for_training, predict
from tasks.data import prepare_pairs
from tasks.model import build_model, choose_devices, evaluate_model, train_model, verify_sharing
from tasks.tracking import start_run


def run_steps(config, work_dir):
    """prepare -> devices -> MLflow run -> build -> train, as the training flow runs them."""
    prepared = prepare_pairs.fn(config, work_dir)
    plan = choose_devices.fn(config.training)
    run_id = start_run.fn(config)
    initial = build_model.fn(config, plan, prepared.paths["train"], run_id, work_dir)
    trained = train_model.fn(initial, prepared.paths, config, plan, run_id, work_dir)
    return SimpleNamespace(config=config, work_dir=work_dir, prepared=prepared, plan=plan, run_id=run_id, initial=initial, trained=trained)


@pytest.fixture(scope="module")
def sequences(module_store, tmp_path_factory):
    return run_steps(sequences_config(), tmp_path_factory.mktemp("sequences-work"))


def weights(path) -> list[np.ndarray]:
    return keras.saving.load_model(path, compile=False).get_weights()


def test_devices_follow_the_training_config(sequences):
    assert sequences.plan.devices == ("/cpu:0",) and sequences.plan.dtype_policy == "float32"


def test_build_saves_a_model_seeded_by_the_config(sequences, tmp_path):
    assert sequences.initial == (sequences.work_dir / "initial.keras").resolve()
    again = build_model.fn(sequences.config, sequences.plan, sequences.prepared.paths["train"], sequences.run_id, tmp_path)
    for first, second in zip(weights(sequences.initial), weights(again)):
        np.testing.assert_array_equal(first, second)
    other_seed = dataclasses.replace(sequences.config, seed=1)
    (tmp_path / "other").mkdir()
    different = build_model.fn(other_seed, sequences.plan, sequences.prepared.paths["train"], sequences.run_id, tmp_path / "other")
    assert any(not np.array_equal(a, b) for a, b in zip(weights(sequences.initial), weights(different)))


def test_the_build_logs_how_much_of_the_vocabulary_the_word_vectors_cover(sequences, module_store, tmp_path):
    """Read once while building, the vectors' coverage reaches the run's params, not only the console."""
    vectors = tmp_path / "vectors.txt"  # GloVe layout: `word v1 .. v4`; one word no question uses
    vectors.write_text("".join(f"{word} 0.1 0.2 0.3 0.4\n" for word in ["learn", "chess", "guitar", "zyzzyva"]), encoding="utf-8")
    config = text_config(tmp_path)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, encoder="lstm", embeddings=str(vectors)))
    paths = prepare_pairs.fn(config, tmp_path).paths
    run_id = start_run.fn(config)

    initial = build_model.fn(config, choose_devices.fn(config.training), paths["train"], run_id, tmp_path)

    words = keras.saving.load_model(initial).get_layer("encoder").get_layer("tokenizer").get_vocabulary()[2:]  # not padding, [UNK]
    found = len({"learn", "chess", "guitar"} & set(words))
    params = MlflowClient(module_store).get_run(run_id).data.params
    assert found and int(params["model.embeddings_found"]) == found
    assert float(params["model.embeddings_coverage"]) == pytest.approx(found / len(words), abs=1e-4)
    assert params["model.embeddings_missing"] and "chess" not in params["model.embeddings_missing"].split(", ")
    assert "model.embeddings_coverage" not in MlflowClient(module_store).get_run(sequences.run_id).data.params, "no vectors, no coverage"


def test_training_saves_a_new_file_and_logs_every_epoch_to_the_run(sequences, module_store):
    trained = sequences.trained
    assert trained.path == (sequences.work_dir / "trained.keras").resolve()
    assert trained.seconds > 0 and trained.pairs_per_second > 0
    assert any(not np.array_equal(a, b) for a, b in zip(weights(sequences.initial), weights(trained.path))), (
        "initial.keras still holds the untrained weights"
    )
    client = MlflowClient(module_store)
    epochs = sequences.config.training.epochs
    for key in ("train/loss", "train/auc", "val/loss", "val/auc"):
        assert [point.step for point in client.get_metric_history(sequences.run_id, key)] == list(range(epochs)), key


def test_training_logs_where_it_stopped_and_the_best_epoch_it_kept(sequences, module_store):
    client = MlflowClient(module_store)
    metrics = client.get_run(sequences.run_id).data.metrics
    val_auc = [point.value for point in client.get_metric_history(sequences.run_id, "val/auc")]
    assert metrics["train/stopped_epoch"] == len(val_auc) == sequences.config.training.epochs, "too few epochs to stop early"
    assert metrics["train/best_epoch"] == int(np.argmax(val_auc)) + 1
    assert "train/learning_rate" not in metrics, "a constant rate (reduce_lr_patience 0) is in the params, not per epoch"


def test_sharing_is_verified_on_the_trained_file(sequences):
    report = verify_sharing.fn(sequences.trained.path, sequences.prepared.paths["test"], sequences.config)
    assert report.passed, report.failures()
    assert report.encoder_params == 4 * (4 * (8 + 4) + 4)
    assert report.unshared_params == 2 * report.encoder_params + report.head_params


def test_an_unshared_model_fails_verification(sequences, tmp_path):
    config = sequences.config
    unshared = build_unshared_text_model(features=config.data.features, units=config.model.units, head=config.model.head)
    path = tmp_path / "unshared.keras"
    unshared.save(path)
    report = verify_sharing.fn(path, sequences.prepared.paths["test"], config)
    assert not report.passed
    assert any(failure.startswith("same_encoder_object") for failure in report.failures())


def test_similarity_evaluation_gives_metrics_a_confusion_matrix_and_plots(sequences):
    result = evaluate_model.fn(sequences.trained.path, sequences.prepared.paths, sequences.config, sequences.work_dir)
    assert {"roc_auc", "accuracy", "precision", "recall", "f1", "log_loss", "equal_error_rate"} <= result.metrics.keys()
    assert np.sum(result.confusion_matrix) == sequences.prepared.sizes["test"]
    assert sorted(path.name for path in result.plots) == ["precision_recall_curve.png", "roc_curve.png", "score_histogram.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in result.plots)
    assert result.baselines == {}, "generated sequences have no baselines"


def test_the_test_split_is_decided_at_the_threshold_calibrated_on_validation(sequences):
    config, paths = sequences.config, sequences.prepared.paths
    family, model = family_of(config.kind), keras.saving.load_model(sequences.trained.path)
    validation, test = family.load_split(config, paths["validation"]), family.load_split(config, paths["test"])

    result = evaluate_model.fn(sequences.trained.path, paths, config, sequences.work_dir)

    assert result.calibration == calibrate_threshold(validation.labels, predict(model, validation))
    at_threshold = evaluate_scores(test.labels, predict(model, test), result.calibration.threshold)
    for key in ("accuracy", "precision", "recall", "f1"):
        assert result.metrics[key] == pytest.approx(at_threshold.metrics[key]), key
    assert result.confusion_matrix == at_threshold.confusion_matrix.tolist()


def test_without_validation_pairs_the_decision_stays_at_one_half(sequences, tmp_path):
    config = dataclasses.replace(sequences.config, data=dataclasses.replace(sequences.config.data, validation_fraction=0.0))
    paths = prepare_pairs.fn(config, tmp_path).paths

    result = evaluate_model.fn(sequences.trained.path, paths, config, tmp_path)

    assert result.calibration is None
    test = family_of(config.kind).load_split(config, paths["test"])
    at_half = evaluate_scores(test.labels, predict(keras.saving.load_model(sequences.trained.path), test))
    assert result.metrics["accuracy"] == pytest.approx(at_half.metrics["accuracy"])


def test_regression_is_trained_and_evaluated_against_the_training_mean(module_store, tmp_path):
    steps = run_steps(vision_config(task="regression"), tmp_path)
    history = MlflowClient(module_store).get_run(steps.run_id).data.metrics
    assert {"train/mae", "train/rmse", "val/mae", "val/rmse"} <= history.keys()
    result = evaluate_model.fn(steps.trained.path, steps.prepared.paths, steps.config, tmp_path)
    assert {"mae", "rmse", "r2", "baseline_mae"} <= result.metrics.keys()
    assert result.confusion_matrix is None and result.calibration is None, "regression decides nothing"
    assert sorted(path.name for path in result.plots) == ["example_pairs.png", "predictions.png"]
