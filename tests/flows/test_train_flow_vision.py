"""The training flow for `kind = vision`: generated stereo pairs, a folder of class images, bad input.

Real Prefect API, real MLflow store, real Keras training of the compact backbone on tiny images.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from flows.train import train_flow
from siamese.config import Config, ImageDataConfig, TrainingConfig, VisionModelConfig
from siamese.data.image_pairs import ImageDataError, ImagePairFiles
from siamese.data.sources import in_memory, load_split
from tasks.tracking import model_name

pytestmark = pytest.mark.usefixtures("prefect_api")

VISION = model_name("vision")
IMAGE_SIZE = 16


def vision_config(**data) -> Config:
    """Seconds to train: a hundred 16x16 pairs, a 4-filter compact backbone, one epoch."""
    return Config(
        kind="vision",
        data=ImageDataConfig(**{"num_pairs": 120, "image_size": IMAGE_SIZE} | data),
        model=VisionModelConfig(filters=4),
        training=TrainingConfig(epochs=1, batch_size=32),
    )


def artifact_paths(client: MlflowClient, run_id: str) -> set[str]:
    paths = {item.path for item in client.list_artifacts(run_id)}
    return paths | {item.path for folder in ("evaluation", "sharing") for item in client.list_artifacts(run_id, folder)}


@pytest.fixture(scope="module")
def stereo_run(tmp_path_factory):
    """One generated-stereo flow run shared by the tests that only read what it recorded."""
    directory = tmp_path_factory.mktemp("stereo-run")
    uri = f"sqlite:///{directory / 'mlflow' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        result = train_flow(config=vision_config(), work_dir=directory / "work")
        yield result, directory / "work", MlflowClient(uri)


def test_stereo_run_is_verified_evaluated_and_registered(stereo_run):
    result, work_dir, client = stereo_run
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name(VISION).experiment_id
    assert run.data.params["kind"] == "vision" and run.data.params["data.source"] == "stereo"
    metrics = run.data.metrics
    assert {"test/roc_auc", "test/accuracy", "train/auc", "val/auc"} <= metrics.keys()
    assert {"evaluation/example_pairs.png", "evaluation/roc_curve.png", "evaluation/confusion_matrix.json"} <= artifact_paths(
        client, run.info.run_id
    )
    assert result["registered"]["name"] == VISION and result["registered"]["version"] == "1"


def test_sharing_metrics_count_the_backbone_once(stereo_run):
    result, work_dir, client = stereo_run
    metrics = client.get_run(result["run_id"]).data.metrics
    backbone = keras.saving.load_model(work_dir / "trained.keras").get_layer("backbone").count_params()
    assert metrics["sharing/passed"] == 1.0
    assert metrics["sharing/encoder_params"] == backbone
    assert metrics["sharing/total_params"] == backbone + metrics["sharing/head_params"]
    assert metrics["sharing/unshared_params"] == 2 * backbone + metrics["sharing/head_params"]
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{result['run_id']}/sharing/report.json"))
    assert report["passed"] and report["params_saved"] == backbone


def test_registered_vision_model_predicts_like_the_trained_model(stereo_run):
    result, work_dir, _ = stereo_run
    trained = keras.saving.load_model(work_dir / "trained.keras")
    test = in_memory(load_split(work_dir / "test.npz"), 8, trained.inputs[0].shape)
    pixels = {side: images.astype(np.float32) for side, images in test.inputs().items()}
    loaded = mlflow.pyfunc.load_model(f"models:/{VISION}/{result['registered']['version']}")
    np.testing.assert_allclose(loaded.predict(pixels), trained.predict(pixels, verbose=0), atol=1e-5)
    inputs = loaded.metadata.signature.inputs.inputs
    assert [(spec.name, spec.shape) for spec in inputs] == [
        ("left", (-1, IMAGE_SIZE, IMAGE_SIZE, 3)),
        ("right", (-1, IMAGE_SIZE, IMAGE_SIZE, 3)),
    ]


def test_disparity_regression_is_scored_against_the_trivial_predictor(mlflow_store, tmp_path):
    result = train_flow(config=vision_config(task="regression"), work_dir=tmp_path / "work")

    client = MlflowClient(mlflow_store)
    run = client.get_run(result["run_id"])
    assert {"test/mae", "test/rmse", "test/r2", "test/baseline_mae", "train/mae", "val/rmse"} <= run.data.metrics.keys()
    artifacts = artifact_paths(client, run.info.run_id)
    assert {"evaluation/predictions.png", "evaluation/example_pairs.png"} <= artifacts
    assert "evaluation/confusion_matrix.json" not in artifacts
    signature = mlflow.models.get_model_info(result["registered"]["model_uri"]).signature
    assert signature.outputs.inputs[0].name == "prediction"


def test_folder_of_class_images_trains_on_pairs_of_unseen_classes(mlflow_store, tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "classes")
    work_dir = tmp_path / "work"
    result = train_flow(config=vision_config(source="folder", path=str(root), num_pairs=60, channels=1), work_dir=work_dir)

    client = MlflowClient(mlflow_store)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["sharing/passed"] == 1.0
    assert int(run.data.params["data.test_pairs"]) > 0
    classes = {name: _classes_in(load_split(work_dir / f"{name}.csv")) for name in ("train", "validation", "test")}
    assert not classes["train"] & classes["test"] and not classes["train"] & classes["validation"]
    assert client.get_model_version(VISION, result["registered"]["version"]).run_id == run.info.run_id


def _classes_in(pairs: ImagePairFiles) -> set[str]:
    return {Path(path).parent.name for path in (*pairs.left, *pairs.right)}


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
    assert client.get_experiment_by_name(VISION) is None or client.search_runs(
        [client.get_experiment_by_name(VISION).experiment_id]
    ) == []
    assert client.search_model_versions() == []


def test_class_with_one_image_is_named(mlflow_store, tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "classes", classes=8, images=3)
    for extra in sorted((root / "class_5").iterdir())[1:]:
        extra.unlink()

    with pytest.raises(ImageDataError, match="class_5"):
        train_flow(config=vision_config(source="folder", path=str(root)))

    assert MlflowClient(mlflow_store).search_model_versions() == []
