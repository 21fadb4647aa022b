"""One entry point from a run's data config to train/validation/test pairs, whatever the source.

Generated sequence pairs are written as shards (`.shards` directories) while they are generated
and streamed with `tf.data` during training, so they may exceed memory; generated stereo pairs
are held in memory and written as `.npz`; image files stay on disk and their splits are pair
tables (`.csv`) streamed with `tf.data` during training; text pairs from a file are written as
`.parquet`. `load_split` reads any of them back.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path

import numpy as np

from siamese.config import ImageDataConfig, ImageSource, SequenceDataConfig, Task, TextFileDataConfig
from siamese.data.image_pairs import ImagePairFiles, pairs_from_class_folders, read_pair_csv
from siamese.data.sequences import SPLIT_NAMES, PairSet, PairSplits, generate_sequence_splits, split_pairs
from siamese.data.shards import PairShards, pairs_per_shard, write_shards
from siamese.data.stereo import generate_stereo_pairs
from siamese.data.tables import PairFileError
from siamese.data.text_pairs import LoadedPairs, TextPairs, load_text_pairs, split_text_pairs

Pairs = PairSet | PairShards | ImagePairFiles | TextPairs  # arrays, shards on disk, image files read as needed, or raw text

_SPLIT_SUFFIXES = {PairSet: ".npz", PairShards: ".shards", ImagePairFiles: ".csv", TextPairs: ".parquet"}


def prepare_splits(
    data: SequenceDataConfig | ImageDataConfig, rng: np.random.Generator, directory: Path | None = None
) -> PairSplits[Pairs]:
    """Generate or load the pairs `data` describes and split them without leakage.

    Generated sequence pairs are generated split by split, a shard at a time, and written to
    `directory` as `train.shards`, `validation.shards` and `test.shards` as they are made, so
    no split is ever held in memory; without a `directory` the very same pairs are returned in
    memory (tests, small experiments). Other sources ignore `directory`.

    Raises:
        ImageDataError: an image file, folder or pair table cannot be used (the message names it).
        ValueError: too few pairs to give every split both labels.
    """
    if isinstance(data, SequenceDataConfig):
        return _sequence_splits(data, rng, directory)
    if data.source is ImageSource.FOLDER:
        return pairs_from_class_folders(
            data.path,
            num_pairs=data.num_pairs,
            split_by=data.split_by,
            validation_fraction=data.validation_fraction,
            test_fraction=data.test_fraction,
            rng=rng,
        )
    if data.source is ImageSource.CSV:
        pairs = read_pair_csv(data.path, data.task)
    else:
        pairs = generate_stereo_pairs(
            num_pairs=data.num_pairs,
            image_size=data.image_size,
            channels=data.channels,
            task=data.task,
            noise=data.noise,
            rng=rng,
        )
    stratify = data.task is Task.SIMILARITY
    return split_pairs(pairs, data.validation_fraction, data.test_fraction, rng, stratify=stratify)


def _sequence_splits(data: SequenceDataConfig, rng: np.random.Generator, directory: Path | None) -> PairSplits[Pairs]:
    item_shape = (data.timesteps, data.features)
    blocks = generate_sequence_splits(data, rng, pairs_per_shard(item_shape))
    if directory is None:
        return PairSplits(**{name: PairSet.concatenate(list(getattr(blocks, name)), item_shape) for name in SPLIT_NAMES})
    metadata = {"generator": "siamese.data.sequences", "data": _plain(data), "seed": _seed_of(rng)}
    written = {
        name: write_shards(getattr(blocks, name), Path(directory) / f"{name}{_SPLIT_SUFFIXES[PairShards]}", item_shape, metadata)
        for name in SPLIT_NAMES
    }
    return PairSplits(**written)


def _plain(data: SequenceDataConfig) -> dict[str, object]:
    return {key: str(value) if isinstance(value, Enum) else value for key, value in dataclasses.asdict(data).items()}


def _seed_of(rng: np.random.Generator) -> dict[str, object]:
    """Enough to name the generator's seed in a manifest: `default_rng(seed)` has entropy `seed`."""
    sequence = rng.bit_generator.seed_seq
    return {"entropy": getattr(sequence, "entropy", None), "spawn_key": list(getattr(sequence, "spawn_key", ()))}


def split_text_file(data: TextFileDataConfig, seed: int) -> tuple[PairSplits[TextPairs], LoadedPairs]:
    """Load and validate a text pair file, then split it so swapped twins share a split.

    Returns the splits and the loaded file's lineage (source, content hash, rows dropped).

    Raises:
        PairFileError: the file cannot be read, or fails validation (the message names the
            column, the rows and the count).
    """
    loaded = load_text_pairs(
        data.path,
        left_column=data.left_column or None,
        right_column=data.right_column or None,
        label_column=data.label_column or None,
        threshold=data.threshold,
        drop_invalid_rows=data.drop_invalid_rows,
    )
    try:
        splits = split_text_pairs(loaded.pairs, data.validation_fraction, data.test_fraction, seed)
    except ValueError as error:  # too few pairs for a split to hold both labels
        raise PairFileError(f"{Path(data.path).name}: {error}") from None
    return splits, loaded


def save_split(pairs: Pairs, directory: Path, name: str) -> Path:
    """Write one split: arrays as `name.npz`, shards as the directory `name.shards` (already there
    when `prepare_splits` wrote them: nothing is copied), image files as the pair table `name.csv`,
    text as `name.parquet`."""
    return pairs.save(directory / f"{name}{_SPLIT_SUFFIXES[type(pairs)]}")


def load_split(path: Path) -> Pairs:
    """Read a split written by `save_split` (shards stay on disk: only their manifest is read).

    Raises:
        ShardError: a shard directory without a readable manifest, or with a missing shard file.
    """
    readers = {suffix: cls for cls, suffix in _SPLIT_SUFFIXES.items()}
    return readers[Path(path).suffix].load(path)


def in_memory(pairs: Pairs, count: int, input_shape: tuple[int | None, ...]) -> PairSet | TextPairs:
    """The first `count` pairs as arrays: probes and examples, read at the model's input shape."""
    head = pairs.take(slice(0, count))
    if not isinstance(head, ImagePairFiles):
        return head
    image_size, _, channels = input_shape[-3:]
    return head.to_pair_set(image_size, channels)
