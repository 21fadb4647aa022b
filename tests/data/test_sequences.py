"""Generated sequence pairs: shapes, determinism, padding, the original script's generator, splits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from siamese.config import SequenceDataConfig
from siamese.data.sequences import (
    HARD_NEGATIVE_SHARE,
    MAX_SHIFT,
    PairSet,
    generate_sequence_pairs,
    split_label_counts,
    split_pairs,
)

SMALL = {"num_pairs": 60, "timesteps": 8, "features": 5}


def generate(mode: str = "paraphrase", seed: int = 0, **overrides) -> PairSet:
    return generate_sequence_pairs(SequenceDataConfig(mode=mode, **(SMALL | overrides)), np.random.default_rng(seed))


def row_keys(pairs: PairSet) -> set[bytes]:
    """Each pair identified by its bytes: left, right and label together."""
    return {
        left.tobytes() + right.tobytes() + label.tobytes()
        for left, right, label in zip(pairs.left, pairs.right, pairs.labels)
    }


@pytest.mark.parametrize("mode", ["paraphrase", "random"])
def test_shapes_and_dtypes(mode):
    pairs = generate(mode)
    assert pairs.left.shape == (60, 8, 5)
    assert pairs.right.shape == (60, 8, 5)
    assert pairs.labels.shape == (60,)
    assert pairs.left.dtype == pairs.right.dtype == pairs.labels.dtype == np.float32
    assert len(pairs) == 60
    assert set(np.unique(pairs.labels)) <= {0.0, 1.0}
    assert set(pairs.inputs()) == {"left", "right"}


def test_paraphrase_labels_are_balanced_exactly():
    labels = generate("paraphrase", num_pairs=60).labels
    assert np.sum(labels == 1) == np.sum(labels == 0) == 30
    # Shuffled, not all positives first.
    assert not np.array_equal(labels, np.sort(labels)[::-1])


@pytest.mark.parametrize("mode", ["paraphrase", "random"])
def test_same_seed_gives_identical_pairs_and_different_seed_different_ones(mode):
    first, second, other = generate(mode, seed=3), generate(mode, seed=3), generate(mode, seed=4)
    for name in ("left", "right", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.left, other.left)
    assert not np.array_equal(first.right, other.right)


def test_random_mode_reproduces_the_original_scripts_generator():
    config = SequenceDataConfig(mode="random", num_pairs=40, timesteps=10, features=128)
    pairs = generate_sequence_pairs(config, np.random.default_rng(42))
    rng = np.random.default_rng(42)
    shape = (40, 10, 128)
    np.testing.assert_array_equal(pairs.left, rng.normal(size=shape).astype(np.float32))
    np.testing.assert_array_equal(pairs.right, rng.normal(size=shape).astype(np.float32))
    np.testing.assert_array_equal(pairs.labels, rng.integers(0, 2, size=40))


def test_paraphrase_sequences_have_variable_lengths_padded_only_at_the_end():
    pairs = generate("paraphrase", num_pairs=200, timesteps=10)
    for side in (pairs.left, pairs.right):
        filled = np.any(side != 0, axis=-1)  # (n, timesteps): timestep holds data
        lengths = filled.sum(axis=-1)
        # Padding only at the end: the data timesteps are exactly the first `length` ones.
        expected = np.arange(side.shape[1]) < lengths[:, None]
        np.testing.assert_array_equal(filled, expected)
        assert lengths.min() >= 2  # the shortest sequence the generator makes
        assert np.any(lengths < side.shape[1]), "no sequence is padded"
        assert np.any(lengths == side.shape[1]), "no sequence fills every timestep"
        assert len(np.unique(lengths)) > 2


def test_paraphrase_positives_are_closer_than_negatives():
    """The learnable signal: a positive's right side is a noisy copy of its left side."""
    pairs = generate("paraphrase", num_pairs=200, timesteps=10, features=16, noise=0.3)
    # A positive's right side starts at one of the left side's first MAX_SHIFT + 1 timesteps.
    distance = np.min(
        [np.linalg.norm(pairs.right[:, 0] - pairs.left[:, shift], axis=-1) for shift in range(MAX_SHIFT + 1)],
        axis=0,
    )
    positive = pairs.labels == 1
    assert np.median(distance[positive]) < 0.5 * np.median(distance[~positive])


def test_paraphrase_negatives_are_half_hard_and_positives_change_length():
    pairs = generate("paraphrase", num_pairs=1000, timesteps=10, features=4)
    filled = pairs.left != 0
    # A hard negative's right side holds some of its left side's timesteps exactly.
    same = (pairs.right[:, :, None, :] == pairs.left[:, None, :, :]).all(axis=-1) & filled.any(axis=-1)[:, None, :]
    copied = same.any(axis=(1, 2))
    negative = pairs.labels == 0
    assert abs(copied[negative].mean() - HARD_NEGATIVE_SHARE) < 0.07
    assert not copied[~negative].any(), "a positive is a noisy copy, never an exact one"
    left_lengths = np.any(pairs.left != 0, axis=-1).sum(axis=-1)
    right_lengths = np.any(pairs.right != 0, axis=-1).sum(axis=-1)
    changed = left_lengths[~negative] != right_lengths[~negative]
    assert 0.3 < changed.mean() < 1.0, "shift and stretch change some positives' lengths, not all"


