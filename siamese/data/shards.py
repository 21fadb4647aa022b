"""Pairs on disk in fixed-size shards, streamed with `tf.data`: data larger than memory.

A split is a directory `<name>.shards/` holding, per shard, three `.npy` files (left, right,
labels: plain NumPy arrays, readable by memory mapping) and a `manifest.json` written last, so a
directory without one is an unfinished write. Nothing holds more than a few shards at a time:

- `write_shards` consumes blocks as a generator makes them and writes one shard per block;
- `dataset` reads a shard, cuts it into batches in `tf.data` while the next one is read, then
  drops it; shuffling permutes the shard order and the pairs within each shard, freshly every
  epoch (pairs are independent draws: no wider mixing is needed). Memory stays a few shards
  however large the split: about 120 MiB at 16 MiB shards, measured (BENCHMARKS.md);
- `take` memory-maps only the shards its indices fall in.

`PairShards` answers the pair-data protocol (`siamese.data.pairs.Pairs`: `len`, `labels`, `take`,
`head`, `dataset` for training and prediction, `save`/`load`); only the labels (4 bytes a pair)
are ever read whole.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from siamese.data.pairs import check_batch_size, without_autotuning
from siamese.data.sequences import PairSet

if TYPE_CHECKING:
    import tensorflow as tf

SHARD_BYTES = 16 << 20  # left + right bytes a shard: a stream holds a few shards at once (BENCHMARKS.md)
MANIFEST = "manifest.json"
FORMAT = "siamese-pair-shards"
VERSION = 1
SIDES = ("left", "right", "labels")
_PREFETCH_BATCHES = 2  # a fixed depth: AUTOTUNE may buffer more than memory should hold


class ShardError(ValueError):
    """A shard directory, manifest or shard file that cannot be used; the message names it."""


def pairs_per_shard(item_shape: tuple[int, ...], shard_bytes: int = SHARD_BYTES) -> int:
    """How many float32 pairs of `item_shape` (one side of one pair) fit `shard_bytes`, at least one."""
    pair_bytes = 2 * 4 * math.prod(item_shape)
    return max(1, shard_bytes // pair_bytes)


class PairShards:
    """A split of float32 pairs stored as shards under `path` (see the module docstring).

    Build one with `write_shards` or `PairShards.load`; the arrays stay on disk.
    """

    suffix: ClassVar[str] = ".shards"

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.item_shape: tuple[int, ...] = tuple(manifest["item_shape"])
        self.shard_sizes: tuple[int, ...] = tuple(manifest["shard_sizes"])
        self.positive_pairs: int = manifest["positive_pairs"]
        # Pairs with an all-zero (padded) timestep, counted while writing; None in older manifests.
        self.padded_pairs: int | None = manifest.get("padded_pairs")
        self.metadata: dict[str, Any] = manifest.get("metadata", {})
        self._offsets = np.concatenate([[0], np.cumsum(self.shard_sizes, dtype=np.int64)])
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        return f"PairShards({str(self.path)!r}, {len(self)} pairs of {self.item_shape} in {len(self.shard_sizes)} shards)"

    @property
    def labels(self) -> np.ndarray:
        """Every pair's label, `(n,)` float32, read once (4 bytes a pair)."""
        if self._labels is None:
            parts = [self._read(index, "labels") for index in range(len(self.shard_sizes))]
            self._labels = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return self._labels

    def pairs_with_timestep_equal_to(self, value: float) -> int | None:
        """`PairSet.pairs_with_timestep_equal_to` from the manifest: known for zero-padding only.

        None (unknown) for another value or a manifest written before the count was kept: the
        shards are never read whole to find out.
        """
        return self.padded_pairs if value == 0 else None

    def shard(self, index: int) -> PairSet:
        """Shard `index` read into memory."""
        return PairSet(*(self._read(index, side) for side in SIDES))

    def take(self, indices: np.ndarray | slice) -> PairSet:
        """The pairs at `indices` (or a slice), in that order, read from the shards they fall in only."""
        size = len(self)
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(size), dtype=np.int64)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and not (-size <= indices.min() and indices.max() < size):
            raise IndexError(f"indices {indices.min()}..{indices.max()} are out of range for {size} pairs in {self.path}")
        indices = np.where(indices < 0, indices + size, indices)
        taken = PairSet(
            np.empty((len(indices), *self.item_shape), np.float32),
            np.empty((len(indices), *self.item_shape), np.float32),
            np.empty(len(indices), np.float32),
        )
        shard_of = np.searchsorted(self._offsets, indices, side="right") - 1
        for index in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == index)
            local = indices[rows] - self._offsets[index]
            for side in SIDES:
                # Memory-mapped: only the pages of the rows asked for are read.
                getattr(taken, side)[rows] = self._read(index, side, mmap=True)[local]
        return taken

    def head(self, count: int) -> PairSet:
        """The first `count` pairs read into memory (from the first shards only)."""
        return self.take(slice(0, count))

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None) -> tf.data.Dataset:
        """Batches `({"left": (b, *item_shape), "right": ...}, labels (b,))` of every pair once per epoch.

        A shard is read whole (sequential reads, one NumPy call a file), handed to `tf.data` and
        cut into batches there (`rebatch`: batches run across shard boundaries, only the last is
        smaller) while the next shard is read, so memory holds a few shards. Python runs once a
        shard, not once a batch. In order unless `shuffle`; shuffled, each
        pass over the dataset (each Keras epoch) draws a new shard order and a new order within
        every shard from `seed` and the pass's number, so runs repeat exactly and epochs differ.
        The dataset knows its length in batches (Keras shows steps per epoch). Its sizes are
        fixed, so it runs without `tf.data`'s autotuning unless `autotune`.

        Raises:
            ValueError: `batch_size` is not a positive integer.
            tf.errors.OpError (while iterating): a shard file is missing or damaged; the message
                names it.
        """
        import tensorflow as tf  # here, so that generating and writing shards does not load TensorFlow

        check_batch_size(batch_size)
        passes = itertools.count()

        def plan() -> Iterator[tuple[int, int]]:
            """(shard, seed of its order within) per shard, for one pass: numbers, not data."""
            if not shuffle:
                yield from ((index, -1) for index in range(len(self.shard_sizes)))
                return
            rng = np.random.default_rng([seed, next(passes)])
            for index in rng.permutation(len(self.shard_sizes)):
                yield int(index), int(rng.integers(2**62))

        def read(index: np.int64, order_seed: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            arrays = tuple(self._read(int(index), side) for side in SIDES)  # sequential reads: fast on any disk
            if order_seed >= 0:
                # In place, not a permuted copy (one shard less in memory): generators seeded alike
                # make the same swaps on arrays of one length, so pairs stay together.
                for array in arrays:
                    np.random.default_rng(int(order_seed)).shuffle(array)
            return arrays

        def to_tensors(index: tf.Tensor, order_seed: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
            left, right, labels = tf.numpy_function(read, [index, order_seed], [tf.float32] * 3, stateful=False)
            for tensor, shape in ((left, self.item_shape), (right, self.item_shape), (labels, ())):
                tensor.set_shape((None, *shape))  # numpy_function forgets shapes; the model needs them
            return {"left": left, "right": right}, labels

        shards = tf.data.Dataset.from_generator(
            plan, output_signature=(tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64))
        )
        batches = shards.map(to_tensors).prefetch(1).rebatch(batch_size)
        batches = batches.apply(tf.data.experimental.assert_cardinality(math.ceil(len(self) / batch_size)))
        batches = batches.prefetch(_PREFETCH_BATCHES)
        return batches if autotune else without_autotuning(batches)

    def save(self, path: Path) -> Path:
        """Copy the shards to `path` (a `.shards` directory); nothing to do when they are there already."""
        path = Path(path)
        if path.resolve() != self.path.resolve():
            _replace_directory(path, lambda partial: shutil.copytree(self.path, partial))
        return path

    @classmethod
    def load(cls, path: Path) -> PairShards:
        """Open a directory written by `write_shards`; reads the manifest, checks every shard file exists.

        Raises:
            ShardError: no such directory, no or a damaged manifest, or a missing shard file.
        """
        path = Path(path)
        manifest_path = path / MANIFEST
        if not path.is_dir():
            raise ShardError(f"{path}: no such shard directory")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ShardError(f"{manifest_path}: missing, so the shards were never completely written; generate the data again") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ShardError(f"{manifest_path}: cannot be read ({error}); generate the data again") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ShardError(f"{manifest_path}: not a {FORMAT} version {VERSION} manifest")
        try:
            shards = cls(path, manifest)
        except (KeyError, TypeError, ValueError) as error:
            raise ShardError(f"{manifest_path}: damaged ({type(error).__name__}: {error}); generate the data again") from None
        for index in range(len(shards.shard_sizes)):
            for side in SIDES:
                if not shards._file(index, side).is_file():
                    raise ShardError(f"{shards._file(index, side)}: missing shard file ({len(shards.shard_sizes)} shards expected)")
        return shards

    def _file(self, index: int, side: str) -> Path:
        return self.path / _file_name(index, side)

    def _read(self, index: int, side: str, mmap: bool = False) -> np.ndarray:
        file = self._file(index, side)
        try:
            array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise ShardError(f"{file}: cannot read shard {index} ({error}); generate the data again") from None
        expected = (self.shard_sizes[index],) + (() if side == "labels" else self.item_shape)
        if array.shape != expected or array.dtype != np.float32:
            raise ShardError(f"{file}: holds {array.dtype} {array.shape}, the manifest says float32 {expected}")
        return array


def write_shards(
    blocks: Iterable[PairSet], path: Path, item_shape: tuple[int, ...], metadata: dict[str, Any] | None = None
) -> PairShards:
    """Write each block, as it comes, as one shard of `path` (a `<name>.shards` directory).

    Blocks are consumed one at a time, so a generator of blocks is written without ever being
    held. Everything goes to a `.partial` directory first, the manifest last, which then replaces
    `path`: an interrupted write leaves no directory that looks complete.

    Args:
        blocks: float32 pairs whose left and right are `(n, *item_shape)`; labels `(n,)`.
        path: the directory to write; an earlier shard directory there is replaced.
        item_shape: one side of one pair, e.g. `(timesteps, features)`.
        metadata: recorded in the manifest (what generated the pairs, the seed).

    Raises:
        ValueError: a block of another shape or dtype.
        ShardError: `path` exists and is not a shard directory.
    """
    path = Path(path)
    item_shape = tuple(int(size) for size in item_shape)

    def write(partial: Path) -> None:
        partial.mkdir(parents=True)
        sizes, positives, padded = [], 0, 0
        for index, block in enumerate(blocks):
            for side in SIDES:
                array = getattr(block, side)
                expected = (len(block),) + (() if side == "labels" else item_shape)
                if array.shape != expected or array.dtype != np.float32:
                    raise ValueError(f"block {index} of {path.name}: {side} is {array.dtype} {array.shape}, expected float32 {expected}")
                np.save(partial / _file_name(index, side), array, allow_pickle=False)
            sizes.append(len(block))
            positives += int(np.count_nonzero(block.labels == 1))
            padded += block.pairs_with_timestep_equal_to(0.0) or 0
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "pairs": sum(sizes),
            "positive_pairs": positives,
            "padded_pairs": padded if len(item_shape) == 2 else None,
            "item_shape": list(item_shape),
            "dtype": "float32",
            "shard_sizes": sizes,
            "metadata": metadata or {},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    _replace_directory(path, write)
    return PairShards.load(path)


def _file_name(index: int, side: str) -> str:
    return f"shard-{index:05d}.{side}.npy"


def _replace_directory(path: Path, fill: Callable[[Path], object]) -> None:
    """Build `path` beside it with `fill(partial)`, then swap it in (an old shard directory is removed)."""
    if path.exists() and not (path / MANIFEST).is_file() and any(path.iterdir()):
        raise ShardError(f"{path}: exists and is not a shard directory (no {MANIFEST}); not replacing it")
    partial = path.with_name(f"{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        fill(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(partial, path)
