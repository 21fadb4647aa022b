"""Image pairs: one CNN backbone shared by a left and a right camera image.

Reads `[data]` as `ImageDataConfig` (source, path, task, pairs, image size, channels, noise,
split_by, fractions) and `[model]` as `VisionModelConfig` (backbone, head, pooling, filters).
Three sources: generated stereo scenes (held in memory, written as `.npz`), a folder of class
folders (same-class and different-class pairs drawn after the classes or images are split) and a
CSV of image pairs; image files stay on disk and stream during training. Similarity (binary
cross-entropy) or regression (mean squared error) as `data.task` says; test pairs are drawn with
their predictions. Shipped in MLflow's Keras flavour as `siamese-vision`: raw float32 pixels
`(n, size, size, channels)`, rescaled inside the model.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from siamese.config import Config, ImageSource, ModelKind, Task
from siamese.data.image_pairs import ImagePairFiles, pairs_from_class_folders, read_pair_csv
from siamese.data.pairs import Pairs
from siamese.data.sequences import PairSet, split_pairs
from siamese.data.stereo import generate_stereo_pairs
from siamese.families.base import Family, ModelFormat, PreparedSplits
from siamese.models.vision import build_vision_model

PLOTTED_PAIRS = 6  # test pairs drawn with their predictions for reviewers


class ImagePairFamily(Family):
    kind = ModelKind.VISION
    experiment = "siamese-vision"
    registered_name = "siamese-vision"
    model_format = ModelFormat.KERAS

    def prepare_splits(self, config: Config, directory: Path) -> PreparedSplits:
        """Generate, draw or read the image pairs and split them; files are checked before anything trains.

        Raises:
            ImageDataError: an image file, folder or pair table cannot be used (the message names it).
            ValueError: too few pairs to give every split both labels.
        """
        data = config.data
        rng = np.random.default_rng(config.seed)
        shape = {"image_size": data.image_size, "channels": data.channels}
        if data.source is ImageSource.FOLDER:
            splits = pairs_from_class_folders(
                data.path,
                num_pairs=data.num_pairs,
                split_by=data.split_by,
                validation_fraction=data.validation_fraction,
                test_fraction=data.test_fraction,
                rng=rng,
                **shape,
            )
        else:
            if data.source is ImageSource.CSV:
                pairs: Pairs = read_pair_csv(data.path, data.task, **shape)
            else:
                pairs = generate_stereo_pairs(
                    num_pairs=data.num_pairs, task=data.task, noise=data.noise, rng=rng, **shape
                )
            stratify = data.task is Task.SIMILARITY
            splits = split_pairs(pairs, data.validation_fraction, data.test_fraction, rng, stratify=stratify)
        return self.write_splits(splits, directory, config.task)

    def load_split(self, config: Config, path: Path) -> Pairs:
        """Generated stereo pairs are arrays (`.npz`); files stay paths, read at the configured size."""
        if config.data.source is ImageSource.STEREO:
            return PairSet.load(path)
        return ImagePairFiles.load(path, image_size=config.data.image_size, channels=config.data.channels)

    def build(self, config: Config, train: Pairs, dtype_policy: str) -> keras.Model:
        data, model = config.data, config.model
        return build_vision_model(
            backbone=model.backbone,
            image_size=data.image_size,
            channels=data.channels,
            head=model.head,
            pooling=model.pooling,
            task=data.task,
            filters=model.filters,
            dtype_policy=dtype_policy,
        )

    def example_pairs(self, test: Pairs) -> PairSet:
        return test.head(PLOTTED_PAIRS)

    def data_name(self, config: Config) -> str:
        return Path(config.data.path).name if config.data.path else str(config.data.source)
