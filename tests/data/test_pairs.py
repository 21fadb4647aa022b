"""The pair-data protocol: every container answers it alike; the one fraction check and its messages."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.data.image_pairs import ImagePairFiles
from siamese.data.pairs import SPLIT_NAMES, Pairs, PairSplits, check_fractions
from siamese.data.sequences import PairSet
from siamese.data.shards import PairShards, write_shards
from siamese.data.text_pairs import TextPairs

LABELS = np.array([1, 0, 0, 1, 1], np.float32)
IMAGE_SIZE, CHANNELS = 6, 3
CONTAINERS = ["arrays", "shards", "image files", "text"]


def sequences() -> PairSet:
    """Pair i: left all i + 1 (pair 0's last timestep zero-padded), right -(i + 1)."""
    left = np.broadcast_to(np.arange(1, 6, dtype=np.float32)[:, None, None], (5, 4, 2)).copy()
    left[0, -1] = 0.0
    return PairSet(left, -left, LABELS.copy())


def make(kind: str, directory: Path) -> Pairs:
    """Five pairs labelled LABELS in container `kind`, each pair telling its index from its left side."""
    if kind == "arrays":
        return sequences()
    if kind == "shards":
        pairs = sequences()
        return write_shards(iter([pairs.take(slice(0, 3)), pairs.take(slice(3, 5))]), directory / "pairs.shards", (4, 2))
    if kind == "image files":
        paths = []
        for index in range(5):
            path = directory / f"{index}.png"
            Image.fromarray(np.full((8, 8, 3), 10 * (index + 1), np.uint8)).save(path)
            paths.append(str(path))
        return ImagePairFiles(paths, paths[::-1], LABELS, image_size=IMAGE_SIZE, channels=CHANNELS)
    return TextPairs([f"text {index}" for index in range(5)], ["other"] * 5, LABELS, np.arange(5) + 10)


def identity(left) -> list:
    """Each pair's index, read back from its left side in any container."""
    left = np.asarray(left)
    if left.dtype == object or left.dtype.kind in "SU":
        return [int((text.decode() if isinstance(text, bytes) else text).split()[1]) for text in left]
    if left.ndim == 4:  # pixels 10 * (i + 1)
        return [int(round(value / 10)) - 1 for value in left[:, 0, 0, 0]]
    return [int(value) - 1 for value in left[:, 0, 0]]


@pytest.fixture(params=CONTAINERS)
def pairs(request, tmp_path) -> Pairs:
    return make(request.param, tmp_path)


def test_every_container_satisfies_the_protocol(pairs):
    assert isinstance(pairs, Pairs)
    assert len(pairs) == 5
    np.testing.assert_array_equal(pairs.labels, LABELS)
    assert pairs.suffix in (".npz", ".shards", ".csv", ".parquet")


def test_dataset_batches_are_alike_in_every_container(pairs):
    batches = list(pairs.dataset(2))
    assert [len(labels) for _, labels in batches] == [2, 2, 1]
    assert all(set(inputs) == {"left", "right"} for inputs, _ in batches)
    assert all(len(inputs["left"]) == len(inputs["right"]) == len(labels) for inputs, labels in batches)
    np.testing.assert_array_equal(np.concatenate([labels.numpy() for _, labels in batches]), LABELS)
    assert identity(np.concatenate([inputs["left"].numpy() for inputs, _ in batches])) == [0, 1, 2, 3, 4]


def test_dataset_reshuffles_every_pass_and_repeats_with_the_seed(pairs):
    def passes(seed: int, count: int = 2) -> list[list[int]]:
        dataset = pairs.dataset(5, shuffle=True, seed=seed)
        return [identity(next(iter(dataset))[0]["left"].numpy()) for _ in range(count)]

    orders = passes(seed=3, count=4)
    assert all(sorted(order) == [0, 1, 2, 3, 4] for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # a new order each pass
    assert passes(seed=3, count=4) == orders  # the same orders from the same seed
    for inputs, labels in pairs.dataset(2, shuffle=True, seed=3):  # labels stay with their pairs
        np.testing.assert_array_equal(labels.numpy(), LABELS[identity(inputs["left"].numpy())])


def test_autotuning_is_each_containers_choice_unless_asked(pairs):
    own = pairs.dataset(2).options().autotune.enabled
    assert own is (None if isinstance(pairs, ImagePairFiles) else False)  # parallel image decoding is tuned
    assert pairs.dataset(2, autotune=False).options().autotune.enabled is False
    assert pairs.dataset(2, autotune=True).options().autotune.enabled is not False


def test_head_is_the_first_pairs_in_memory(pairs):
    head = pairs.head(3)
    assert type(head) is (TextPairs if isinstance(pairs, TextPairs) else PairSet)
    assert identity(head.left) == [0, 1, 2]
    np.testing.assert_array_equal(head.labels, LABELS[:3])
    if isinstance(pairs, ImagePairFiles):  # decoded at the container's size, as the model reads them
        assert head.left.shape == (3, IMAGE_SIZE, IMAGE_SIZE, CHANNELS) and head.left.dtype == np.uint8
    assert len(pairs.head(10)) == 5


def test_take_keeps_the_pairs_in_the_order_asked(pairs):
    taken = pairs.take(np.array([4, 1]))
    assert isinstance(taken, PairSet if isinstance(pairs, PairShards) else type(pairs))  # shards are read into memory
    np.testing.assert_array_equal(taken.labels, LABELS[[4, 1]])
    assert identity(taken.head(2).left) == [4, 1]


def test_masked_timesteps_are_counted_for_sequences_only(pairs):
    expected = 1 if isinstance(pairs, (PairSet, PairShards)) else None  # pair 0 ends in a zero timestep
    assert pairs.pairs_with_timestep_equal_to(0.0) == expected


def test_save_writes_the_suffix_its_class_loads(pairs, tmp_path):
    path = pairs.save(tmp_path / f"saved{pairs.suffix}")
    assert path == tmp_path / f"saved{pairs.suffix}"
    size = {"image_size": IMAGE_SIZE, "channels": CHANNELS} if isinstance(pairs, ImagePairFiles) else {}
    loaded = type(pairs).load(path, **size)
    assert type(loaded) is type(pairs) and len(loaded) == 5
    np.testing.assert_array_equal(loaded.labels, LABELS)
    assert identity(loaded.head(5).left) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("batch_size", [0, 2.0, True])
def test_dataset_refuses_a_batch_size_that_is_not_a_positive_integer(pairs, batch_size):
    with pytest.raises(ValueError, match=re.escape(f"batch_size must be an integer >= 1, got {batch_size!r}")):
        pairs.dataset(batch_size)


def test_split_names_and_splits():
    assert SPLIT_NAMES == ("train", "validation", "test")
    splits = PairSplits(train=1, validation=2, test=3)
    assert [getattr(splits, name) for name in SPLIT_NAMES] == [1, 2, 3]


# The one fraction check


@pytest.mark.parametrize(("validation", "test"), [(0.0, 0.2), (0.2, 0.2), (0.6, 0.3), (0.5, 0.4), (0, 0.9), (0.1, 1e-3)])
def test_fractions_leaving_at_least_ten_percent_to_train_pass(validation, test):
    check_fractions(validation, test)


@pytest.mark.parametrize(
    ("validation", "test", "message"),
    [
        (-0.1, 0.2, "data.validation_fraction must be a number >= 0.0 and < 1.0, got -0.1"),
        (1.0, 0.2, "data.validation_fraction must be a number >= 0.0 and < 1.0, got 1.0"),
        (True, 0.2, "data.validation_fraction must be a number >= 0.0 and < 1.0, got True"),
        ("0.2", 0.2, "data.validation_fraction must be a number >= 0.0 and < 1.0, got '0.2'"),
        (math.nan, 0.2, "data.validation_fraction must be a number >= 0.0 and < 1.0, got nan"),
        (0.2, 0.0, "data.test_fraction must be a number > 0.0 and < 1.0, got 0.0"),
        (0.2, 1, "data.test_fraction must be a number > 0.0 and < 1.0, got 1"),
        (0.2, math.inf, "data.test_fraction must be a number > 0.0 and < 1.0, got inf"),
        (0.2, None, "data.test_fraction must be a number > 0.0 and < 1.0, got None"),
        (0.5, 0.45, "data.validation_fraction + data.test_fraction must leave at least 10% for training, got 0.5 + 0.45"),
        (0.0, 0.95, "data.validation_fraction + data.test_fraction must leave at least 10% for training, got 0.0 + 0.95"),
    ],
)
def test_fractions_out_of_range_are_named_by_their_config_keys(validation, test, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_fractions(validation, test)
