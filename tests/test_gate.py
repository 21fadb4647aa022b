"""Champion/challenger gate: clear wins promote, noise and ties keep the champion, inputs are checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from siamese import config, gate
from siamese.gate import GATE_METRICS, Decision, GateResult, judge_challenger, judge_first_model


def noisy_scores(rng: np.random.Generator, labels: np.ndarray, signal: float, noise: float) -> np.ndarray:
    """Similarity scores in 0..1 that separate the classes by `signal`, blurred by `noise`."""
    return np.clip(0.5 + signal * (labels - 0.5) + rng.normal(0, noise, labels.size), 0, 1)


@pytest.fixture
def clear_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """500 pairs: a near-perfect challenger against a noisy champion."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    return labels, noisy_scores(rng, labels, 0.9, 0.05), noisy_scores(rng, labels, 0.2, 0.3)


def test_clearly_better_challenger_is_promoted(clear_case):
    labels, challenger, champion = clear_case
    result = judge_challenger(labels, challenger, champion)
    assert result.decision is Decision.PROMOTE
    assert result.challenger > 0.99 and result.champion < 0.8
    assert result.improvement == pytest.approx(result.challenger - result.champion)
    assert 0 < result.ci_low <= result.improvement <= result.ci_high
    assert result.test_pairs == 500


def test_identical_challenger_is_kept(clear_case):
    labels, _, champion = clear_case
    result = judge_challenger(labels, champion.copy(), champion)
    assert result.decision is Decision.KEEP
    assert result.improvement == result.ci_low == result.ci_high == 0.0


def test_slightly_better_but_noisy_challenger_on_few_pairs_is_kept():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 40)
    challenger, champion = noisy_scores(rng, labels, 0.3, 0.3), noisy_scores(rng, labels, 0.2, 0.3)
    result = judge_challenger(labels, challenger, champion)
    assert result.improvement > 0  # higher on this split...
    assert result.ci_low < 0 < result.ci_high  # ...but the interval crosses zero
    assert result.decision is Decision.KEEP


def test_min_improvement_raises_the_bar():
    # The champion is right on 800 of 1000 pairs; the challenger on the same 800 and 20 more: +0.02 accuracy.
    labels = np.tile([0.0, 1.0], 500)
    pair = np.arange(1000)
    champion = np.where(pair < 800, labels, 1 - labels) * 0.8 + 0.1  # 0.9 or 0.1: right, then wrong
    challenger = np.where(pair < 820, labels, 1 - labels) * 0.8 + 0.1
    promoted = judge_challenger(labels, challenger, champion, metric="accuracy", min_improvement=0.0)
    kept = judge_challenger(labels, challenger, champion, metric="accuracy", min_improvement=0.05)
    assert promoted.improvement == kept.improvement == pytest.approx(0.02)
    assert 0 < promoted.ci_low < promoted.ci_high < 0.05  # tight: only those 20 pairs ever differ
    assert promoted.decision is Decision.PROMOTE
    assert kept.decision is Decision.KEEP
    assert "min improvement 0.050" in kept.reason


@pytest.mark.parametrize("metric", ["mae", "rmse"])
def test_lower_error_regression_challenger_is_promoted(metric):
    rng = np.random.default_rng(1)
    targets = rng.normal(10, 3, 300)
    challenger, champion = targets + rng.normal(0, 0.3, 300), targets + rng.normal(0, 1.0, 300)
    result = judge_challenger(targets, challenger, champion, metric=metric)
    assert result.challenger < result.champion
    assert result.improvement == pytest.approx(result.champion - result.challenger)
    assert 0 < result.ci_low <= result.improvement
    assert result.decision is Decision.PROMOTE
    assert "lower is better" in result.reason


def test_lower_log_loss_challenger_is_promoted(clear_case):
    labels, challenger, champion = clear_case
    result = judge_challenger(labels, challenger, champion, metric="log_loss")
    assert result.challenger < result.champion
    assert result.improvement > 0 and result.ci_low > 0
    assert result.decision is Decision.PROMOTE


