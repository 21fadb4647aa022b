"""Generated sequence pairs in the reference model's shape `(num_pairs, timesteps, features)`.

Two modes. `random` reproduces the original script: independent random normal sequences and
random labels, so there is nothing to learn (generated split by split, the random labels are
balanced per split, as a stratified split would leave them). `paraphrase` has a learnable signal: a positive
pair's right side is a perturbed copy of its left side (noise, a small time shift, a stretch, a
different length); a negative is either an unrelated sequence or a hard one that copies part of
the left side. Sequences have different lengths and are zero-padded at the end, which the
model masks (the reference input is `(None, features)`).

Pairs are generated a block at a time with array operations, never one pair at a time, so that
`generate_sequence_splits` can stream 10^7 pairs to disk in minutes: each split is a lazy
sequence of blocks, and nothing ever holds a whole split (see `siamese.data.shards`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from siamese.config import DataMode, SequenceDataConfig
from siamese.data.pairs import SPLIT_NAMES, Pairs, PairSplits, array_dataset, check_fractions

if TYPE_CHECKING:
    import tensorflow as tf

MAX_SHIFT = 2  # leading timesteps a positive's right side may drop
STRETCH_RANGE = (0.8, 1.25)  # time-stretch factors of a positive's right side
OVERLAP_RANGE = (0.3, 0.6)  # share of the left side a hard negative copies
HARD_NEGATIVE_SHARE = 0.5
_MASK_CHECK_ROWS = 4096  # pairs compared at a time when looking for masked timesteps: bounded memory


@dataclass(frozen=True)
class PairSet:
    """Left and right inputs held in memory, with one label per pair.

    Sequences: left and right `(n, timesteps, features)` float32, zero-padded at the end.
    Images: `(n, height, width, channels)` uint8 pixels. Labels `(n,)` float32: 0/1, or a
    number for regression. One of the containers of the pair-data protocol (`siamese.data.pairs`).
    """

    left: np.ndarray
    right: np.ndarray
    labels: np.ndarray

    suffix: ClassVar[str] = ".npz"

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self) -> dict[str, np.ndarray]:
        """The model's inputs, keyed by input name."""
        return {"left": self.left, "right": self.right}

    def take(self, indices: np.ndarray | slice) -> PairSet:
        return PairSet(self.left[indices], self.right[indices], self.labels[indices])

    def head(self, count: int) -> PairSet:
        """The first `count` pairs (already in memory)."""
        return self.take(slice(0, count))

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None) -> tf.data.Dataset:
        """`Pairs.dataset`: the arrays sliced into batches, autotuning off unless `autotune` (`array_dataset`)."""
        return array_dataset(self.inputs(), self.labels, batch_size, shuffle, seed, autotune)

    def pairs_with_timestep_equal_to(self, value: float) -> int | None:
        """How many pairs have a timestep whose features all equal `value` on either side.

        What a `Masking(value)` layer would mask: zero-padding at `value=0`. None for inputs
        that are not `(n, timesteps, features)` sequences. Read in chunks of `_MASK_CHECK_ROWS`
        pairs, so the check holds a bounded amount of memory.
        """
        if self.left.ndim != 3 or self.right.ndim != 3:
            return None
        found = 0
        for start in range(0, len(self), _MASK_CHECK_ROWS):
            rows = slice(start, start + _MASK_CHECK_ROWS)
            masked = [np.all(side[rows] == value, axis=-1).any(axis=-1) for side in (self.left, self.right)]
            found += int(np.count_nonzero(masked[0] | masked[1]))
        return found

    def save(self, path: Path) -> Path:
        # Through a file object: np.savez would append ".npz" to a bare path and return a lie.
        with open(path, "wb") as file:
            np.savez(file, left=self.left, right=self.right, labels=self.labels)
        return path

    @classmethod
    def load(cls, path: Path) -> PairSet:
        with np.load(path) as arrays:
            return cls(arrays["left"], arrays["right"], arrays["labels"])

    @classmethod
    def concatenate(cls, parts: list[PairSet], item_shape: tuple[int, ...]) -> PairSet:
        """One set of all `parts`, in order; `item_shape` (one side of one pair) shapes an empty result."""
        if not parts:
            empty = np.zeros((0, *item_shape), np.float32)
            return cls(empty, empty.copy(), np.zeros(0, np.float32))
        return cls(*(np.concatenate([getattr(part, side) for part in parts]) for side in ("left", "right", "labels")))


PairsT = TypeVar("PairsT", bound=Pairs)


