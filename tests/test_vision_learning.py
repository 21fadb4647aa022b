"""The generated stereo data is learnable with the shipped quick configurations.

prepare_splits (generated stereo pairs) -> build_siamese_model -> compile_for_training -> fit ->
predict, then held-out metrics against the trivial predictor. Each test trains for about 20 s on
two CPU cores.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from siamese.config import Config, VisionHead, load_config
from siamese.data.sequences import PairSet
from siamese.data.sources import prepare_splits
from siamese.evaluation import evaluate_regression, roc_auc
from siamese.models import build_siamese_model
from siamese.training import compile_for_training, fit, predict

DISPARITY = Path(__file__).parents[1] / "configs" / "vision_disparity.toml"


def train_and_predict(config: Config) -> tuple[PairSet, PairSet, np.ndarray]:
    """Train as the flow does; return the train and test splits and the test predictions."""
    keras.utils.set_random_seed(config.seed)
    splits = prepare_splits(config.data, np.random.default_rng(config.seed))
    model = build_siamese_model(config)
    compile_for_training(model, config.training, config.task)
    fit(model, splits.train, splits.validation, config.training, verbose=0)
    return splits.train, splits.test, predict(model, splits.test)[:, 0]


def test_default_vision_config_tells_two_views_of_one_scene_from_views_of_two():
    _, test, scores = train_and_predict(Config(kind="vision"))
    auc = roc_auc(test.labels, scores)
    assert auc >= 0.8, f"test AUC {auc:.3f} (chance: 0.5)"


def test_disparity_config_estimates_the_disparity_far_better_than_the_mean():
    config = load_config(DISPARITY)
    train, test, estimates = train_and_predict(config)
    metrics = evaluate_regression(test.labels, estimates, baseline=float(train.labels.mean()))
    assert metrics["mae"] <= 0.6 * metrics["baseline_mae"], f"test MAE vs the training mean's: {metrics}"


@pytest.mark.slow
def test_concat_head_cannot_compare_the_views():
    """The reference head is additive in the two views: it stays at chance on the same data."""
    default = Config(kind="vision")
    _, test, scores = train_and_predict(dataclasses.replace(default, model=dataclasses.replace(default.model, head=VisionHead.CONCAT)))
    auc = roc_auc(test.labels, scores)
    assert 0.35 <= auc <= 0.65, f"test AUC {auc:.3f}"
