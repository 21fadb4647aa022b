"""The generated stereo data is learnable: small configurations by default, the shipped ones in the slow tier.

the vision family's splits (generated stereo pairs) -> its model -> compile_for_training -> fit ->
predict, then held-out metrics against the trivial predictor. The small configurations train in
about 4 s on two CPU cores; the shipped ones (2,000 pairs of 48x48 images, 8 epochs) in about
16 s each, and run with `make test-all`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from siamese.config import Config, ImageDataConfig, TrainingConfig, VisionHead, VisionModelConfig, load_config
from siamese.data.sequences import PairSet
from siamese.evaluation import evaluate_regression, roc_auc
from siamese.families import family_of
from siamese.training import compile_for_training, fit, predict

DISPARITY = Path(__file__).parents[1] / "configs" / "vision_disparity.toml"


def train_and_predict(config: Config, directory: Path) -> tuple[PairSet, PairSet, np.ndarray]:
    """Train as the flow does; return the train and test splits and the test predictions."""
    family = family_of(config.kind)
    paths = family.prepare_splits(config, directory).paths
    train, validation, test = (family.load_split(config, paths[name]) for name in ("train", "validation", "test"))
    keras.utils.set_random_seed(config.seed)
    model = family.build(config, train, "float32")
    compile_for_training(model, config.training, config.task)
    fit(model, train, validation, config.training, verbose=0, seed=config.seed)
    return train, test, predict(model, test)[:, 0]


def small(task: str, num_pairs: int, epochs: int) -> Config:
    """24x24 pixels and an 8-filter compact backbone with the default fusion head."""
    return Config(
        kind="vision",
        data=ImageDataConfig(num_pairs=num_pairs, image_size=24, task=task),
        model=VisionModelConfig(filters=8),
        training=TrainingConfig(epochs=epochs, batch_size=32, learning_rate=1e-3),
    )


def test_two_views_of_one_scene_are_told_from_views_of_two(tmp_path):
    _, test, scores = train_and_predict(small("similarity", num_pairs=600, epochs=6), tmp_path)
    auc = roc_auc(test.labels, scores)
    assert auc >= 0.9, f"test AUC {auc:.3f} (chance: 0.5; measured ~0.99)"


def test_the_disparity_is_estimated_far_better_than_by_the_mean(tmp_path):
    train, test, estimates = train_and_predict(small("regression", num_pairs=1000, epochs=10), tmp_path)
    metrics = evaluate_regression(test.labels, estimates, baseline=float(train.labels.mean()))
    assert metrics["mae"] <= 0.7 * metrics["baseline_mae"], f"test MAE vs the training mean's (measured ~0.53): {metrics}"


@pytest.mark.slow
def test_default_vision_config_tells_two_views_of_one_scene_from_views_of_two(tmp_path):
    _, test, scores = train_and_predict(Config(kind="vision"), tmp_path)
    auc = roc_auc(test.labels, scores)
    assert auc >= 0.8, f"test AUC {auc:.3f} (chance: 0.5)"


@pytest.mark.slow
def test_disparity_config_estimates_the_disparity_far_better_than_the_mean(tmp_path):
    config = load_config(DISPARITY)
    train, test, estimates = train_and_predict(config, tmp_path)
    metrics = evaluate_regression(test.labels, estimates, baseline=float(train.labels.mean()))
    assert metrics["mae"] <= 0.6 * metrics["baseline_mae"], f"test MAE vs the training mean's: {metrics}"


@pytest.mark.slow
def test_concat_head_cannot_compare_the_views(tmp_path):
    """The reference head is additive in the two views: it stays at chance on the same data."""
    default = Config(kind="vision")
    concat = dataclasses.replace(default, model=dataclasses.replace(default.model, head=VisionHead.CONCAT))
    _, test, scores = train_and_predict(concat, tmp_path)
    auc = roc_auc(test.labels, scores)
    assert 0.35 <= auc <= 0.65, f"test AUC {auc:.3f}"
