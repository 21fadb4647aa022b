"""The image pair family: stereo pairs, class folders and pair CSVs to splits and back; the shared CNN; its loss; baselines."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import pytest

from siamese.baselines import mean_image
from siamese.config import Config, ImageDataConfig, ModelKind, VisionModelConfig
from siamese.data.image_pairs import ImagePairFiles
from siamese.data.sequences import PairSet
from siamese.families import family_of, vision
from siamese.gate import Decision, judge_first_model, strongest_baseline
from siamese.training import ContrastiveLoss

FAMILY = family_of(ModelKind.VISION)
SMALL_MODEL = VisionModelConfig(filters=4)


def config(**data) -> Config:
    return Config(kind=ModelKind.VISION, data=ImageDataConfig(**{"num_pairs": 40, "image_size": 16} | data), model=SMALL_MODEL)


def load_all(run_config: Config, paths: dict[str, Path]) -> dict:
    return {name: FAMILY.load_split(run_config, path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    run_config = config()
    return run_config, FAMILY.prepare_splits(run_config, tmp_path_factory.mktemp("stereo"))


def test_generated_stereo_pairs_are_written_as_arrays_and_stratified(stereo):
    run_config, splits = stereo
    assert {name: path.name for name, path in splits.paths.items()} == {
        "train": "train.npz", "validation": "validation.npz", "test": "test.npz",
    }  # fmt: skip
    loaded = load_all(run_config, splits.paths)
    assert all(isinstance(pairs, PairSet) for pairs in loaded.values())
    assert sum(splits.sizes.values()) == 40 and splits.source is None
    assert splits.params == {"data.training_pairs_used": "drawn"}  # generated pairs have no classes to batch by
    assert set(np.unique(loaded["test"].labels)) == {0.0, 1.0}
    assert loaded["test"].left.shape[1:] == (16, 16, 3) and loaded["test"].left.dtype == np.uint8


def test_regression_pairs_keep_numeric_targets(tmp_path):
    run_config = config(task="regression")
    splits = FAMILY.prepare_splits(run_config, tmp_path)
    train = FAMILY.load_split(run_config, splits.paths["train"])
    assert sum(splits.sizes.values()) == 40
    assert len(np.unique(train.labels)) > 2, "disparity targets are numbers, not classes"
    assert splits.labels["train"].startswith("targets ")


def test_a_folder_of_few_classes_is_split_by_image_by_default_and_the_run_records_it(tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "classes")
    splits = FAMILY.prepare_splits(config(source="folder", path=str(root), num_pairs=40, image_size=20), tmp_path)
    assert splits.params == {"data.split_by_used": "image", "data.training_pairs_used": "in_batch"}  # auto: too few classes for 5 per split
    loaded = load_all(config(source="folder", path=str(root), image_size=20), splits.paths)
    classes = {name: {Path(path).parent.name for path in (*pairs.left, *pairs.right)} for name, pairs in loaded.items()}
    assert classes["train"] & classes["test"]  # every class in every split


@pytest.mark.parametrize("channels", [1, 3])
def test_class_folders_give_image_files_of_unseen_classes_read_at_the_configured_shape(tmp_path, write_class_folders, channels):
    root = write_class_folders(tmp_path / "classes")
    run_config = config(source="folder", path=str(root), num_pairs=40, image_size=20, channels=channels, split_by="class")
    splits = FAMILY.prepare_splits(run_config, tmp_path)
    assert splits.params == {"data.split_by_used": "class", "data.training_pairs_used": "in_batch"}
    assert {path.name for path in splits.paths.values()} == {"train.csv", "validation.csv", "test.csv"}
    loaded = load_all(run_config, splits.paths)
    assert all(isinstance(pairs, ImagePairFiles) for pairs in loaded.values())
    assert sum(len(pairs) for pairs in loaded.values()) == 40
    classes = {name: {Path(path).parent.name for path in (*pairs.left, *pairs.right)} for name, pairs in loaded.items()}
    assert not classes["train"] & classes["test"] and not classes["train"] & classes["validation"]
    probe = loaded["train"].head(3)
    assert probe.left.shape == (3, 20, 20, channels) and probe.left.dtype == np.uint8
    np.testing.assert_array_equal(probe.labels, loaded["train"].labels[:3])


def test_a_pair_csv_gives_its_rows(tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "classes")
    folder_config = config(source="folder", path=str(root), num_pairs=40)
    (tmp_path / "folder").mkdir()
    table = FAMILY.prepare_splits(folder_config, tmp_path / "folder").paths["train"]
    from_folder = FAMILY.load_split(folder_config, table)

    csv_config = config(source="csv", path=str(table))
    (tmp_path / "csv").mkdir()
    splits = FAMILY.prepare_splits(csv_config, tmp_path / "csv")
    loaded = load_all(csv_config, splits.paths)
    assert sum(splits.sizes.values()) == len(from_folder)
    assert set(loaded["train"].left) <= set(from_folder.left)
    assert FAMILY.data_name(csv_config) == "train.csv" and FAMILY.data_name(config()) == "stereo"


@pytest.mark.parametrize(
    ("task", "output", "loss"),
    [("similarity", "similarity", "binary_crossentropy"), ("regression", "prediction", "mean_squared_error")],
)
def test_build_shares_one_backbone_and_ends_in_the_tasks_output(stereo, task, output, loss):
    run_config, splits = stereo
    task_config = config(task=task)
    model = FAMILY.build(task_config, FAMILY.load_split(run_config, splits.paths["train"]), "float32")
    assert model.name == "siamese_vision"
    assert [tuple(tensor.shape) for tensor in model.inputs] == [(None, 16, 16, 3)] * 2
    assert model.layers[-1].name == output and tuple(model.output.shape) == (None, 1)
    backbone = model.get_layer("backbone")
    assert model.count_params() == backbone.count_params() + sum(
        layer.count_params() for layer in model.layers if layer is not backbone
    ), "the backbone is counted once"
    assert FAMILY.loss(task_config) == loss


def test_example_pairs_are_the_first_test_pairs_in_memory(stereo):
    run_config, splits = stereo
    test = FAMILY.load_split(run_config, splits.paths["test"])
    examples = FAMILY.example_pairs(test)
    assert isinstance(examples, PairSet) and len(examples) == min(6, len(test))
    np.testing.assert_array_equal(examples.left, test.left[: len(examples)])


def test_similarity_runs_get_a_pixel_baseline_whose_mean_image_is_the_training_splits(stereo, monkeypatch):
    run_config, splits = stereo
    train, validation, test = (FAMILY.load_split(run_config, splits.paths[name]) for name in ("train", "validation", "test"))
    averaged = []

    def recording_mean(batches):
        seen = list(batches)
        averaged.append(np.concatenate(seen))
        return mean_image(seen)

    monkeypatch.setattr(vision, "mean_image", recording_mean)
    baselines = FAMILY.baselines(run_config, train, validation, test)

    assert baselines.keys() == {"pixel_cosine_auc", "pixel_cosine_accuracy"}
    assert all(0 <= value <= 1 for value in baselines.values())
    (images,) = averaged
    training_images = np.concatenate([train.left, train.right])
    assert len(images) == len(training_images)
    np.testing.assert_allclose(images.mean(axis=0), training_images.mean(axis=0), rtol=1e-6)
    assert FAMILY.extra_test_metrics(run_config, keras.Sequential(), test) == {}, "stereo scenes have no classes"


def test_regression_has_no_pixel_baseline(tmp_path):
    run_config = config(task="regression")
    splits = FAMILY.prepare_splits(run_config, tmp_path)
    train, validation, test = (FAMILY.load_split(run_config, splits.paths[name]) for name in ("train", "validation", "test"))
    assert FAMILY.baselines(run_config, train, validation, test) == {}


def test_class_folders_get_one_shot_accuracies_and_the_pixel_baseline_is_a_gate_bar(tmp_path, write_class_folders, caplog):
    root = write_class_folders(tmp_path / "classes", classes=30, images=4)
    run_config = config(source="folder", path=str(root), num_pairs=100, image_size=20)
    splits = FAMILY.prepare_splits(run_config, tmp_path)
    train, validation, test = (FAMILY.load_split(run_config, splits.paths[name]) for name in ("train", "validation", "test"))
    assert 5 <= len({Path(path).parent for path in (*test.left, *test.right)}) < 20
    keras.utils.set_random_seed(0)
    model = FAMILY.build(run_config, train, "float32")

    with caplog.at_level(logging.INFO, logger=vision.__name__):
        metrics = FAMILY.extra_test_metrics(run_config, model, test)
    baselines = FAMILY.baselines(run_config, train, validation, test)

    assert metrics.keys() == {"oneshot_5way_accuracy"} and 0 <= metrics["oneshot_5way_accuracy"] <= 1
    assert "no 20-way one-shot accuracy" in caplog.text
    assert metrics == FAMILY.extra_test_metrics(run_config, model, test), "trials and tie-breaks follow config.seed"
    assert baselines.keys() == {"pixel_cosine_auc", "pixel_cosine_accuracy", "pixel_cosine_oneshot_5way"}
    assert baselines["pixel_cosine_oneshot_5way"] > 0.5, "classes differ in colour and stripes: raw pixels tell them apart"
    assert strongest_baseline(baselines, "roc_auc") == ("pixel_cosine", baselines["pixel_cosine_auc"])
    assert strongest_baseline(baselines, "accuracy") == ("pixel_cosine", baselines["pixel_cosine_accuracy"]), (
        "a one-shot accuracy is no bar for a pair accuracy"
    )
    chance = judge_first_model(test.labels, np.full(len(test), 0.5), min_quality=None, baselines=baselines)
    assert chance.decision is Decision.KEEP and "pixel_cosine" in chance.reason


def test_contrastive_loss_trains_a_folder_model_with_its_margin():
    run_config = Config(
        kind=ModelKind.VISION,
        data=ImageDataConfig(source="folder", path="x"),
        model=VisionModelConfig(filters=4, loss="contrastive", margin=0.3),
    )
    loss = FAMILY.loss(run_config)
    assert isinstance(loss, ContrastiveLoss) and loss.margin == 0.3
    assert FAMILY.loss(config()) == "binary_crossentropy"
