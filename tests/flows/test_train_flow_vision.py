"""The training flow for `kind = vision`: generated stereo pairs end to end, and bad image input stopped early.

Real Prefect API, real MLflow store, real Keras training of the compact backbone on tiny images.
The stereo run is the session's `stereo_run`; class folders train end to end in the command-line
tests, and their splits and regression's metrics are checked in `tests/families` and `tests/tasks`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from flow_helpers import IMAGE_SIZE, vision_config
from mlflow import MlflowClient

from flows.train import train_flow
from siamese.config import ModelKind
from siamese.data.image_pairs import ImageDataError
from siamese.families import family_of

pytestmark = pytest.mark.usefixtures("prefect_api")

VISION = family_of(ModelKind.VISION)


def artifact_paths(client: MlflowClient, run_id: str) -> set[str]:
    paths = {item.path for item in client.list_artifacts(run_id)}
    return paths | {item.path for folder in ("evaluation", "sharing") for item in client.list_artifacts(run_id, folder)}


def test_stereo_run_is_verified_evaluated_and_registered(stereo_run, stereo_store):
    result, client = stereo_run.result, stereo_store
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name(VISION.experiment).experiment_id
    assert run.data.params["kind"] == "vision" and run.data.params["data.source"] == "stereo"
    metrics = run.data.metrics
    assert {"test/roc_auc", "test/accuracy", "train/auc", "val/auc"} <= metrics.keys()
    assert {"evaluation/example_pairs.png", "evaluation/roc_curve.png", "evaluation/confusion_matrix.json"} <= artifact_paths(
        client, run.info.run_id
    )
    assert result["registered"]["name"] == VISION.registered_name and result["registered"]["version"] == "1"
    info = mlflow.models.get_model_info(f"models:/{VISION.registered_name}/1")
    assert info.metadata["threshold"] == metrics["calibration/threshold"] == result["threshold"], "image verification: one mechanism"
    assert "evaluation/precision_recall_curve.png" in artifact_paths(client, run.info.run_id)


def test_sharing_metrics_count_the_backbone_once(stereo_run, stereo_store):
    result, work_dir = stereo_run.result, stereo_run.work_dir
    metrics = stereo_store.get_run(result["run_id"]).data.metrics
    backbone = keras.saving.load_model(work_dir / "trained.keras").get_layer("backbone").count_params()
    assert metrics["sharing/passed"] == 1.0
    assert metrics["sharing/encoder_params"] == backbone
    assert metrics["sharing/total_params"] == backbone + metrics["sharing/head_params"]
    assert metrics["sharing/unshared_params"] == 2 * backbone + metrics["sharing/head_params"]
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{result['run_id']}/sharing/report.json"))
    assert report["passed"] and report["params_saved"] == backbone


def test_registered_vision_model_predicts_like_the_trained_model(stereo_run, stereo_store):
    result, work_dir = stereo_run.result, stereo_run.work_dir
    trained = keras.saving.load_model(work_dir / "trained.keras")
    test = VISION.load_split(vision_config(), work_dir / "test.npz").head(8)
    pixels = {side: images.astype(np.float32) for side, images in test.inputs().items()}
    loaded = mlflow.pyfunc.load_model(f"models:/{VISION.registered_name}/{result['registered']['version']}")
    np.testing.assert_allclose(loaded.predict(pixels), trained.predict(pixels, verbose=0), atol=1e-5)
    inputs = loaded.metadata.signature.inputs.inputs
    assert [(spec.name, spec.shape) for spec in inputs] == [
        ("left", (-1, IMAGE_SIZE, IMAGE_SIZE, 3)),
        ("right", (-1, IMAGE_SIZE, IMAGE_SIZE, 3)),
    ]


def write_pair_csv(path: Path, rows: list[tuple[str, str, object]]) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["left_path", "right_path", "label"])
        writer.writerows(rows)
    return path


def test_missing_image_file_stops_before_any_mlflow_run(mlflow_store, tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "classes", classes=2, images=10)
    images = sorted(str(path) for path in root.rglob("*.png"))
    rows = [(images[i], images[(i + 1) % len(images)], i % 2) for i in range(len(images))]
    rows[5] = (str(tmp_path / "gone.png"), images[0], 1)
    pairs = write_pair_csv(tmp_path / "pairs.csv", rows)

    with pytest.raises(ImageDataError, match="gone.png") as error:
        train_flow(config=vision_config(source="csv", path=str(pairs)))

    assert "line 7" in str(error.value)
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name(VISION.experiment)
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []
    assert client.search_model_versions() == []


def test_class_with_one_image_is_named(mlflow_store, tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "classes", classes=8, images=3)
    for extra in sorted((root / "class_5").iterdir())[1:]:
        extra.unlink()

    with pytest.raises(ImageDataError, match="class_5"):
        train_flow(config=vision_config(source="folder", path=str(root)))

    assert MlflowClient(mlflow_store).search_model_versions() == []
