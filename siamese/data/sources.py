"""One entry point from a run's data config to train/validation/test pairs, whatever the source.

Generated data (sequence pairs, stereo pairs) is held in memory and written as `.npz`; image
files stay on disk and their splits are pair tables (`.csv`) streamed with `tf.data` during
training. `load_split` reads either back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamese.config import ImageDataConfig, ImageSource, SequenceDataConfig, Task
from siamese.data.image_pairs import ImagePairFiles, pairs_from_class_folders, read_pair_csv
from siamese.data.sequences import PairSet, PairSplits, generate_sequence_pairs, split_pairs
from siamese.data.stereo import generate_stereo_pairs

Pairs = PairSet | ImagePairFiles  # in memory, or image files read as they are needed


def prepare_splits(data: SequenceDataConfig | ImageDataConfig, rng: np.random.Generator) -> PairSplits[Pairs]:
    """Generate or load the pairs `data` describes and split them without leakage.

    Raises:
        ImageDataError: an image file, folder or pair table cannot be used (the message names it).
        ValueError: too few pairs to give every split both labels.
    """
    if isinstance(data, SequenceDataConfig):
        return split_pairs(generate_sequence_pairs(data, rng), data.validation_fraction, data.test_fraction, rng)
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


def save_split(pairs: Pairs, directory: Path, name: str) -> Path:
    """Write one split: arrays as `name.npz`, image files as the pair table `name.csv`."""
    suffix = ".csv" if isinstance(pairs, ImagePairFiles) else ".npz"
    return pairs.save(directory / f"{name}{suffix}")


def load_split(path: Path) -> Pairs:
    """Read a split written by `save_split`."""
    return ImagePairFiles.load(path) if Path(path).suffix == ".csv" else PairSet.load(path)


def in_memory(pairs: Pairs, count: int, input_shape: tuple[int | None, ...]) -> PairSet:
    """The first `count` pairs as arrays: probes and examples, read at the model's input shape."""
    head = pairs.take(slice(0, count))
    if isinstance(head, PairSet):
        return head
    image_size, _, channels = input_shape[-3:]
    return head.to_pair_set(image_size, channels)
