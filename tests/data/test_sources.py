"""From a data config to saved splits, for every source: generated sequences and stereo, CSV, class folders, text pair files."""

from __future__ import annotations

import numpy as np
import pytest

from siamese.config import ImageDataConfig, SequenceDataConfig, TextFileDataConfig
from siamese.data.image_pairs import ImagePairFiles
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.sequences import PairSet
from siamese.data.shards import PairShards
from siamese.data.sources import in_memory, load_split, prepare_splits, save_split, split_text_file
from siamese.data.tables import PairFileError
from siamese.data.text_pairs import TextPairs


def sizes(splits) -> list[int]:
    return [len(splits.train), len(splits.validation), len(splits.test)]


def test_generated_sequences_are_written_as_shards_or_kept_in_memory(tmp_path):
    config = SequenceDataConfig(num_pairs=50, timesteps=5)
    written = prepare_splits(config, np.random.default_rng(0), tmp_path)
    assert isinstance(written.test, PairShards) and sum(sizes(written)) == 50
    assert sorted(path.name for path in tmp_path.iterdir()) == ["test.shards", "train.shards", "validation.shards"]
    path = save_split(written.test, tmp_path, "test")
    assert path == tmp_path / "test.shards"
    np.testing.assert_array_equal(load_split(path).labels, written.test.labels)
    assert len(in_memory(load_split(path), 4, (None, None, 128))) == 4

    in_memory_splits = prepare_splits(config, np.random.default_rng(0))
    assert isinstance(in_memory_splits.test, PairSet) and sum(sizes(in_memory_splits)) == 50


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


# Text pairs from a file


def write_questions(path, rows: int = 60, seed: int = 0, **cells: dict[int, object]):
    """Write sample question pairs after overwriting cells: `column={row: value}`."""
    frame = sample_question_pairs(rows, seed)
    for column, values in cells.items():
        for row, value in values.items():
            frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return path


def test_text_file_is_split_with_its_lineage(tmp_path):
    path = write_questions(tmp_path / "questions.csv")
    splits, loaded = split_text_file(TextFileDataConfig(path=str(path)), seed=0)
    assert isinstance(splits.train, TextPairs) and isinstance(splits.test, TextPairs)
    assert sum(sizes(splits)) == 60
    assert all(set(np.unique(split.labels)) == {0.0, 1.0} for split in (splits.train, splits.validation, splits.test))
    rows = np.concatenate([splits.train.rows, splits.validation.rows, splits.test.rows])
    assert sorted(rows.tolist()) == list(range(60)), "every file row lands in exactly one split"

    assert loaded.source == str(path.absolute())
    assert len(loaded.content_hash) == 64
    assert loaded.dropped == {} and loaded.total_rows == 60

    again, _ = split_text_file(TextFileDataConfig(path=str(path)), seed=0)
    np.testing.assert_array_equal(again.test.rows, splits.test.rows)


def test_text_file_lineage_changes_with_the_content_and_counts_dropped_rows(tmp_path):
    clean = write_questions(tmp_path / "clean.csv")
    broken = write_questions(tmp_path / "broken.csv", question1={3: ""}, is_duplicate={5: 7})
    _, clean_lineage = split_text_file(TextFileDataConfig(path=str(clean)), seed=0)
    splits, lineage = split_text_file(TextFileDataConfig(path=str(broken), drop_invalid_rows=True), seed=0)
    assert lineage.content_hash != clean_lineage.content_hash
    assert lineage.dropped_rows == 2 and lineage.total_rows == 60
    assert sum(sizes(splits)) == 58
    kept = np.concatenate([splits.train.rows, splits.validation.rows, splits.test.rows])
    assert 3 not in kept and 5 not in kept

    with pytest.raises(PairFileError, match="broken.csv"):
        split_text_file(TextFileDataConfig(path=str(broken)), seed=0)  # without dropping, invalid rows stop the run


def test_text_file_too_small_for_its_splits_is_a_pair_file_error_naming_the_file(tmp_path):
    # 20 rows pass the row count, but one duplicate cannot give three splits both labels.
    labels = {row: 0 for row in range(20)} | {0: 1}
    path = write_questions(tmp_path / "few.csv", rows=20, is_duplicate=labels)
    with pytest.raises(PairFileError) as error:
        split_text_file(TextFileDataConfig(path=str(path)), seed=0)
    assert str(error.value).startswith("few.csv: ")
    assert "has no pair labelled 1" in str(error.value) and "more rows are needed" in str(error.value)


def test_text_pair_splits_round_trip_through_parquet(tmp_path):
    path = write_questions(tmp_path / "questions.csv", rows=40)
    splits, _ = split_text_file(TextFileDataConfig(path=str(path), validation_fraction=0.0), seed=1)
    for name in ("test", "validation"):  # validation is empty: written with its columns, read back empty
        split = getattr(splits, name)
        saved = save_split(split, tmp_path, name)
        assert saved.name == f"{name}.parquet"
        loaded = load_split(saved)
        assert isinstance(loaded, TextPairs) and len(loaded) == len(split)
        assert loaded.left.tolist() == split.left.tolist() and loaded.right.tolist() == split.right.tolist()
        np.testing.assert_array_equal(loaded.labels, split.labels)
        np.testing.assert_array_equal(loaded.rows, split.rows)
    assert len(splits.validation) == 0 and len(splits.test) > 0


def test_in_memory_keeps_text_pairs_as_text():
    pairs = TextPairs(["a b", "c", "d e f", "g"], ["h", "i j", "k", "l"], [1, 0, 1, 0], [4, 7, 8, 9])
    head = in_memory(pairs, 3, (None,))
    assert type(head) is TextPairs
    assert head.left.tolist() == ["a b", "c", "d e f"] and head.right.tolist() == ["h", "i j", "k"]
    np.testing.assert_array_equal(head.rows, [4, 7, 8])
    np.testing.assert_array_equal(head.labels, [1, 0, 1])
