"""Sharded pairs on disk: round trip, reads across shards, streaming epochs, streamed generation, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siamese.config import SequenceDataConfig
from siamese.data.pairs import SPLIT_NAMES, PairSplits
from siamese.data.sequences import PairSet, generate_sequence_splits, split_label_counts
from siamese.data.shards import MANIFEST, PairShards, ShardError, pairs_per_shard, write_shards

ITEM_SHAPE = (3, 2)


def sequence_splits(config: SequenceDataConfig, seed: int, directory: Path | None = None) -> PairSplits:
    """Generated sequence splits as a run makes them: a shard at a time into `<split>.shards`, or the same pairs in memory."""
    item_shape = (config.timesteps, config.features)
    blocks = generate_sequence_splits(config, np.random.default_rng(seed), pairs_per_shard(item_shape))
    if directory is None:
        return PairSplits(**{name: PairSet.concatenate(list(getattr(blocks, name)), item_shape) for name in SPLIT_NAMES})
    return PairSplits(
        **{
            name: write_shards(getattr(blocks, name), directory / f"{name}{PairShards.suffix}", item_shape, {"seed": seed})
            for name in SPLIT_NAMES
        }
    )


def numbered_blocks(sizes: list[int]) -> list[PairSet]:
    """Blocks whose pairs say where they came from: left[i] is all `i`, right `-i`, labels alternate."""
    blocks, start = [], 0
    for size in sizes:
        index = np.arange(start, start + size, dtype=np.float32)
        left = np.broadcast_to(index[:, None, None], (size, *ITEM_SHAPE)).copy()
        blocks.append(PairSet(left, -left, (index % 2).astype(np.float32)))
        start += size
    return blocks


@pytest.fixture
def shards(tmp_path) -> PairShards:
    """23 pairs in shards of 10, 10 and 3: pair i has left == i."""
    return write_shards(iter(numbered_blocks([10, 10, 3])), tmp_path / "train.shards", ITEM_SHAPE)


def pair_ids(batch_left: np.ndarray) -> np.ndarray:
    return batch_left[:, 0, 0].astype(int)


def epoch_ids(dataset) -> np.ndarray:
    return np.concatenate([pair_ids(inputs["left"].numpy()) for inputs, _ in dataset])


def test_head_reads_the_first_pairs_from_the_first_shards_only(shards):
    head = shards.head(12)
    assert type(head) is PairSet and len(head) == 12
    np.testing.assert_array_equal(pair_ids(head.left), np.arange(12))
    assert len(shards.head(100)) == 23


def test_autotuning_is_off_unless_asked(shards):
    assert shards.dataset(4).options().autotune.enabled is False
    assert shards.dataset(4, autotune=False).options().autotune.enabled is False
    assert shards.dataset(4, autotune=True).options().autotune.enabled is not False


def test_round_trip_keeps_every_pair_and_the_manifest(shards, tmp_path):
    expected = PairSet.concatenate(numbered_blocks([10, 10, 3]), ITEM_SHAPE)
    loaded = PairShards.load(tmp_path / "train.shards")
    assert len(loaded) == 23 and loaded.shard_sizes == (10, 10, 3) and loaded.item_shape == ITEM_SHAPE
    everything = loaded.take(slice(None))
    for side in ("left", "right", "labels"):
        np.testing.assert_array_equal(getattr(everything, side), getattr(expected, side))
        assert getattr(everything, side).dtype == np.float32
    np.testing.assert_array_equal(loaded.labels, expected.labels)
    assert loaded.positive_pairs == 11
    assert loaded.padded_pairs == 1  # pair 0 is all zeros on both sides; no other has a zero timestep
    assert loaded.pairs_with_timestep_equal_to(0.0) == expected.pairs_with_timestep_equal_to(0.0) == 1
    assert loaded.pairs_with_timestep_equal_to(5.0) is None  # only zero-padding is counted
    assert expected.pairs_with_timestep_equal_to(5.0) == 1
    manifest = json.loads((tmp_path / "train.shards" / MANIFEST).read_text())
    assert manifest["pairs"] == 23 and manifest["item_shape"] == [3, 2] and manifest["dtype"] == "float32"
    assert not (tmp_path / "train.shards.partial").exists()


def test_save_copies_the_shards_unless_they_are_there_already(shards, tmp_path):
    assert shards.save(tmp_path / f"train{PairShards.suffix}") == shards.path  # already there: nothing copied
    (tmp_path / "elsewhere").mkdir()
    copied = shards.save(tmp_path / "elsewhere" / f"test{PairShards.suffix}")
    assert copied.name == "test.shards"
    loaded = PairShards.load(copied)
    assert isinstance(loaded, PairShards)
    np.testing.assert_array_equal(loaded.take(slice(None)).left, shards.take(slice(None)).left)


def test_take_reads_across_shard_boundaries_in_the_order_asked(shards):
    indices = np.array([22, 9, 10, 0, 19, 20, 9, -1])
    taken = shards.take(indices)
    np.testing.assert_array_equal(pair_ids(taken.left), [22, 9, 10, 0, 19, 20, 9, 22])
    np.testing.assert_array_equal(pair_ids(-taken.right), [22, 9, 10, 0, 19, 20, 9, 22])
    np.testing.assert_array_equal(taken.labels, [0, 1, 0, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(pair_ids(shards.take(slice(8, 13)).left), [8, 9, 10, 11, 12])
    assert len(shards.take(slice(0, 0))) == 0
    with pytest.raises(IndexError, match="out of range for 23 pairs"):
        shards.take(np.array([23]))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [4, 10, 64])
def test_dataset_yields_every_pair_exactly_once_per_epoch(shards, shuffle, batch_size):
    dataset = shards.dataset(batch_size, shuffle=shuffle, seed=3)
    assert dataset.cardinality().numpy() == -(-23 // batch_size)
    for _ in range(2):  # two epochs
        batches = list(dataset)
        sizes = [len(labels) for _, labels in batches]
        assert sizes == [batch_size] * (23 // batch_size) + ([23 % batch_size] if 23 % batch_size else [])
        ids = np.concatenate([pair_ids(inputs["left"].numpy()) for inputs, _ in batches])
        assert sorted(ids) == list(range(23))
        for inputs, labels in batches:  # left, right and label still belong together
            left_ids = pair_ids(inputs["left"].numpy())
            np.testing.assert_array_equal(pair_ids(-inputs["right"].numpy()), left_ids)
            np.testing.assert_array_equal(labels.numpy(), left_ids % 2)
        if not shuffle:
            np.testing.assert_array_equal(ids, np.arange(23))


def test_seeded_shuffle_repeats_across_runs_and_differs_per_epoch_and_seed(shards):
    first, again, other_seed = (shards.dataset(4, shuffle=True, seed=seed) for seed in (7, 7, 8))
    first_epochs = [epoch_ids(first) for _ in range(3)]
    again_epochs = [epoch_ids(again) for _ in range(3)]
    for mine, theirs in zip(first_epochs, again_epochs):
        np.testing.assert_array_equal(mine, theirs)
    assert not np.array_equal(first_epochs[0], first_epochs[1])
    assert not np.array_equal(first_epochs[1], first_epochs[2])
    assert not np.array_equal(first_epochs[0], epoch_ids(other_seed))
    # Pairs mix within shards too, not just the shard order.
    assert not np.array_equal(np.sort(first_epochs[0][:10]), first_epochs[0][:10])


def test_dataset_of_an_empty_split_is_empty(tmp_path):
    empty = write_shards(iter([]), tmp_path / "validation.shards", ITEM_SHAPE)
    assert len(empty) == 0 and len(empty.labels) == 0
    assert list(empty.dataset(8)) == []


# Streamed generation

CONFIG = SequenceDataConfig(num_pairs=250, timesteps=6, features=3)


def test_generation_is_lazy_and_bounded_by_the_block_size():
    blocks = generate_sequence_splits(CONFIG, np.random.default_rng(0), block_pairs=40)
    first = next(blocks.train)  # one block made, the rest not yet
    assert len(first) == 40
    sizes = [len(first)] + [len(block) for block in blocks.train]
    counts = split_label_counts(250, CONFIG.validation_fraction, CONFIG.test_fraction)
    assert sizes == [40, 40, 40, 30] and sum(sizes) == sum(counts["train"])


def test_generation_to_shards_equals_generation_in_memory_and_repeats(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    on_disk = sequence_splits(CONFIG, 4, tmp_path / "a")
    again = sequence_splits(CONFIG, 4, tmp_path / "b")
    in_memory = sequence_splits(CONFIG, 4)
    other_seed = sequence_splits(CONFIG, 5)
    for name in ("train", "validation", "test"):
        shards, repeated, arrays = getattr(on_disk, name), getattr(again, name), getattr(in_memory, name)
        assert isinstance(shards, PairShards) and shards.path == tmp_path / "a" / f"{name}.shards"
        for side in ("left", "right", "labels"):
            np.testing.assert_array_equal(getattr(shards.take(slice(None)), side), getattr(arrays, side))
            np.testing.assert_array_equal(getattr(repeated.take(slice(None)), side), getattr(arrays, side))
        assert not np.array_equal(arrays.left, getattr(other_seed, name).left)
    assert on_disk.train.metadata == {"seed": 4}


def test_generated_shards_hold_at_most_a_shard_of_pairs(tmp_path):
    per_shard = pairs_per_shard((6, 3), shard_bytes=2000)  # 144 bytes a pair
    assert per_shard == 13
    blocks = generate_sequence_splits(CONFIG, np.random.default_rng(0), per_shard)
    written = write_shards(blocks.train, tmp_path / "train.shards", (6, 3))
    assert max(written.shard_sizes) == 13 and len(written.shard_sizes) == -(-len(written) // 13)


@pytest.mark.parametrize("mode", ["paraphrase", "random"])
def test_every_split_and_shard_is_balanced(tmp_path, mode):
    config = SequenceDataConfig(mode=mode, num_pairs=301, timesteps=5, features=2)
    blocks = generate_sequence_splits(config, np.random.default_rng(0), block_pairs=25)
    counts = split_label_counts(301, 0.2, 0.2)
    for name, (positives, negatives) in counts.items():
        split = write_shards(getattr(blocks, name), tmp_path / f"{name}.shards", (5, 2))
        assert (split.positive_pairs, len(split) - split.positive_pairs) == (positives, negatives)
        assert abs(positives - negatives) <= 1
        for index in range(len(split.shard_sizes)):
            labels = split.shard(index).labels
            assert abs(2 * labels.sum() - len(labels)) <= 1
    assert counts == {"train": (90, 91), "validation": (30, 30), "test": (30, 30)}


def test_tiny_splits_still_get_both_labels_and_too_few_raise():
    counts = split_label_counts(10, 0.2, 0.2)
    assert all(positives >= 1 and negatives >= 1 for positives, negatives in counts.values())
    with pytest.raises(ValueError, match="only 2 pairs have label 1: too few to split"):
        split_label_counts(4, 0.2, 0.2)


def test_random_mode_shards_are_standard_normal_sequences():
    config = SequenceDataConfig(mode="random", num_pairs=400, timesteps=8, features=4)
    train = next(generate_sequence_splits(config, np.random.default_rng(0), block_pairs=1000).train)
    assert np.all(train.left != 0), "random mode does not pad"
    assert abs(train.right.mean()) < 0.05 and abs(train.right.std() - 1) < 0.05


# Errors name the file


def test_missing_or_damaged_manifest_is_named(shards):
    manifest = shards.path / MANIFEST
    manifest.write_text("{not json")
    with pytest.raises(ShardError, match=rf"{manifest}: cannot be read"):
        PairShards.load(shards.path)
    manifest.write_text(json.dumps({"format": "siamese-pair-shards", "version": 1}))
    with pytest.raises(ShardError, match=rf"{manifest}: damaged"):
        PairShards.load(shards.path)
    manifest.unlink()
    with pytest.raises(ShardError, match=rf"{manifest}: missing, so the shards were never completely written"):
        PairShards.load(shards.path)
    with pytest.raises(ShardError, match="no such shard directory"):
        PairShards.load(shards.path.with_name("nowhere.shards"))


def test_missing_shard_file_is_named_on_load(shards):
    missing = shards.path / "shard-00001.right.npy"
    missing.unlink()
    with pytest.raises(ShardError, match=rf"{missing}: missing shard file \(3 shards expected\)"):
        PairShards.load(shards.path)


def test_damaged_shard_file_is_named_when_read_and_streamed(shards):
    damaged = shards.path / "shard-00001.left.npy"
    damaged.write_bytes(damaged.read_bytes()[:-7])  # truncated
    with pytest.raises(ShardError, match=rf"{damaged}: cannot read shard 1"):
        shards.take(np.array([12]))
    with pytest.raises(ShardError, match=rf"{damaged}: cannot read shard 1"):
        shards.shard(1)
    np.testing.assert_array_equal(pair_ids(shards.take(np.array([3, 21])).left), [3, 21])  # other shards still read
    import tensorflow as tf

    with pytest.raises(tf.errors.OpError, match=rf"{damaged}: cannot read shard 1"):
        list(shards.dataset(5))


def test_shard_of_another_shape_is_refused(shards):
    np.save(shards.path / "shard-00000.labels.npy", np.zeros(9, np.float32))
    with pytest.raises(ShardError, match=r"shard-00000.labels.npy: holds float32 \(9,\), the manifest says float32 \(10,\)"):
        _ = shards.labels


def test_interrupted_write_leaves_no_directory_that_looks_complete(tmp_path):
    def failing_blocks():
        yield from numbered_blocks([10])
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError, match="generator died"):
        write_shards(failing_blocks(), tmp_path / "train.shards", ITEM_SHAPE)
    assert not (tmp_path / "train.shards").exists() and not (tmp_path / "train.shards.partial").exists()


def test_write_replaces_old_shards_but_not_other_directories(shards, tmp_path):
    replaced = write_shards(iter(numbered_blocks([4])), shards.path, ITEM_SHAPE)
    assert len(replaced) == 4 and sorted(p.name for p in shards.path.iterdir() if p.suffix == ".npy")[-1] == "shard-00000.right.npy"
    other = tmp_path / "mine.shards"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ShardError, match="exists and is not a shard directory"):
        write_shards(iter(numbered_blocks([4])), other, ITEM_SHAPE)
    assert (other / "notes.txt").exists()


def test_blocks_of_the_wrong_shape_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"block 0 of bad.shards: left is float32 \(5, 3, 2\), expected float32 \(5, 4, 2\)"):
        write_shards(iter(numbered_blocks([5])), tmp_path / "bad.shards", (4, 2))
    assert not Path(tmp_path / "bad.shards").exists()


def test_training_and_prediction_stream_shards_like_arrays(tmp_path):
    """`siamese.training` streams shards through their `dataset`: predictions equal those on the same arrays."""
    import keras

    from siamese.config import TrainingConfig
    from siamese.models.text import build_text_model
    from siamese.training import compile_for_training, fit, predict

    training = TrainingConfig(epochs=2, batch_size=32)
    splits = sequence_splits(CONFIG, 0, tmp_path)
    keras.utils.set_random_seed(0)
    model = build_text_model(features=CONFIG.features, units=8, head="symmetric")
    compile_for_training(model, training)
    result = fit(model, splits.train, splits.validation, training, verbose=0)
    assert len(result.history["loss"]) == len(result.history["val_loss"]) == 2
    test = splits.test.take(slice(None))
    np.testing.assert_allclose(predict(model, splits.test, 16), model.predict(test.inputs(), verbose=0), atol=1e-6)
