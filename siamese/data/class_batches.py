"""Class-balanced batches of images with every pair among them: how class folders train.

A drawn pair costs two encoder passes and gives one comparison. A batch of B images of a few
classes costs B passes and gives B(B-1)/2 comparisons, a few hundred of them same-class: for the
work of 64 drawn pairs, 128 images of 32 classes give 8,128 pairs, 192 of them matches. On
omniglot_small2 split by character that took 20-way one-shot accuracy from 0.79 to 0.87
(BENCHMARKS.md, "Image verification"). The model is still scored pair by pair
(`siamese.training.AllPairsTrainer`), so validation, test and serving do not change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from siamese.data.image_pairs import ImagePairFiles
from siamese.data.pairs import check_batch_size

if TYPE_CHECKING:
    import tensorflow as tf

IMAGES_PER_CLASS = 4  # per class and batch when there are classes enough: 6 same-class pairs each


@dataclass(frozen=True)
class ClassBatches:
    """A training split's images and their classes, served as batches of all their pairs.

    `images` are the distinct image files of the split's pairs and `classes` each one's class
    (its folder, as for one-shot trials); `pairs_per_epoch` is the split's pair count, which
    sets an epoch's length so that it encodes as many images as an epoch of the drawn pairs.
    """

    images: ImagePairFiles  # one "pair" per image, (image, image, class): the decoding and caching of pair files
    classes: np.ndarray
    pairs_per_epoch: int

    @classmethod
    def of_pairs(cls, pairs: ImagePairFiles) -> ClassBatches:
        """The images of `pairs` and their folders' classes.

        Raises:
            ValueError: fewer than two classes, or no class with two images: nothing to compare.
        """
        paths = np.unique(np.concatenate([pairs.left, pairs.right]))
        _, classes = np.unique([os.path.dirname(path) for path in paths], return_inverse=True)
        counts = np.bincount(classes) if len(classes) else np.zeros(0, int)
        if len(counts) < 2 or counts.max() < 2:
            raise ValueError(
                f"data.training_pairs 'in_batch' needs two classes and a class with two images in the training "
                f"split, got {len(counts)} class(es) of at most {counts.max(initial=0)} image(s): add images "
                "or set data.training_pairs to 'drawn'"
            )
        files = ImagePairFiles(paths, paths, classes.astype(np.float32), pairs.image_size, pairs.channels)
        return cls(files, classes, len(pairs))

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, autotune: bool | None = None) -> tf.data.Dataset:
        """One epoch of batches `({"images", "left_index", "right_index"}, labels, weights)`.

        A batch holds `batch_size // 2` images (at least 4): `IMAGES_PER_CLASS` of each of as many
        classes as fit, or, with fewer classes, as many of each class as fit. `left_index` and
        `right_index` name every pair of the batch's images once, `labels` says which are of one
        class and `weights` give same-class and different-class pairs equal total weight, as in
        the drawn pairs. An epoch has `ceil(2 * len / images per batch)` batches: as many images
        encoded as an epoch of drawn pairs. Each epoch draws new batches from `seed`; `shuffle`
        and `autotune` are accepted for `Pairs.dataset`'s signature and change nothing.
        """
        import tensorflow as tf

        check_batch_size(batch_size)
        per_batch = max(4, batch_size // 2)
        steps = -(-2 * self.pairs_per_epoch // per_batch)
        epochs = iter(range(2**31))  # each pass over the dataset (each Keras epoch) calls the generator anew

        def index_batches() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
            rng = np.random.default_rng([seed, next(epochs)])
            for _ in range(steps):
                yield self._batch(per_batch, rng)

        int_vector = tf.TensorSpec((None,), tf.int32)
        float_vector = tf.TensorSpec((None,), tf.float32)
        indices = tf.data.Dataset.from_generator(
            index_batches, output_signature=(int_vector, int_vector, int_vector, float_vector, float_vector)
        ).apply(tf.data.experimental.assert_cardinality(steps))  # Keras then knows an epoch's length
        pixels = self.images.pixel_reader()

        def read(images, left, right, labels, weights):
            return {"images": pixels(images), "left_index": left, "right_index": right}, labels, weights

        return indices.map(read).prefetch(tf.data.AUTOTUNE)

    def _batch(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One batch: image indices, the pairs' positions in the batch, their labels and weights."""
        groups = [np.flatnonzero(self.classes == label) for label in range(self.classes.max() + 1)]
        chosen = rng.choice(len(groups), min(len(groups), max(2, size // IMAGES_PER_CLASS)), replace=False)
        each = size // len(chosen)
        images = np.concatenate([rng.choice(groups[c], min(each, len(groups[c])), replace=False) for c in chosen])
        left, right = np.triu_indices(len(images), 1)
        labels = (self.classes[images[left]] == self.classes[images[right]]).astype(np.float32)
        same = labels.sum()
        weights = np.ones_like(labels)
        if 0 < same < len(labels):  # each label gets half of the batch's weight
            weights = np.where(labels == 1, len(labels) / (2 * same), len(labels) / (2 * (len(labels) - same)))
        return images.astype(np.int32), left.astype(np.int32), right.astype(np.int32), labels, weights.astype(np.float32)
