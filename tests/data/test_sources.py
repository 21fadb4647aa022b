"""From a data config to saved splits, for every source: generated sequences and stereo, CSV, class folders."""

from __future__ import annotations

import numpy as np
import pytest

from siamese.config import ImageDataConfig, SequenceDataConfig
from siamese.data.image_pairs import ImagePairFiles
from siamese.data.sequences import PairSet
from siamese.data.sources import in_memory, load_split, prepare_splits, save_split


def sizes(splits) -> list[int]:
    return [len(splits.train), len(splits.validation), len(splits.test)]


def test_generated_sequences_are_split_in_memory():
    splits = prepare_splits(SequenceDataConfig(num_pairs=50, timesteps=5), np.random.default_rng(0))
    assert isinstance(splits.test, PairSet)
    assert sum(sizes(splits)) == 50


def test_stereo_similarity_is_stratified_and_regression_is_not():
    rng = np.random.default_rng(0)
    similarity = prepare_splits(ImageDataConfig(num_pairs=40, image_size=16), rng)
    assert set(np.unique(similarity.test.labels)) == {0.0, 1.0}
    assert similarity.test.left.shape[1:] == (16, 16, 3) and similarity.test.left.dtype == np.uint8

    regression = prepare_splits(ImageDataConfig(num_pairs=40, image_size=16, task="regression"), rng)
    assert sum(sizes(regression)) == 40
    assert len(np.unique(regression.train.labels)) > 2, "disparity targets are numbers, not classes"


def test_csv_and_class_folder_sources_give_image_files(tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "classes", classes=8, images=4)
    folder = prepare_splits(ImageDataConfig(source="folder", path=str(root), num_pairs=40), np.random.default_rng(0))
    assert isinstance(folder.train, ImagePairFiles) and sum(sizes(folder)) == 40

    table = folder.train.save(tmp_path / "pairs.csv")
    from_csv = prepare_splits(ImageDataConfig(source="csv", path=str(table)), np.random.default_rng(0))
    assert sum(sizes(from_csv)) == len(folder.train)
    assert set(from_csv.train.left) <= set(folder.train.left)


def test_splits_round_trip_through_their_files(tmp_path, write_class_folders):
    arrays = prepare_splits(ImageDataConfig(num_pairs=20, image_size=16), np.random.default_rng(0)).test
    path = save_split(arrays, tmp_path, "test")
    assert path.name == "test.npz"
    np.testing.assert_array_equal(load_split(path).left, arrays.left)

    root = write_class_folders(tmp_path / "classes")
    files = prepare_splits(ImageDataConfig(source="folder", path=str(root), num_pairs=20), np.random.default_rng(0)).test
    path = save_split(files, tmp_path, "files")
    assert path.name == "files.csv"
    np.testing.assert_array_equal(load_split(path).right, files.right)


@pytest.mark.parametrize("channels", [1, 3])
def test_in_memory_reads_files_at_the_models_input_shape(tmp_path, write_class_folders, channels):
    root = write_class_folders(tmp_path / "classes")
    files = prepare_splits(ImageDataConfig(source="folder", path=str(root), num_pairs=20), np.random.default_rng(0)).train
    probe = in_memory(files, 3, (None, 12, 12, channels))
    assert probe.left.shape == (3, 12, 12, channels) and probe.left.dtype == np.uint8
    np.testing.assert_array_equal(probe.labels, files.labels[:3])

    arrays = PairSet(np.zeros((5, 4, 2)), np.ones((5, 4, 2)), np.arange(5.0))
    assert len(in_memory(arrays, 3, (None, None, 2))) == 3
