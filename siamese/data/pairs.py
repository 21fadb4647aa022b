"""The pair-data protocol: what every container of labelled pairs answers, whatever holds them.

Four containers hold pairs: `PairSet` (arrays in memory), `PairShards` (arrays in shards on
disk, larger than memory), `ImagePairFiles` (image files decoded as they are read) and
`TextPairs` (raw strings). Training, prediction, previews and the pipeline's steps use them only
through `Pairs`, so none of them asks which kind it holds:

- `len(pairs)` and `pairs.labels`, one label per pair;
- `pairs.take(indices)`: a subset; `pairs.head(count)`: the first pairs in memory as arrays
  (for previews, sharing probes and input examples);
- `pairs.dataset(batch_size, shuffle, seed)`: a `tf.data` view of `({"left", "right"}, labels)`
  batches, for `keras.Model.fit` and `predict`;
- `pairs.pairs_with_timestep_equal_to(value)`: what a `Masking(value)` layer would mask;
- `pairs.save(path)` to a file of the class's `suffix`, read back by the class's `load`.

Here too: the split names, the splits of one kind (`PairSplits`), and the one check of split
fractions that the config and every splitter call.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

    from siamese.data.sequences import PairSet
    from siamese.data.text_pairs import TextPairs

SPLIT_NAMES = ("train", "validation", "test")
MIN_TRAIN_SHARE = 0.1  # the fractions must leave at least this share of the pairs for training
_FRACTION_TOLERANCE = 1e-9  # 0.6 + 0.3 is 0.8999...: sums within float noise of the limit pass

P = TypeVar("P")


@runtime_checkable
class Pairs(Protocol):
    """Labelled pairs, wherever they are held (see the module docstring).

    Besides these members each container class has a `load(path)` class method that reads what
    `save` wrote (`ImagePairFiles.load` also takes the size the images are read at).
    """

    suffix: ClassVar[str]  # what `save` writes: ".npz", ".shards", ".csv", ".parquet"

    def __len__(self) -> int: ...

    @property
    def labels(self) -> np.ndarray:
        """One label per pair, `(n,)` float32: 0/1, or a number for regression."""
        ...

    def take(self, indices: np.ndarray | slice) -> Pairs:
        """The pairs at `indices`, in that order: the same kind of container (shards: read into a `PairSet`)."""
        ...

    def head(self, count: int) -> PairSet | TextPairs:
        """The first `count` pairs in memory as the model takes them (images: decoded uint8 pixels)."""
        ...

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None) -> tf.data.Dataset:
        """Batches `({"left": ..., "right": ...}, labels)` of every pair once per pass, the last one smaller.

        In order unless `shuffle`; shuffled, each pass (each Keras epoch) takes a new order drawn
        from `seed`, so runs repeat exactly. `autotune` turns `tf.data`'s autotuning on or off;
        None leaves the container's own choice (`without_autotuning`).
        """
        ...

    def pairs_with_timestep_equal_to(self, value: float) -> int | None:
        """How many pairs have a timestep whose features all equal `value`; None when not known or not sequences."""
        ...

    def save(self, path: Path) -> Path:
        """Write the pairs to `path` (a file or directory of `suffix`); returns `path`."""
        ...


@dataclass(frozen=True)
class PairSplits(Generic[P]):
    """Disjoint train, validation and test pairs of one kind (`SPLIT_NAMES`)."""

    train: P
    validation: P
    test: P


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Check the split fractions: validation in [0, 1), test in (0, 1), at least 10% left to train.

    The one rule, called where the config is built and by every function that splits pairs.

    Raises:
        ValueError: a fraction is not a finite number in its range, or the two leave less than
            `MIN_TRAIN_SHARE` for training; the message names the config keys.
    """
    for key, value, above_zero in (
        ("data.validation_fraction", validation_fraction, False),
        ("data.test_fraction", test_fraction, True),
    ):
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not (is_number and (value > 0 if above_zero else value >= 0) and value < 1):
            raise ValueError(f"{key} must be a number {'>' if above_zero else '>='} 0.0 and < 1.0, got {value!r}")
    if validation_fraction + test_fraction > 1 - MIN_TRAIN_SHARE + _FRACTION_TOLERANCE:
        raise ValueError(
            f"data.validation_fraction + data.test_fraction must leave at least {MIN_TRAIN_SHARE:.0%} for "
            f"training, got {validation_fraction} + {test_fraction}"
        )


def check_batch_size(batch_size: int) -> None:
    """Raises ValueError unless `batch_size` is an integer >= 1 (what every `dataset` takes)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def array_dataset(
    inputs: dict[str, np.ndarray], labels: np.ndarray, batch_size: int, shuffle: bool, seed: int, autotune: bool | None
) -> tf.data.Dataset:
    """`Pairs.dataset` of arrays in memory: sliced, reshuffled each pass from `seed` (the orders repeat exactly).

    Slicing, not a gather function: Keras makes a new iterator at least once an epoch, and an
    iterator over slices starts in well under a millisecond, one with a gather function in
    several (BENCHMARKS.md, "Training throughput"). The shuffle buffer holds one copy of the
    arrays. Autotuning is off unless `autotune` (`without_autotuning`).
    """
    import tensorflow as tf  # here: only building a dataset needs it

    check_batch_size(batch_size)
    pairs = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle:
        pairs = pairs.shuffle(max(1, len(labels)), seed=seed, reshuffle_each_iteration=True)
    batches = pairs.batch(batch_size).prefetch(1)
    return batches if autotune else without_autotuning(batches)


def without_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with `tf.data`'s autotuning off: for pipelines whose sizes are all fixed.

    Autotuning keeps optimising the pipeline on background threads while it runs. On a small
    CPU machine those threads compete with training for the same cores: turning it off made
    training on pairs in memory 1.25-1.4x faster on 2 cores (BENCHMARKS.md). A pipeline that
    only slices or reads, batches and prefetches a fixed number of batches has nothing to tune;
    arrays in memory and shards therefore run without it unless asked (`autotune=True`).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
