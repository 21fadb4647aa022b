"""Graded similarity of text pairs (`data.task = "regression"`): scores kept, split by quantile, on the file's scale.

The library pieces, fast: config, loading and splitting, the scale on the model's output,
correlation metrics, the gate's Pearson, and the baselines' Ridge regression.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from graded_pairs import graded_pairs
from scipy import stats

from siamese.baselines import graded_text_baselines
from siamese.config import Config, ConfigError, GateConfig, ModelKind, Task, TextFileDataConfig, TextModelConfig, TextPairModelConfig, load_config
from siamese.data.tables import PairFileError
from siamese.data.text_pairs import load_text_pairs, split_by_column, split_text_pairs
from siamese.evaluation import evaluate_regression, pearson, spearman
from siamese.families import family_of
from siamese.gate import GATE_METRICS, Decision, judge_challenger
from siamese.models.layers import on_score_scale, score_scale

FAMILY = family_of(ModelKind.TEXT)
SMALL_MODEL = TextPairModelConfig(units=3, embedding_dim=5, vocabulary_size=40, sequence_length=6)


@pytest.fixture(scope="module")
def graded_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("graded") / "sts.csv"
    graded_pairs(300, seed=0).to_csv(path, index=False)
    return path


def regression_config(path, **data) -> Config:
    return Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path=str(path), task="regression", **data), model=SMALL_MODEL)


# Config


def test_text_files_take_a_task_and_regression_may_gate_on_pearson(graded_file):
    config = regression_config(graded_file, label_column="score")
    assert config.task is Task.REGRESSION and config.to_params()["data.task"] == "regression"
    assert TextFileDataConfig(path="x.csv").task is Task.SIMILARITY
    gated = Config(kind=ModelKind.TEXT, data=config.data, gate=GateConfig(metric="pearson"))
    assert gated.gate.metric_for(Task.REGRESSION) == "pearson"
    with pytest.raises(ConfigError, match="gate.metric 'pearson' does not fit a similarity model"):
        Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path="x.csv"), gate=GateConfig(metric="pearson"))


def test_a_threshold_with_regression_names_both_keys():
    with pytest.raises(ConfigError, match=r"data\.threshold \(3\.5\).*data\.task 'regression'"):
        load_config(None, {"kind": "text", "data.path": "x.csv", "data.task": "regression", "data.threshold": 3.5})
    with pytest.raises(ConfigError, match="data.task must be one of similarity, regression"):
        TextFileDataConfig(path="x.csv", task="graded")


# Loading and splitting


def test_graded_scores_are_kept_as_numbers(graded_file):
    loaded = load_text_pairs(graded_file, graded=True)
    assert loaded.columns.label == "score"
    assert sorted(np.unique(loaded.pairs.labels).tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_graded_scores_must_be_numbers_and_differ(tmp_path):
    frame = graded_pairs(40, seed=1)
    frame["score"] = frame["score"].astype(object)
    frame.loc[[2, 7], "score"] = "high"
    frame.to_csv(tmp_path / "words.csv", index=False)
    not_numbers = r"2 rows with scores that are not numbers .*'high'.*graded scores \(data.task = regression\)"
    with pytest.raises(PairFileError, match=not_numbers):
        load_text_pairs(tmp_path / "words.csv", graded=True)
    frame["score"] = 2.5
    frame.to_csv(tmp_path / "flat.csv", index=False)
    with pytest.raises(PairFileError, match="all 40 scores are 2.5"):
        load_text_pairs(tmp_path / "flat.csv", graded=True)
    with pytest.raises(ValueError, match="data.threshold .* data.task 'regression'"):
        load_text_pairs(tmp_path / "flat.csv", graded=True, threshold=3.0)


def test_graded_splits_spread_the_scores_whatever_the_row_order(graded_file):
    pairs = load_text_pairs(graded_file, graded=True).pairs
    splits = split_text_pairs(pairs, 0.2, 0.2, seed=3, graded=True)
    for name in ("train", "validation", "test"):
        scores = getattr(splits, name).labels
        assert scores.min() == 0.0 and scores.max() == 5.0, name
    assert abs(len(splits.test) - 60) <= 5
    reversed_pairs = pairs.take(slice(None, None, -1))
    again = split_text_pairs(reversed_pairs, 0.2, 0.2, seed=3, graded=True)
    assert sorted(again.test.rows.tolist()) == sorted(splits.test.rows.tolist())


def test_continuous_scores_reach_every_split(graded_file):
    """Stratifying by exact value would send every score seen once to train."""
    pairs = load_text_pairs(graded_file, graded=True).pairs
    jittered = type(pairs)(pairs.left, pairs.right, pairs.labels + np.linspace(0, 0.01, len(pairs)), pairs.rows)
    splits = split_text_pairs(jittered, 0.2, 0.2, seed=0, graded=True)
    assert len(splits.test) == pytest.approx(60, abs=5) and len(splits.validation) == pytest.approx(60, abs=5)


def test_a_published_split_with_one_score_says_so(graded_file):
    pairs = load_text_pairs(graded_file, graded=True).pairs
    names = np.where(np.arange(len(pairs)) < 250, "train", "test").astype(object)
    names[(names == "test") & (pairs.labels != pairs.labels[250])] = "train"
    with pytest.raises(ValueError, match=r"the test split holds one score only .*at least two different scores"):
        split_by_column(pairs, names, 0.2, seed=0, graded=True)


# The model's scale


def test_on_score_scale_maps_the_sigmoid_onto_the_scale_and_survives_saving(tmp_path):
    left, right = keras.Input(shape=(2,), name="left"), keras.Input(shape=(2,), name="right")
    features = keras.layers.Concatenate()([left, right])
    inner = keras.Model([left, right], keras.layers.Dense(1, activation="sigmoid")(features), name="pair")
    model = on_score_scale(inner, 1.0, 5.0)
    probe = [np.ones((3, 2), np.float32), np.zeros((3, 2), np.float32)]
    expected = 1.0 + 4.0 * inner.predict(probe, verbose=0)
    np.testing.assert_allclose(model.predict(probe, verbose=0), expected, rtol=1e-6)
    assert model.name == "pair" and model.count_params() == inner.count_params()
    model.save(tmp_path / "scaled.keras")
    reloaded = keras.saving.load_model(tmp_path / "scaled.keras", safe_mode=True)
    assert score_scale(reloaded) == (1.0, 5.0) and score_scale(inner) is None
    np.testing.assert_allclose(reloaded.predict(probe, verbose=0), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="finite low < high"):
        on_score_scale(inner, 5.0, 5.0)


def test_the_text_family_builds_a_regression_model_on_the_training_scale(graded_file, tmp_path):
    config = regression_config(graded_file)
    prepared = FAMILY.prepare_splits(config, tmp_path)
    assert prepared.labels["train"].startswith("targets 0..5")
    train = FAMILY.load_split(config, prepared.paths["train"])
    model = FAMILY.build(config, train, "float32")
    assert score_scale(model) == (0.0, 5.0)
    assert FAMILY.loss(config) == "mean_squared_error"


# Metrics and the gate


def test_correlations_match_scipy_and_a_constant_prediction_scores_zero():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 6, 200).astype(float)
    predictions = targets + rng.normal(0, 1.5, 200)
    assert pearson(targets, predictions) == pytest.approx(stats.pearsonr(targets, predictions).statistic)
    assert spearman(targets, predictions) == pytest.approx(stats.spearmanr(targets, predictions).statistic)
    assert pearson(targets, np.full(200, 2.5)) == 0.0
    metrics = evaluate_regression(targets, predictions, baseline=2.5)
    assert {"mae", "mse", "rmse", "pearson", "spearman"} <= metrics.keys()
    assert metrics["mse"] == pytest.approx(metrics["rmse"] ** 2)


def test_the_gate_bootstraps_pearson_higher_being_better():
    rng = np.random.default_rng(1)
    targets = rng.uniform(0, 5, 300)
    good, poor = targets + rng.normal(0, 0.5, 300), targets + rng.normal(0, 3, 300)
    metric = GATE_METRICS["pearson"]
    assert metric.higher_is_better
    assert metric.resample(targets, good, np.ones((1, 300)))[0] == pytest.approx(metric.compute(targets, good))
    assert judge_challenger(targets, good, poor, metric="pearson").decision is Decision.PROMOTE
    assert judge_challenger(targets, poor, good, metric="pearson").decision is Decision.KEEP


# Baselines


def test_graded_baselines_report_correlations_and_ridge_errors(graded_file):
    pairs = load_text_pairs(graded_file, graded=True).pairs
    splits = split_text_pairs(pairs, 0.0, 0.3, seed=0, graded=True)
    train, test = splits.train, splits.test
    baselines = graded_text_baselines(train.left, train.right, train.labels, test.left, test.right, test.labels)
    names = ("tfidf_cosine", "char_tfidf_cosine", "siamese_linear")
    correlations = {f"{name}_{metric}" for name in names for metric in ("pearson", "spearman")}
    assert set(baselines) == correlations | {"siamese_linear_mae", "siamese_linear_rmse"}
    assert baselines["tfidf_cosine_pearson"] > 0.8, "the score is word overlap: the word cosine follows it"
    assert baselines["siamese_linear_pearson"] > 0.5
    assert baselines["siamese_linear_mae"] < 1.5, "Ridge predicts on the file's 0..5 scale"
    with pytest.raises(ValueError, match="train_scores: 3 left"):
        graded_text_baselines(train.left[:3], train.right[:3], train.labels[:2], test.left, test.right, test.labels)