def test_split_label_counts_match_what_split_pairs_gives():
    pairs = generate("paraphrase", num_pairs=123)
    splits = split_pairs(pairs, 0.15, 0.25, np.random.default_rng(0))
    for name, (positives, negatives) in split_label_counts(123, 0.15, 0.25).items():
        labels = getattr(splits, name).labels
        assert (int(labels.sum()), int(len(labels) - labels.sum())) == (positives, negatives)


def test_split_pairs_gives_disjoint_splits_that_add_up():
    pairs = generate("paraphrase", num_pairs=100)
    splits = split_pairs(pairs, 0.2, 0.2, np.random.default_rng(0))
    train, validation, test = row_keys(splits.train), row_keys(splits.validation), row_keys(splits.test)
    assert len(row_keys(pairs)) == 100  # every generated pair is distinct, so keys identify rows
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 100
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == row_keys(pairs)
    assert len(splits.test) == len(splits.validation) == 20  # stratified: 10 of each label
    for split in (splits.train, splits.validation, splits.test):
        assert set(np.unique(split.labels)) == {0.0, 1.0}
        assert np.sum(split.labels == 1) == np.sum(split.labels == 0)


def test_split_pairs_gives_every_split_both_labels_even_when_tiny():
    pairs = generate("random", num_pairs=20, seed=1)
    splits = split_pairs(pairs, 0.05, 0.05, np.random.default_rng(0))
    for split in (splits.train, splits.validation, splits.test):
        assert set(np.unique(split.labels)) == {0.0, 1.0}


def test_split_pairs_without_validation_leaves_it_empty():
    pairs = generate("paraphrase", num_pairs=40)
    splits = split_pairs(pairs, 0.0, 0.25, np.random.default_rng(0))
    assert len(splits.validation) == 0
    assert splits.validation.left.shape == (0, 8, 5)
    assert len(splits.train) + len(splits.test) == 40


def test_split_pairs_is_deterministic_given_the_rng():
    pairs = generate("paraphrase", num_pairs=40)
    first = split_pairs(pairs, 0.2, 0.2, np.random.default_rng(5))
    second = split_pairs(pairs, 0.2, 0.2, np.random.default_rng(5))
    np.testing.assert_array_equal(first.test.left, second.test.left)
    np.testing.assert_array_equal(first.train.labels, second.train.labels)


@pytest.mark.parametrize(
    ("validation", "test", "message"),
    [
        (0.5, 0.45, "data.validation_fraction + data.test_fraction must leave at least 10% for training"),
        (0.2, 0.0, "data.test_fraction must be a number > 0.0 and < 1.0, got 0.0"),
    ],
)
def test_split_pairs_and_label_counts_check_fractions_by_the_config_rule(validation, test, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        split_pairs(generate("random"), validation, test, np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape(message)):
        split_label_counts(60, validation, test)


def test_split_pairs_with_too_few_pairs_of_a_label_raises():
    pairs = generate("paraphrase", num_pairs=20)
    positives, negatives = np.flatnonzero(pairs.labels == 1), np.flatnonzero(pairs.labels == 0)
    skewed = pairs.take(np.concatenate([positives[:2], negatives]))  # 2 positives, 10 negatives
    # Test and validation need one positive each, which would leave none to train on.
    with pytest.raises(ValueError, match=r"only 2 pairs have label 1: too few to split data\.validation_fraction = 0\.2"):
        split_pairs(skewed, 0.2, 0.2, np.random.default_rng(0))
    # Without a validation split it fits: test gets 1 positive + 2 negatives, train the rest.
    splits = split_pairs(skewed, 0.0, 0.2, np.random.default_rng(0))
    assert (len(splits.train), len(splits.test)) == (9, 3)


def test_pair_set_save_and_load_round_trip(tmp_path):
    pairs = generate("paraphrase")
    path = pairs.save(tmp_path / "pairs.npz")
    assert path.exists()
    loaded = PairSet.load(path)
    for name in ("left", "right", "labels"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(pairs, name))
        assert getattr(loaded, name).dtype == np.float32


def test_pair_set_saves_to_exactly_the_path_it_returns(tmp_path):
    """np.savez appends ".npz" to a bare path; save must write where it says it did."""
    pairs = generate("random")
    path = pairs.save(tmp_path / "pairs")
    assert path == tmp_path / "pairs"
    assert path.exists()
    np.testing.assert_array_equal(PairSet.load(path).left, pairs.left)


def test_take_selects_the_same_rows_of_every_array():
    pairs = generate("random")
    subset = pairs.take(np.array([3, 0, 7]))
    np.testing.assert_array_equal(subset.left, pairs.left[[3, 0, 7]])
    np.testing.assert_array_equal(subset.right, pairs.right[[3, 0, 7]])
    np.testing.assert_array_equal(subset.labels, pairs.labels[[3, 0, 7]])