@pytest.mark.parametrize("metric", sorted(GATE_METRICS))
def test_resampled_metric_equals_the_metric_on_the_resampled_pairs(metric):
    """The vectorised bootstrap computes what evaluation.py reports, ties in the scores included."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60).astype(float)
    scores = np.round(noisy_scores(rng, labels, 0.3, 0.3), 1)  # rounded: many tied scores
    indices = rng.integers(0, 60, (5, 60))
    counts = np.stack([np.bincount(row, minlength=60) for row in indices])
    gate_metric = GATE_METRICS[metric]
    expected = [gate_metric.compute(labels[row], scores[row]) for row in indices]
    np.testing.assert_allclose(gate_metric.resample(labels, scores, counts), expected, rtol=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "mae"])
def test_resampling_in_blocks_gives_the_same_interval(monkeypatch, metric):
    """Large test sets are resampled a block of rows at a time to bound memory; that must not change the answer."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 300)
    challenger, champion = noisy_scores(rng, labels, 0.3, 0.3), noisy_scores(rng, labels, 0.2, 0.3)
    whole = judge_challenger(labels, challenger, champion, metric=metric)
    monkeypatch.setattr(gate, "_BLOCK_ELEMENTS", 3000)  # 10 resamples per block
    blocked = judge_challenger(labels, challenger, champion, metric=metric)
    assert (blocked.ci_low, blocked.ci_high) == pytest.approx((whole.ci_low, whole.ci_high), rel=1e-12)


def test_resampled_roc_auc_is_nan_without_both_classes():
    labels = np.array([0.0, 0.0, 1.0])
    counts = np.array([[2, 1, 0], [0, 0, 3], [1, 1, 1]])
    values = GATE_METRICS["roc_auc"].resample(labels, np.array([0.1, 0.2, 0.9]), counts)
    assert np.isnan(values[:2]).all() and values[2] == 1.0


def test_accuracy_judges_each_version_at_its_own_threshold():
    """A version decides at the threshold calibrated on its validation split: at 0.5 it would be judged on decisions it never makes."""
    labels = np.tile([0.0, 1.0], 200)
    challenger = 0.1 + 0.2 * labels  # 0.1 or 0.3: every pair right at its threshold 0.2, every positive wrong at 0.5
    champion = np.where(np.arange(400) < 320, labels, 1 - labels) * 0.8 + 0.1  # 0.9 or 0.1: right on 320 of 400 at 0.5

    result = judge_challenger(labels, challenger, champion, metric="accuracy", challenger_threshold=0.2, champion_threshold=0.5)

    assert result.challenger == 1.0 and result.champion == pytest.approx(0.8) and result.decision is Decision.PROMOTE
    assert "accuracy 1.000 at threshold 0.2 vs champion 0.800 at threshold 0.5" in result.reason
    unstored = judge_challenger(labels, challenger, champion, metric="accuracy")  # versions registered without a threshold
    assert unstored.challenger == 0.5 and unstored.decision is Decision.KEEP
    first = judge_first_model(labels, challenger, metric="accuracy", min_quality=0.9, threshold=0.2)
    assert first.challenger == 1.0 and first.decision is Decision.PROMOTE and "at threshold 0.2" in first.reason
    ranked = judge_challenger(labels, challenger, champion, challenger_threshold=0.2, champion_threshold=0.9)
    assert ranked.challenger == 1.0 and ranked.champion == judge_challenger(labels, challenger, champion).champion
    assert "threshold" not in ranked.reason, "roc_auc ranks scores: no threshold enters it"


def test_gate_knows_every_metric_the_config_allows():
    assert set(GATE_METRICS) == {name for names in config.GATE_METRICS.values() for name in names}
    for task, names in config.GATE_METRICS.items():
        assert all(GATE_METRICS[name].higher_is_better == (name in ("roc_auc", "accuracy", "pearson")) for name in names), task


