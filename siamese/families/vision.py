"""Image pairs: one CNN backbone shared by a left and a right camera image.

Reads `[data]` as `ImageDataConfig` (source, path, task, pairs, image size, channels, noise,
split_by, fractions) and `[model]` as `VisionModelConfig` (backbone, head, pooling, filters).
Three sources: generated stereo scenes (held in memory, written as `.npz`), a folder of class
folders (same-class and different-class pairs drawn after the classes or images are split) and a
CSV of image pairs; image files stay on disk and stream during training. Similarity (binary
cross-entropy) or regression (mean squared error) as `data.task` says; test pairs are drawn with
their predictions. Similarity runs log a pixel baseline beside the model: the cosine of
mean-centred raw pixels on the same test pairs. Class folders are also scored N-way one-shot
(5 and 20 classes, `ONE_SHOT_TRIALS` trials), the model and the pixel baseline on the same trials,
built from the test split's images (an image's class is its folder). Shipped in MLflow's Keras
flavour as `siamese-vision`: raw float32 pixels `(n, size, size, channels)`, rescaled inside the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from siamese.baselines import auc_and_accuracy, mean_image, pixel_cosine_scores
from siamese.config import DEFAULT_STEREO_PAIRS, Backbone, Config, ImageSource, Loss, ModelKind, Task, TrainingPairs, VisionHead
from siamese.data.class_batches import ClassBatches
from siamese.data.image_pairs import ImagePairFiles, pairs_from_class_folders, read_pair_csv
from siamese.data.pairs import Pairs
from siamese.data.sequences import PairSet, split_pairs
from siamese.data.stereo import generate_stereo_pairs
from siamese.evaluation import OneShotTrials, one_shot_accuracy, one_shot_trials
from siamese.families.base import Family, ModelFormat, PreparedSplits
from siamese.models.vision import build_augmentation, build_vision_model, with_training_augmentation
from siamese.training import AllPairsTrainer, ContrastiveLoss, predict

LOGGER = logging.getLogger(__name__)
PLOTTED_PAIRS = 6  # test pairs drawn with their predictions for reviewers
PIXEL_BATCH = 32  # pairs decoded at a time for the pixel baseline: 37 MiB of float32 pixels at 224x224 RGB
ONE_SHOT_WAYS = (5, 20)  # the N of N-way one-shot: 20 is the usual hard setting (Omniglot)
ONE_SHOT_TRIALS = 400  # per N: a standard error of at most 2.5 points of accuracy


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
            folder = pairs_from_class_folders(
                data.path,
                num_pairs=data.num_pairs,
                split_by=data.split_by,
                validation_fraction=data.validation_fraction,
                test_fraction=data.test_fraction,
                rng=rng,
                **shape,
            )
            used = {"data.split_by_used": str(folder.split_by), "data.training_pairs_used": _training_pairs_used(config)}
            return self.write_splits(folder, directory, config.task, params=used)
        if data.source is ImageSource.CSV:
            pairs: Pairs = read_pair_csv(data.path, data.task, **shape)
        else:
            pairs = generate_stereo_pairs(
                num_pairs=data.num_pairs or DEFAULT_STEREO_PAIRS, task=data.task, noise=data.noise, rng=rng, **shape
            )
        stratify = data.task is Task.SIMILARITY
        splits = split_pairs(pairs, data.validation_fraction, data.test_fraction, rng, stratify=stratify)
        return self.write_splits(splits, directory, config.task, params={"data.training_pairs_used": _training_pairs_used(config)})

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

    def trainer(self, config: Config, model: keras.Model, train: Pairs) -> tuple[keras.Model, Pairs | ClassBatches]:
        """Real images train through random transforms of each image (`data.augment`); the model itself stays deterministic.

        Class folders train on every pair within class-balanced batches of the training images
        (`data.training_pairs`, `ClassBatches`); other sources on the drawn pairs.
        """
        data = config.data
        if not data.in_batch_training:
            return with_training_augmentation(model, data.augmentation), train
        augmentation = build_augmentation(data.augmentation, image_size=data.image_size, channels=data.channels)
        return AllPairsTrainer(model, augmentation), ClassBatches.of_pairs(train)

    def search_space(self, config: Config) -> dict[str, dict[str, object]]:
        """The rate and batch size (up to 256: images are large), the backbone's width, and real images' augmentation.

        Xception's width is fixed; the contrastive loss is searched where the config allows it
        (similarity, a symmetric head).
        """
        space = super().search_space(config) | {"training.batch_size": {"choices": [32, 64, 128, 256]}}
        model = config.model
        if model.backbone is not Backbone.XCEPTION:
            space["model.filters"] = {"choices": [8, 16, 32]}
        if config.task is Task.SIMILARITY and model.head in (VisionHead.SYMMETRIC, VisionHead.L1):
            space["model.loss"] = {"choices": ["binary_crossentropy", "contrastive"]}
        if config.data.source is not ImageSource.STEREO:
            space |= {"data.translation": {"low": 0.0, "high": 0.2}, "data.rotation": {"low": 0.0, "high": 0.1}}
        return space

    def loss(self, config: Config) -> str | keras.losses.Loss:
        if config.model.loss is Loss.CONTRASTIVE:  # the config allows it for similarity with a symmetric head only
            return ContrastiveLoss(config.model.margin)
        return super().loss(config)

    def baselines(self, config: Config, train: Pairs, validation: Pairs, test: Pairs) -> dict[str, float]:
        """The pixel baseline (similarity): cosine of raw pixels minus the training split's mean image.

        The mean is taken over the training pairs' sides, one pass over the files: an image counts
        as often as it appears in a pair, which for drawn pairs is about equally often.
        `pixel_cosine_auc` and `pixel_cosine_accuracy`, the accuracy at the threshold most accurate
        on the validation pairs (on the training pairs when validation lacks a class: there is
        nothing else the test labels do not touch). Class folders add its one-shot accuracies on
        the model's trials, `pixel_cosine_oneshot_<N>way`: named without the `_accuracy` suffix,
        so the gate never holds a model's pair accuracy against a one-shot accuracy.
        """
        if config.task is not Task.SIMILARITY:
            return {}
        mean = mean_image(np.concatenate(sides) for sides in _pixel_batches(train))
        calibration = validation if len(np.unique(validation.labels)) == 2 else train
        calibration_scores = pixel_cosine_scores(_pixel_batches(calibration), mean)
        test_scores = pixel_cosine_scores(_pixel_batches(test), mean)
        baselines = auc_and_accuracy("pixel_cosine", calibration.labels, calibration_scores, test.labels, test_scores)
        if config.data.source is ImageSource.FOLDER:
            for ways, (trials, pairs) in _one_shot_sets(config, test).items():
                scores = pixel_cosine_scores(_pixel_batches(pairs), mean).reshape(trials.references.shape)
                baselines[f"pixel_cosine_oneshot_{ways}way"] = one_shot_accuracy(scores, trials.answers, _tie_breaks(config))
        return baselines

    def extra_test_metrics(self, config: Config, model: keras.Model, test: Pairs) -> dict[str, float]:
        """Class folders: `oneshot_<N>way_accuracy` for N = 5 and 20, where the test split has N classes.

        Each of `ONE_SHOT_TRIALS` trials (seeded by `config.seed`) shows the model a query and one
        reference of each of N test classes; it passes when the query's class scores highest.
        """
        if config.data.source is not ImageSource.FOLDER:
            return {}
        sets = _one_shot_sets(config, test)
        for ways in ONE_SHOT_WAYS:
            if ways not in sets:
                found = len(_test_classes(test)[1])
                LOGGER.info("no %d-way one-shot accuracy: the test split's images are of %d classes only", ways, found)
        return {
            f"oneshot_{ways}way_accuracy": one_shot_accuracy(
                predict(model, pairs).reshape(trials.references.shape), trials.answers, _tie_breaks(config)
            )
            for ways, (trials, pairs) in sets.items()
        }

    def example_pairs(self, test: Pairs) -> PairSet:
        return test.head(PLOTTED_PAIRS)

    def data_name(self, config: Config) -> str:
        return Path(config.data.path).name if config.data.path else str(config.data.source)


def _training_pairs_used(config: Config) -> str:
    return str(TrainingPairs.IN_BATCH if config.data.in_batch_training else TrainingPairs.DRAWN)


def _pixel_batches(pairs: Pairs) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs' left and right pixels, `PIXEL_BATCH` pairs at a time, decoded in parallel as training reads them."""
    for inputs, _ in pairs.dataset(PIXEL_BATCH).as_numpy_iterator():
        yield inputs["left"], inputs["right"]


