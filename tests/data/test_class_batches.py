"""Class-balanced batches of a class folder's training images, every pair among them labelled and weighted."""

from __future__ import annotations

import os

import numpy as np
import pytest

from siamese.data.class_batches import IMAGES_PER_CLASS, ClassBatches
from siamese.data.image_pairs import ImagePairFiles


@pytest.fixture(scope="module")
def folder(tmp_path_factory, write_class_folders):
    return write_class_folders(tmp_path_factory.mktemp("classes"), classes=12, images=5)


def pairs_of(root, classes: str = "*", size: int = 12) -> ImagePairFiles:
    """Every image of `classes` once on the left, its neighbour in file order on the right (labels are not read)."""
    paths = sorted(str(path) for path in root.glob(f"{classes}/*.png"))
    return ImagePairFiles(paths, paths[1:] + paths[:1], np.zeros(len(paths)), size, 3)


def batches(data: ClassBatches, batch_size: int, seed: int = 0) -> list:
    return [tuple(part.numpy() if not isinstance(part, dict) else {k: v.numpy() for k, v in part.items()} for part in batch)
            for batch in data.dataset(batch_size, seed=seed)]  # fmt: skip


def test_every_pair_of_a_batch_is_labelled_by_class_and_each_label_weighs_half(folder):
    data = ClassBatches.of_pairs(pairs_of(folder))
    classes = np.array([os.path.dirname(path) for path in data.images.left])
    (inputs, labels, weights), *_ = batches(data, batch_size=32)
    images, left, right = inputs["images"], inputs["left_index"], inputs["right_index"]
    assert images.shape == (16, 12, 12, 3) and images.dtype == np.float32
    assert len(labels) == 16 * 15 // 2 and np.all(left < right), "each unordered pair once, no image with itself"
    chosen = batches_image_indices(data, batch_size=32)[0]
    assert np.array_equal(labels, (classes[chosen[left]] == classes[chosen[right]]).astype(np.float32))
    assert len(np.unique(classes[chosen])) == 16 // IMAGES_PER_CLASS
    assert weights[labels == 1].sum() == pytest.approx(weights[labels == 0].sum())
    assert weights.mean() == pytest.approx(1.0)


def batches_image_indices(data: ClassBatches, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """The image indices of each batch, as the dataset draws them (same seed, first epoch)."""
    rng = np.random.default_rng([seed, 0])
    per_batch = batch_size // 2
    return [data._batch(per_batch, rng)[0] for _ in range(-(-2 * len(data) // per_batch))]


def test_pixels_are_the_images_and_an_epoch_encodes_as_many_images_as_the_drawn_pairs(folder):
    data = ClassBatches.of_pairs(pairs_of(folder))
    epoch = batches(data, batch_size=32)
    assert len(epoch) == -(-2 * len(data) // 16)
    first = batches_image_indices(data, batch_size=32)[0]
    decoded = data.images.head(len(data.images)).left
    assert np.array_equal(epoch[0][0]["images"], decoded[first].astype(np.float32))


def test_each_epoch_draws_new_batches_and_a_seed_repeats_them(folder):
    data = ClassBatches.of_pairs(pairs_of(folder))
    dataset = data.dataset(32, seed=3)
    first, second = ([batch[0]["images"].numpy() for batch in dataset] for _ in range(2))
    assert not np.array_equal(first[0], second[0])
    again = [batch[0]["images"].numpy() for batch in data.dataset(32, seed=3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_few_classes_fill_a_batch_with_more_images_of_each(folder):
    two_classes = pairs_of(folder, "class_[01]")  # 5 images each
    (inputs, labels, _), *_ = batches(ClassBatches.of_pairs(two_classes), batch_size=32)
    assert len(inputs["images"]) == 10 and labels.sum() == 2 * (5 * 4 // 2)


def test_a_split_with_nothing_to_compare_is_refused_with_the_way_out(folder):
    one_class = pairs_of(folder, "class_0")
    with pytest.raises(ValueError, match=r"1 class\(es\).*data.training_pairs to 'drawn'"):
        ClassBatches.of_pairs(one_class)