def test_first_model_roc_auc_bar(clear_case):
    labels, challenger, champion = clear_case
    above = judge_first_model(labels, challenger, min_quality=0.6)
    below = judge_first_model(labels, champion, min_quality=0.9)
    assert above.decision is Decision.PROMOTE and below.decision is Decision.KEEP
    assert above.champion is above.improvement is None and above.ci_low <= above.challenger <= above.ci_high
    assert "meets" in above.reason and "misses" in below.reason and ">= 0.900" in below.reason


def test_first_model_mae_bar_is_a_maximum():
    targets = np.arange(10.0)
    predictions = targets + 0.5  # MAE 0.5 on every resample
    judged = {"metric": "mae", "min_test_pairs": 0}
    assert judge_first_model(targets, predictions, min_quality=1.0, **judged).decision is Decision.PROMOTE
    assert judge_first_model(targets, predictions, min_quality=0.5, **judged).decision is Decision.PROMOTE
    below = judge_first_model(targets, predictions, min_quality=0.4, **judged)
    assert below.decision is Decision.KEEP
    assert below.challenger == pytest.approx(0.5)
    assert "<= 0.400" in below.reason and "maximum" in below.reason


def test_same_seed_same_interval_other_seed_other_interval(clear_case):
    labels, challenger, champion = clear_case
    first = judge_challenger(labels, challenger, champion, seed=7)
    again = judge_challenger(labels, challenger, champion, seed=7)
    other = judge_challenger(labels, challenger, champion, seed=8)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.decision is other.decision is Decision.PROMOTE


def test_reason_and_dict(clear_case):
    labels, challenger, champion = clear_case
    result = judge_challenger(labels, challenger, champion)
    assert "roc_auc" in result.reason
    assert f"{result.challenger:.3f}" in result.reason and f"{result.champion:.3f}" in result.reason
    assert "95% CI" in result.reason
    as_dict = result.to_dict()
    assert as_dict["decision"] == "promote" and type(as_dict["decision"]) is str
    assert set(as_dict) == {field for field in GateResult.__dataclass_fields__}
    assert json.loads(json.dumps(as_dict)) == as_dict
    first = judge_first_model(labels, champion, min_quality=0.9).to_dict()
    assert json.loads(json.dumps(first))["champion"] is None


LABELS = np.array([0, 1, 0, 1, 1, 0])
SCORES = np.array([0.2, 0.7, 0.4, 0.9, 0.6, 0.3])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"metric": "f1"}, "unknown gate metric 'f1'; known: accuracy, log_loss, mae, pearson, rmse, roc_auc"),
        ({"champion_scores": SCORES[:-1]}, "got lengths labels 6, challenger scores 6, champion scores 5"),
        ({"labels": [], "challenger_scores": [], "champion_scores": []}, "test set is empty"),
        ({"confidence": 0.0}, "confidence must be a number in \\(0, 1\\)"),
        ({"confidence": 1.0}, "confidence must be a number in \\(0, 1\\)"),
        ({"bootstrap_samples": 99}, "bootstrap_samples must be an integer >= 100, got 99"),
        ({"challenger_scores": np.r_[SCORES[:-1], np.nan]}, "challenger scores contain NaN"),
        ({"champion_scores": np.r_[np.nan, SCORES[1:]]}, "champion scores contain NaN"),
        ({"min_improvement": float("nan")}, "min_improvement must be a finite number"),
        ({"metric": "accuracy", "champion_threshold": float("nan")}, "champion_threshold must be a finite number"),
        # Two pairs: about half the resamples draw one class only and have no AUC.
        ({"labels": [0, 1], "challenger_scores": [0.2, 0.8], "champion_scores": [0.3, 0.6], "seed": 1}, "only 476 of 1000"),
    ],
)
def test_judge_challenger_rejects(arguments, message):
    call = {"labels": LABELS, "challenger_scores": SCORES, "champion_scores": SCORES[::-1]} | arguments
    with pytest.raises(ValueError, match=message):
        judge_challenger(**call)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"metric": "auc"}, "unknown gate metric 'auc'; known: accuracy, log_loss, mae, pearson, rmse, roc_auc"),
        ({"challenger_scores": SCORES[:3]}, "got lengths labels 6, challenger scores 3"),
        ({"labels": [], "challenger_scores": []}, "test set is empty"),
        ({"challenger_scores": np.r_[np.nan, SCORES[1:]]}, "challenger scores contain NaN"),
        ({"min_quality": float("nan")}, "min_quality must be a finite number"),
        ({"metric": "accuracy", "threshold": None}, "threshold must be a finite number, got None"),
        ({"confidence": 1.0}, "confidence must be a number in \\(0, 1\\)"),
        ({"bootstrap_samples": 10}, "bootstrap_samples must be an integer >= 100, got 10"),
    ],
)
def test_judge_first_model_rejects(arguments, message):
    call = {"labels": LABELS, "challenger_scores": SCORES, "min_quality": 0.6} | arguments
    with pytest.raises(ValueError, match=message):
        judge_first_model(**call)