def generate_sequence_pairs(config: SequenceDataConfig, rng: np.random.Generator) -> PairSet:
    """Generate `config.num_pairs` pairs in `config.mode`, deterministic given `rng`'s seed.

    All in memory: for tests and small experiments. Runs use `generate_sequence_splits`.
    """
    if config.mode is DataMode.RANDOM:
        return _random_pairs(config, rng)
    n = config.num_pairs
    labels = rng.permutation(np.arange(n) < n // 2).astype(np.float32)
    return _paraphrase_block(labels, config.timesteps, config.features, config.noise, rng)


def generate_sequence_splits(
    config: SequenceDataConfig, rng: np.random.Generator, block_pairs: int
) -> PairSplits[Iterator[PairSet]]:
    """Each split's pairs as a lazy sequence of blocks of at most `block_pairs` pairs.

    Generated pairs are independent draws, so generating each split's share directly is a split
    without leakage, and no split (nor the whole set) is ever held: a block is made when the
    consumer asks for it. Labels are stratified as `split_pairs` would: per label, the test and
    validation splits get `round(count * fraction)` pairs (at least one), train the rest. Every
    block is balanced like its split (in `random` mode too: the labels stay unrelated to the
    sequences) and its order shuffled. Each split and each block draws from its own child of
    `rng` (`Generator.spawn`), so the result is deterministic given `rng`'s seed and `block_pairs`.

    Raises:
        ValueError: too few pairs of a label to give every split one.
    """
    if isinstance(block_pairs, bool) or not isinstance(block_pairs, int) or block_pairs < 1:
        raise ValueError(f"block_pairs must be an integer >= 1, got {block_pairs!r}")
    counts = split_label_counts(config.num_pairs, config.validation_fraction, config.test_fraction)
    split_rngs = rng.spawn(len(SPLIT_NAMES))
    return PairSplits(
        **{
            name: _blocks(config, *counts[name], block_pairs, split_rng)
            for name, split_rng in zip(SPLIT_NAMES, split_rngs)
        }
    )


def split_label_counts(num_pairs: int, validation_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """(positives, negatives) per split of `num_pairs` balanced pairs, stratified as `split_pairs` does.

    Raises:
        ValueError: the fractions are out of range (`check_fractions`), or a label has too few
            pairs to give every split with a non-zero fraction one.
    """
    check_fractions(validation_fraction, test_fraction)
    counts: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for label, count in ((1, num_pairs // 2), (0, num_pairs - num_pairs // 2)):
        num_test = max(1, round(count * test_fraction))
        num_validation = max(1, round(count * validation_fraction)) if validation_fraction else 0
        if num_test + num_validation >= count:
            raise ValueError(
                f"only {count} pairs have label {label}: too few to split "
                f"{_fractions_named(validation_fraction, test_fraction)}; use more pairs (data.num_pairs)"
            )
        counts["test"].append(num_test)
        counts["validation"].append(num_validation)
        counts["train"].append(count - num_test - num_validation)
    return {name: (positives, negatives) for name, (positives, negatives) in counts.items()}


def split_pairs(
    pairs: PairsT, validation_fraction: float, test_fraction: float, rng: np.random.Generator, stratify: bool = True
) -> PairSplits[PairsT]:
    """Split into disjoint train/validation/test sets, stratified by label unless told otherwise.

    Works for any `Pairs` whose `take` keeps their kind (sequence pairs, image arrays, image
    files). Stratified, each split with a non-zero fraction gets at least one pair of each label,
    so AUC is defined; numeric targets (regression) are split without stratifying.

    Raises:
        ValueError: the fractions are out of range (`check_fractions`), or a label (or,
            unstratified, the whole set) has too few pairs to give every split one.
    """
    check_fractions(validation_fraction, test_fraction)
    chosen: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
    groups = [np.flatnonzero(pairs.labels == label) for label in np.unique(pairs.labels)] if stratify else [np.arange(len(pairs))]
    for group in groups:
        indices = rng.permutation(group)
        num_test = max(1, round(len(indices) * test_fraction))
        num_validation = max(1, round(len(indices) * validation_fraction)) if validation_fraction else 0
        if num_test + num_validation >= len(indices):
            which = f"have label {pairs.labels[group[0]]:g}" if stratify else "are given"
            raise ValueError(
                f"only {len(indices)} pairs {which}: too few to split "
                f"{_fractions_named(validation_fraction, test_fraction)}; use more pairs"
            )
        chosen["test"].append(indices[:num_test])
        chosen["validation"].append(indices[num_test : num_test + num_validation])
        chosen["train"].append(indices[num_test + num_validation :])
    splits = {name: pairs.take(rng.permutation(np.concatenate(parts))) for name, parts in chosen.items()}
    return PairSplits(**splits)


def _fractions_named(validation_fraction: float, test_fraction: float) -> str:
    return f"data.validation_fraction = {validation_fraction} and data.test_fraction = {test_fraction}"


def _blocks(
    config: SequenceDataConfig, positives: int, negatives: int, block_pairs: int, rng: np.random.Generator
) -> Iterator[PairSet]:
    total = positives + negatives
    for start in range(0, total, block_pairs):
        stop = min(start + block_pairs, total)
        # Positives up to a pair index grow in proportion: every block is balanced like the split.
        block_positives = stop * positives // total - start * positives // total
        (block_rng,) = rng.spawn(1)
        labels = block_rng.permutation(np.arange(stop - start) < block_positives).astype(np.float32)
        if config.mode is DataMode.RANDOM:
            shape = (len(labels), config.timesteps, config.features)
            yield PairSet(block_rng.standard_normal(shape, np.float32), block_rng.standard_normal(shape, np.float32), labels)
        else:
            yield _paraphrase_block(labels, config.timesteps, config.features, config.noise, block_rng)


def _random_pairs(config: SequenceDataConfig, rng: np.random.Generator) -> PairSet:
    shape = (config.num_pairs, config.timesteps, config.features)
    left = rng.normal(size=shape).astype(np.float32)
    right = rng.normal(size=shape).astype(np.float32)
    labels = rng.integers(0, 2, size=config.num_pairs).astype(np.float32)
    return PairSet(left, right, labels)


def _paraphrase_block(labels: np.ndarray, timesteps: int, features: int, noise: float, rng: np.random.Generator) -> PairSet:
    """One pair per label: positives a perturbed copy of their left side, negatives unrelated or partly copied.

    Index arithmetic on `(n, timesteps)` arrays says where each right timestep comes from; the
    `(n, timesteps, features)` values are then made in a few whole-array passes. Random normals
    are drawn only for timesteps that hold data: drawing them is most of the cost.
    """
    count = len(labels)
    positive = labels == 1
    steps = np.arange(timesteps)
    lengths = _random_lengths(count, timesteps, rng)
    left = _random_sequences(lengths, timesteps, features, rng)

    # Positives: drop up to MAX_SHIFT leading timesteps (keeping two), stretch by nearest-neighbour
    # resampling: copy timestep j reads round(j * (L - 1) / (M - 1)), as np.linspace(0, L - 1, M).
    shifts = rng.integers(0, np.minimum(MAX_SHIFT, lengths - 2) + 1)
    shifted = lengths - shifts
    stretched = np.clip(np.round(shifted * rng.uniform(*STRETCH_RANGE, size=count)), 2, timesteps).astype(np.int64)
    positive_sources = shifts[:, None] + np.round(steps * ((shifted - 1) / (stretched - 1))[:, None]).astype(np.int64)

    # Negatives: a fresh sequence; in hard ones a run of the left side's timesteps is pasted in.
    fresh = _random_lengths(count, timesteps, rng)
    hard = rng.random(count) < HARD_NEGATIVE_SHARE
    overlaps = np.round(lengths * rng.uniform(*OVERLAP_RANGE, size=count)).astype(np.int64)
    overlaps = np.maximum(1, np.minimum(fresh - 1, overlaps))
    left_starts = rng.integers(0, lengths - overlaps + 1)
    right_starts = rng.integers(0, fresh - overlaps + 1)
    pasted = hard[:, None] & (steps >= right_starts[:, None]) & (steps < (right_starts + overlaps)[:, None])

    copies = np.where(positive[:, None], steps < stretched[:, None], pasted)  # right timesteps read from the left side
    sources = np.where(positive[:, None], positive_sources, left_starts[:, None] + steps - right_starts[:, None])
    copied = np.take_along_axis(left, np.clip(sources, 0, timesteps - 1)[..., None], axis=1)
    copied *= copies[..., None]
    # The right side's own normals: noise on a positive's copy, a negative's content except where pasted.
    right = _random_sequences(np.where(positive, stretched, fresh), timesteps, features, rng)
    right *= (np.where(positive, noise, 1.0)[:, None] * ~(copies & ~positive[:, None])).astype(np.float32)[..., None]
    right += copied
    return PairSet(left, right, labels)


def _random_lengths(count: int, timesteps: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(timesteps // 2, timesteps + 1, size=count)


def _random_sequences(lengths: np.ndarray, timesteps: int, features: int, rng: np.random.Generator) -> np.ndarray:
    """Standard normal timesteps up to each length, zeros after (the padding)."""
    sequences = np.zeros((len(lengths), timesteps, features), np.float32)
    filled = np.arange(timesteps) < lengths[:, None]
    sequences[filled] = rng.standard_normal((int(filled.sum()), features), np.float32)
    return sequences