def _one_shot_sets(config: Config, test: ImagePairFiles) -> dict[int, tuple[OneShotTrials, ImagePairFiles]]:
    """For each N of `ONE_SHOT_WAYS` the test split has classes for: its trials and their (query, reference) pairs.

    The classes are the folders of the test pairs' distinct images. Each N draws from its own
    generator seeded by `config.seed`, so the model and the pixel baseline face the same trials
    and the 5-way trials do not depend on whether 20-way ones are drawn.
    """
    images, classes = _test_classes(test)
    sets = {}
    for ways in ONE_SHOT_WAYS:
        if len(classes) >= ways:
            trials = one_shot_trials(classes, ways, ONE_SHOT_TRIALS, np.random.default_rng([config.seed, ways]))
            left, right = trials.pairs()
            sets[ways] = (trials, ImagePairFiles(images[left], images[right], trials.labels(), test.image_size, test.channels))
    return sets


def _test_classes(test: ImagePairFiles) -> tuple[np.ndarray, list[np.ndarray]]:
    """The test pairs' distinct image paths (sorted) and each class's indices into them; a class is an image's folder."""
    images = np.unique(np.concatenate([test.left, test.right]))
    _, class_of = np.unique([os.path.dirname(path) for path in images], return_inverse=True)
    return images, [np.flatnonzero(class_of == index) for index in range(class_of.max(initial=-1) + 1)]


def _tie_breaks(config: Config) -> np.random.Generator:
    """The generator of one-shot tie-breaks: the same for the model and the baseline, and for every run of a seed."""
    return np.random.default_rng(config.seed)