def test_first_model_without_a_bar_is_promoted_and_says_so():
    targets, predictions = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.5])
    result = judge_first_model(targets, predictions, metric="mae", min_quality=None, min_test_pairs=0)
    assert result.decision is Decision.PROMOTE
    assert "no quality bar set" in result.reason and result.challenger == pytest.approx(1 / 3)


# A first model against the strongest baseline of its run


def test_strongest_baseline_is_the_highest_auc_and_ignores_other_metrics():
    baselines = {"majority_auc": 0.5, "tfidf_cosine_auc": 0.71, "siamese_linear_auc": 0.83, "siamese_linear_accuracy": 0.95, "char_tfidf_pearson": 0.99}
    assert gate.strongest_baseline(baselines, "roc_auc") == ("siamese_linear", 0.83)
    assert gate.strongest_baseline({"tfidf_cosine_accuracy": 0.9}, "roc_auc") is None
    assert gate.strongest_baseline({}, "roc_auc") is None


def test_first_model_must_beat_the_strongest_baseline(clear_case):
    labels, challenger, champion = clear_case  # AUCs about 1.0 and 0.7
    baselines = {"majority_auc": 0.5, "tfidf_cosine_auc": 0.9, "siamese_linear_accuracy": 0.99}
    beats = judge_first_model(labels, challenger, min_quality=None, baselines=baselines)
    assert beats.decision is Decision.PROMOTE and "beats the strongest baseline, tfidf_cosine 0.900" in beats.reason
    kept = judge_first_model(labels, champion, min_quality=None, baselines=baselines)
    assert kept.decision is Decision.KEEP
    assert "strongest baseline" in kept.reason and "tfidf_cosine" in kept.reason and "no champion is set" in kept.reason


def test_first_model_with_a_bar_and_baselines_must_clear_both(clear_case):
    labels, challenger, champion = clear_case
    champion_auc = judge_first_model(labels, champion, min_quality=None).challenger
    above_baseline = {"tfidf_cosine_auc": champion_auc - 0.05}
    below_baseline = {"tfidf_cosine_auc": champion_auc + 0.05}
    assert judge_first_model(labels, champion, min_quality=champion_auc - 0.1, baselines=above_baseline).decision is Decision.PROMOTE
    misses_bar = judge_first_model(labels, champion, min_quality=champion_auc + 0.1, baselines=above_baseline)
    assert misses_bar.decision is Decision.KEEP and "misses the bar" in misses_bar.reason and "beats the strongest baseline" in misses_bar.reason
    misses_baseline = judge_first_model(labels, champion, min_quality=champion_auc - 0.1, baselines=below_baseline)
    assert misses_baseline.decision is Decision.KEEP
    assert "meets the bar" in misses_baseline.reason and "does not beat the strongest baseline, tfidf_cosine" in misses_baseline.reason


# A first model is judged on its interval, and only on enough test pairs


