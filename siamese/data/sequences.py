"""Generated sequence pairs in the reference model's shape `(num_pairs, timesteps, features)`.

Two modes. `random` reproduces the original script: independent random normal sequences and
random labels, so there is nothing to learn. `paraphrase` has a learnable signal: a positive
pair's right side is a perturbed copy of its left side (noise, a small time shift, a stretch, a
different length); a negative is either an unrelated sequence or a hard one that copies part of
the left side. Sequences have different lengths and are zero-padded at the end, which the
model masks (the reference input is `(None, features)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from siamese.config import DataMode, SequenceDataConfig

MAX_SHIFT = 2  # leading timesteps a positive's right side may drop
STRETCH_RANGE = (0.8, 1.25)  # time-stretch factors of a positive's right side
OVERLAP_RANGE = (0.3, 0.6)  # share of the left side a hard negative copies
HARD_NEGATIVE_SHARE = 0.5


@dataclass(frozen=True)
class PairSet:
    """Left and right inputs held in memory, with one label per pair.

    Sequences: left and right `(n, timesteps, features)` float32, zero-padded at the end.
    Images: `(n, height, width, channels)` uint8 pixels. Labels `(n,)` float32: 0/1, or a
    number for regression.
    """

    left: np.ndarray
    right: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self) -> dict[str, np.ndarray]:
        """The model's inputs, keyed by input name."""
        return {"left": self.left, "right": self.right}

    def take(self, indices: np.ndarray) -> PairSet:
        return PairSet(self.left[indices], self.right[indices], self.labels[indices])

    def save(self, path: Path) -> Path:
        # Through a file object: np.savez would append ".npz" to a bare path and return a lie.
        with open(path, "wb") as file:
            np.savez(file, left=self.left, right=self.right, labels=self.labels)
        return path

    @classmethod
    def load(cls, path: Path) -> PairSet:
        with np.load(path) as arrays:
            return cls(arrays["left"], arrays["right"], arrays["labels"])


Pairs = TypeVar("Pairs")  # PairSet, or ImagePairFiles for image files


@dataclass(frozen=True)
class PairSplits(Generic[Pairs]):
    """Disjoint train, validation and test pairs of one kind."""

    train: Pairs
    validation: Pairs
    test: Pairs


def generate_sequence_pairs(config: SequenceDataConfig, rng: np.random.Generator) -> PairSet:
    """Generate `config.num_pairs` pairs in `config.mode`, deterministic given `rng`'s seed."""
    if config.mode is DataMode.RANDOM:
        return _random_pairs(config, rng)
    return _paraphrase_pairs(config, rng)


def split_pairs(
    pairs: Pairs, validation_fraction: float, test_fraction: float, rng: np.random.Generator, stratify: bool = True
) -> PairSplits[Pairs]:
    """Split into disjoint train/validation/test sets, stratified by label unless told otherwise.

    Works for any pair collection with `labels` and `take` (sequence pairs, image arrays, image
    files). Stratified, each split with a non-zero fraction gets at least one pair of each label,
    so AUC is defined; numeric targets (regression) are split without stratifying.

    Raises:
        ValueError: a label (or, unstratified, the whole set) has too few pairs to give every
            split one.
    """
    chosen: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    groups = [np.flatnonzero(pairs.labels == label) for label in np.unique(pairs.labels)] if stratify else [np.arange(len(pairs))]
    for group in groups:
        indices = rng.permutation(group)
        num_test = max(1, round(len(indices) * test_fraction))
        num_validation = max(1, round(len(indices) * validation_fraction)) if validation_fraction else 0
        if num_test + num_validation >= len(indices):
            which = f"have label {pairs.labels[group[0]]:g}" if stratify else "are given"
            raise ValueError(
                f"only {len(indices)} pairs {which}: too few to split "
                f"{validation_fraction=} and {test_fraction=}; use more pairs"
            )
        chosen["test"].append(indices[:num_test])
        chosen["validation"].append(indices[num_test : num_test + num_validation])
        chosen["train"].append(indices[num_test + num_validation :])
    splits = {name: pairs.take(rng.permutation(np.concatenate(parts))) for name, parts in chosen.items()}
    return PairSplits(**splits)


def _random_pairs(config: SequenceDataConfig, rng: np.random.Generator) -> PairSet:
    shape = (config.num_pairs, config.timesteps, config.features)
    left = rng.normal(size=shape).astype(np.float32)
    right = rng.normal(size=shape).astype(np.float32)
    labels = rng.integers(0, 2, size=config.num_pairs).astype(np.float32)
    return PairSet(left, right, labels)


def _paraphrase_pairs(config: SequenceDataConfig, rng: np.random.Generator) -> PairSet:
    n, timesteps, features = config.num_pairs, config.timesteps, config.features
    labels = rng.permutation(np.arange(n) < n // 2).astype(np.float32)
    left = np.zeros((n, timesteps, features), np.float32)
    right = np.zeros_like(left)
    for i, positive in enumerate(labels):
        base = _random_sequence(timesteps, features, rng)
        if positive:
            other = _perturbed_copy(base, timesteps, config.noise, rng)
        elif rng.random() < HARD_NEGATIVE_SHARE:
            other = _partial_overlap(base, timesteps, features, rng)
        else:
            other = _random_sequence(timesteps, features, rng)
        left[i, : len(base)] = base
        right[i, : len(other)] = other
    return PairSet(left, right, labels)


def _random_sequence(timesteps: int, features: int, rng: np.random.Generator) -> np.ndarray:
    length = rng.integers(timesteps // 2, timesteps + 1)
    return rng.standard_normal((length, features), dtype=np.float32)


def _perturbed_copy(base: np.ndarray, timesteps: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Shift, stretch (nearest-neighbour resampling) and add noise: same content, new length."""
    shifted = base[rng.integers(0, min(MAX_SHIFT, len(base) - 2) + 1) :]  # keep two timesteps
    length = int(np.clip(round(len(shifted) * rng.uniform(*STRETCH_RANGE)), 2, timesteps))
    stretched = shifted[np.round(np.linspace(0, len(shifted) - 1, length)).astype(int)]
    return stretched + rng.normal(scale=noise, size=stretched.shape).astype(np.float32)


def _partial_overlap(base: np.ndarray, timesteps: int, features: int, rng: np.random.Generator) -> np.ndarray:
    """A fresh sequence with a run of the left side's timesteps pasted in: a hard negative."""
    other = _random_sequence(timesteps, features, rng)
    overlap = max(1, min(len(other) - 1, round(len(base) * rng.uniform(*OVERLAP_RANGE))))
    source = rng.integers(0, len(base) - overlap + 1)
    target = rng.integers(0, len(other) - overlap + 1)
    other[target : target + overlap] = base[source : source + overlap]
    return other
