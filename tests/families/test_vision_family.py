"""The image pair family: generated stereo pairs, class folders and pair CSVs to splits and back; the shared CNN; its loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamese.config import Config, ImageDataConfig, ModelKind, VisionModelConfig
from siamese.data.image_pairs import ImagePairFiles
from siamese.data.sequences import PairSet
from siamese.families import family_of

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
    assert set(np.unique(loaded["test"].labels)) == {0.0, 1.0}
    assert loaded["test"].left.shape[1:] == (16, 16, 3) and loaded["test"].left.dtype == np.uint8


def test_regression_pairs_keep_numeric_targets(tmp_path):
    run_config = config(task="regression")
    splits = FAMILY.prepare_splits(run_config, tmp_path)
    train = FAMILY.load_split(run_config, splits.paths["train"])
    assert sum(splits.sizes.values()) == 40
    assert len(np.unique(train.labels)) > 2, "disparity targets are numbers, not classes"
    assert splits.labels["train"].startswith("targets ")


@pytest.mark.parametrize("channels", [1, 3])
def test_class_folders_give_image_files_of_unseen_classes_read_at_the_configured_shape(tmp_path, write_class_folders, channels):
    root = write_class_folders(tmp_path / "classes")
    run_config = config(source="folder", path=str(root), num_pairs=40, image_size=20, channels=channels)
    splits = FAMILY.prepare_splits(run_config, tmp_path)
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
    assert FAMILY.baselines(run_config, test, test) == {}