def test_a_first_model_whose_point_estimate_clears_the_bar_but_not_its_interval_is_kept():
    """200 pairs at test AUC about 0.65: over a 0.6 bar as a point estimate, not with 95% confidence."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = noisy_scores(rng, labels, 0.15, 0.3)
    result = judge_first_model(labels, scores, min_quality=0.6)
    assert result.challenger > 0.6 > result.ci_low, "the case this test is about"
    assert result.decision is Decision.KEEP
    assert f"CI {result.ci_low:.3f}..{result.ci_high:.3f}" in result.reason and "misses the bar >= 0.600" in result.reason
    assert judge_first_model(labels, scores, min_quality=result.ci_low - 0.01).decision is Decision.PROMOTE


def test_a_first_model_must_beat_a_baseline_with_its_lower_bound(clear_case):
    labels, _, champion = clear_case
    judged = judge_first_model(labels, champion, min_quality=None)
    under_the_interval = {"tfidf_cosine_auc": judged.ci_low - 0.01}
    inside_the_interval = {"tfidf_cosine_auc": (judged.ci_low + judged.challenger) / 2}
    assert judge_first_model(labels, champion, min_quality=None, baselines=under_the_interval).decision is Decision.PROMOTE
    kept = judge_first_model(labels, champion, min_quality=None, baselines=inside_the_interval)
    assert kept.challenger > inside_the_interval["tfidf_cosine_auc"], "the point estimate alone would beat it"
    assert kept.decision is Decision.KEEP and "does not beat the strongest baseline" in kept.reason


def test_an_error_bar_is_judged_on_the_upper_end_of_the_interval():
    rng = np.random.default_rng(4)
    targets = rng.normal(0, 1, 300)
    predictions = targets + rng.normal(0, 1, 300)
    result = judge_first_model(targets, predictions, metric="mae", min_quality=None)
    between = (result.challenger + result.ci_high) / 2  # above the MAE, below its interval's upper end
    assert judge_first_model(targets, predictions, metric="mae", min_quality=between).decision is Decision.KEEP
    assert judge_first_model(targets, predictions, metric="mae", min_quality=result.ci_high + 0.01).decision is Decision.PROMOTE


def test_a_perfect_first_model_on_too_few_test_pairs_is_not_promoted():
    """Four pairs ranked perfectly: every resample's AUC is 1, a "certain" interval that says nothing."""
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])
    result = judge_first_model(labels, scores, min_quality=0.6)
    assert result.challenger == 1.0 and result.decision is Decision.KEEP
    assert "on only 4 test pairs: too few to judge (at least 50)" in result.reason and "no champion is set" in result.reason
    assert judge_first_model(labels, scores, min_quality=0.6, min_test_pairs=4).decision is Decision.PROMOTE
    rng = np.random.default_rng(6)
    fifty = rng.integers(0, 2, gate.MIN_JUDGED_PAIRS)
    assert judge_first_model(fifty, noisy_scores(rng, fifty, 0.9, 0.05), min_quality=0.6).decision is Decision.PROMOTE


def test_a_first_model_whose_resamples_mostly_lack_a_class_is_not_promoted():
    result = judge_first_model(np.array([0, 1]), np.array([0.2, 0.8]), min_quality=0.6, min_test_pairs=0, seed=1)
    assert result.decision is Decision.KEEP and result.ci_low is result.ci_high is None
    assert "too few resamples hold both classes to judge" in result.reason


def test_a_promotion_outpaced_by_a_concurrent_run_is_kept_and_says_by_whom(clear_case):
    labels, challenger, _ = clear_case
    promoted = judge_first_model(labels, challenger, min_quality=0.6)
    kept = gate.outpaced(promoted, "7")
    assert promoted.reason.endswith("so it becomes champion") and kept.decision is Decision.KEEP and kept.outpaced_by == "7"
    assert "becomes champion" not in kept.reason
    assert kept.reason.endswith("; but version 7 became champion while it was judged (a concurrent run), so it stays challenger")
    assert kept.challenger == promoted.challenger and json.loads(json.dumps(kept.to_dict()))["outpaced_by"] == "7"
