"""Champion/challenger gate: may a newly trained model version replace the registered champion?

A retrained model that scores a little higher on one test split is not necessarily better: on a
few hundred pairs the difference is often noise, and promoting on noise makes the served model
drift back and forth between runs. So the challenger and the champion are scored on the SAME
test pairs and compared with a paired bootstrap: every resample draws one set of pair indices
and scores both models on it, so the variation the two share (easy or hard pairs) cancels, and
the challenger is promoted only when the whole confidence interval of its improvement clears
the bar. A first model has nothing to beat and only has to reach a minimum quality.

The caller computes both models' scores (and passes each version's stored decision threshold,
at which `accuracy` judges it); this module only decides, with pure numpy.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from siamese.evaluation import DEFAULT_THRESHOLD, LOG_LOSS_EPSILON, evaluate_regression, evaluate_scores, pearson, roc_auc

MIN_BOOTSTRAP_SAMPLES = 100  # fewer resamples make the tails of the interval, which decide, mostly noise
_BLOCK_ELEMENTS = 1 << 22  # resample counts held at once (32 MiB of int64), so large test sets stay in memory


@dataclass(frozen=True)
class GateMetric:
    """A metric the gate may compare models on.

    `compute` gives the value on the whole test set with the same code that produces the
    logged test metrics, so the gate's numbers match what reviewers see. `resample` gives it on
    many bootstrap resamples at once: `counts[r, i]` is how often resample `r` drew pair `i`,
    which turns every resample into one row of a matrix product instead of a Python loop.

    A metric that `decides` (accuracy) judges each version on its decisions at its own threshold,
    the one its test metrics and `siamese score` decide at (`_judged`), not at a fixed 0.5.
    """

    name: str
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]  # (labels, scores) -> value
    # (labels, scores, counts) -> one value per row of counts; NaN where a resample has no value
    resample: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    decides: bool = False  # judged on decisions (score >= the version's threshold), not on scores


class Decision(StrEnum):
    PROMOTE = "promote"  # the challenger becomes champion
    KEEP = "keep"  # the champion stays: the challenger is not better with confidence (or a first model is below the bar)


@dataclass(frozen=True)
class GateResult:
    """The gate's decision with the numbers behind it, ready to log as tags or a JSON artifact."""

    decision: Decision
    reason: str  # one sentence with the numbers, for a reviewer reading the registry
    metric: str
    challenger: float  # the metric on the full test set
    champion: float | None  # None for a first model
    improvement: float | None  # challenger - champion, signed so that positive is better; None for a first model
    ci_low: float | None  # bootstrap confidence interval of the improvement
    ci_high: float | None
    test_pairs: int

    def to_dict(self) -> dict[str, object]:
        """Flat and JSON-able: the decision as its string value."""
        return dataclasses.asdict(self) | {"decision": self.decision.value}


# The suffix of a baseline's logged value for each gate metric (`siamese.baselines`).
BASELINE_SUFFIXES = {"roc_auc": "_auc", "accuracy": "_accuracy", "pearson": "_pearson", "mae": "_mae", "rmse": "_rmse"}


def strongest_baseline(baselines: Mapping[str, float], metric: str, higher_is_better: bool = True) -> tuple[str, float] | None:
    """The best baseline on `metric` as `(name, value)`, or None; the majority class's 0.5 AUC counts like any other."""
    suffix = BASELINE_SUFFIXES.get(metric)
    candidates = {key.removesuffix(suffix): value for key, value in baselines.items() if suffix and key.endswith(suffix) and math.isfinite(value)}
    if not candidates:
        return None
    pick = max if higher_is_better else min
    name = pick(candidates, key=candidates.__getitem__)
    return name, float(candidates[name])


def judge_first_model(
    labels: np.ndarray,
    challenger_scores: np.ndarray,
    *,
    metric: str = "roc_auc",
    min_quality: float | None,
    baselines: Mapping[str, float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> GateResult:
    """Whether the first version of a registered model may become its champion.

    With no champion to beat, a model that learned nothing would otherwise be served; so it must
    reach `min_quality`: at least that for metrics where higher is better, at most that for
    errors (`mae`, `rmse`, `log_loss`), where the bar is a maximum.

    Args:
        labels: the test pairs' labels (0/1 for similarity metrics) or targets (regression).
        challenger_scores: the model's scores in 0..1 or predictions, one per test pair.
        metric: a key of `GATE_METRICS`.
        min_quality: the bar; None for no bar (a verified model is promoted), or the baselines'.
        baselines: the run's baselines on the same test pairs (`name_metric -> value`, e.g.
            `siamese_linear_auc`); the model must also beat the strongest of them on `metric`:
            a model that a TF-IDF cosine outscores should not be served, however far it is
            above a fixed bar. None or empty: the bar alone.
        threshold: the model's decision threshold (calibrated on validation), for `accuracy`.

    Returns:
        PROMOTE if the metric meets the bar, else KEEP (no champion is set).

    Raises:
        ValueError: unknown metric, empty test set, lengths differ, NaN or infinite values,
            a non-finite bar, or labels the metric cannot use.
    """
    gate_metric = _gate_metric(metric)
    labels, challenger_scores = _validated_arrays(labels, challenger_scores)
    value = float(gate_metric.compute(labels, _judged(gate_metric, challenger_scores, threshold, "threshold")))
    checks = []  # (passes, why) for each bar the model must clear
    if min_quality is not None:
        _require_finite(min_quality, "min_quality")
        comparison = ">=" if gate_metric.higher_is_better else "<="
        meets = value >= min_quality if gate_metric.higher_is_better else value <= min_quality
        kind = "a minimum" if gate_metric.higher_is_better else "a maximum error"
        checks.append((meets, f"{'meets' if meets else 'misses'} the bar {comparison} {min_quality:.3f} ({kind})"))
    strongest = strongest_baseline(baselines or {}, metric, gate_metric.higher_is_better)
    if strongest is not None:
        name, bar = strongest
        beats = value > bar if gate_metric.higher_is_better else value < bar
        checks.append((beats, f"{'beats' if beats else 'does not beat'} the strongest baseline, {name} {bar:.3f}"))
    passes = all(check for check, _ in checks)
    judged = f"first model {metric} {value:.3f}{_at(gate_metric, threshold)}"
    if not checks:
        reason = f"{judged}, no quality bar set (gate.min_quality), so it becomes champion"
    else:
        outcome = "so it becomes champion" if passes else "so it stays challenger only and no champion is set"
        reason = f"{judged} {' and '.join(why for _, why in checks)}, {outcome}"
    return GateResult(
        decision=Decision.PROMOTE if passes else Decision.KEEP,
        reason=reason,
        metric=metric,
        challenger=value,
        champion=None,
        improvement=None,
        ci_low=None,
        ci_high=None,
        test_pairs=int(labels.size),
    )


def judge_challenger(
    labels: np.ndarray,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    *,
    metric: str = "roc_auc",
    min_improvement: float = 0.0,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    challenger_threshold: float = DEFAULT_THRESHOLD,
    champion_threshold: float = DEFAULT_THRESHOLD,
) -> GateResult:
    """Whether the challenger beats the champion on the same test pairs, with confidence.

    Paired bootstrap: each of `bootstrap_samples` resamples draws test indices with replacement,
    the same indices for both models, and takes the improvement (challenger minus champion,
    signed so that positive is better) on them. The interval is the central `confidence` share
    of those improvements, and the challenger is promoted only if its lower bound is above
    `min_improvement`: identical models give exactly 0..0 and are kept. For `roc_auc`,
    resamples that drew a single class have no AUC and are skipped.

    Args:
        labels: the test pairs' labels (0/1 for similarity metrics) or targets (regression).
        challenger_scores: the new model's scores or predictions, one per test pair.
        champion_scores: the current champion's, on the same pairs in the same order.
        metric: a key of `GATE_METRICS`.
        min_improvement: how much better, in the metric's units, the challenger must be.
        bootstrap_samples: resamples to draw (at least 100).
        confidence: the interval's coverage, in (0, 1).
        seed: seeds `np.random.default_rng`, so a decision can be reproduced.
        challenger_threshold, champion_threshold: each version's own decision threshold (calibrated
            on its validation split), for `accuracy`: each is judged on the decisions it would make.

    Returns:
        PROMOTE if the interval's lower bound exceeds `min_improvement`, else KEEP.

    Raises:
        ValueError: unknown metric, empty test set, lengths differ, NaN or infinite values,
            `confidence` outside (0, 1), `bootstrap_samples` below 100, labels the metric
            cannot use, or (roc_auc) fewer than half the resamples holding both classes.
    """
    gate_metric = _gate_metric(metric)
    _require_finite(min_improvement, "min_improvement")
    if not (isinstance(confidence, numbers.Real) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if (
        isinstance(bootstrap_samples, bool)
        or not isinstance(bootstrap_samples, numbers.Integral)
        or bootstrap_samples < MIN_BOOTSTRAP_SAMPLES
    ):
        raise ValueError(f"bootstrap_samples must be an integer >= {MIN_BOOTSTRAP_SAMPLES}, got {bootstrap_samples!r}")
    labels, challenger_scores, champion_scores = _validated_arrays(labels, challenger_scores, champion_scores)
    challenger_scores = _judged(gate_metric, challenger_scores, challenger_threshold, "challenger_threshold")
    champion_scores = _judged(gate_metric, champion_scores, champion_threshold, "champion_threshold")

    challenger = float(gate_metric.compute(labels, challenger_scores))
    champion = float(gate_metric.compute(labels, champion_scores))
    improvement = float(_signed(gate_metric, np.float64(challenger - champion)))
    rng = np.random.default_rng(seed)
    improvements = _bootstrap_improvements(gate_metric, labels, challenger_scores, champion_scores, bootstrap_samples, rng)
    usable = improvements[~np.isnan(improvements)]
    if usable.size < bootstrap_samples / 2:
        raise ValueError(
            f"only {usable.size} of {bootstrap_samples} resamples of the {labels.size} test pairs could be scored "
            f"with {metric} (each needs both classes): the test set is too small to judge on"
        )
    tail = (1 - confidence) / 2
    ci_low, ci_high = (float(bound) for bound in np.quantile(usable, [tail, 1 - tail]))

    promote = ci_low > min_improvement
    direction = "" if gate_metric.higher_is_better else " (lower is better)"
    comparison = ">" if promote else "is not above"
    return GateResult(
        decision=Decision.PROMOTE if promote else Decision.KEEP,
        reason=(
            f"challenger {metric} {challenger:.3f}{_at(gate_metric, challenger_threshold)} vs champion "
            f"{champion:.3f}{_at(gate_metric, champion_threshold)}{direction}: "
            f"{improvement:+.3f} ({confidence * 100:g}% CI {ci_low:+.3f}..{ci_high:+.3f}) "
            f"{comparison} min improvement {min_improvement:.3f}"
        ),
        metric=metric,
        challenger=challenger,
        champion=champion,
        improvement=improvement,
        ci_low=ci_low,
        ci_high=ci_high,
        test_pairs=int(labels.size),
    )


def _judged(metric: GateMetric, scores: np.ndarray, threshold: float, name: str) -> np.ndarray:
    """What `metric` judges a version on: its scores, or its decisions at its threshold (1.0 / 0.0) if it `decides`.

    A version decides `similar when score >= its threshold`, so comparing two versions at one
    fixed 0.5 would judge decisions neither of them makes. A 0/1 decision is its own decision at
    `DEFAULT_THRESHOLD`, at which `compute` and `resample` count correct decisions.
    """
    if not metric.decides:
        return scores
    _require_finite(threshold, name)
    return (scores >= threshold).astype(np.float64)


def _at(metric: GateMetric, threshold: float) -> str:
    """The threshold a deciding metric was judged at, for the reason; nothing for the others."""
    return f" at threshold {threshold:.4g}" if metric.decides else ""


def _bootstrap_improvements(
    metric: GateMetric,
    labels: np.ndarray,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    samples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Signed improvement on each of `samples` paired resamples (NaN where the metric is undefined)."""
    size = labels.size
    rows_per_block = max(1, _BLOCK_ELEMENTS // size)
    blocks = []
    for start in range(0, samples, rows_per_block):
        rows = min(rows_per_block, samples - start)
        indices = rng.integers(0, size, size=(rows, size))
        # Both models see the same counts: that pairing is what cancels the shared noise.
        counts = np.bincount((indices + size * np.arange(rows)[:, None]).ravel(), minlength=rows * size).reshape(rows, size)
        difference = metric.resample(labels, challenger_scores, counts) - metric.resample(labels, champion_scores, counts)
        blocks.append(_signed(metric, difference))
    return np.concatenate(blocks)


def _signed(metric: GateMetric, difference: np.ndarray) -> np.ndarray:
    """Flip error metrics' differences, so that a positive improvement is always better."""
    return difference if metric.higher_is_better else -difference


def _resampled_roc_auc(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUC of each resample as a count-weighted Mann-Whitney statistic, ties counting half.

    Sorting once and summing counts within runs of tied scores gives, per resample, how many
    drawn negatives score below (and level with) each drawn positive, without re-ranking rows.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    tie_starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    positive = labels[order] == 1
    weights = counts[:, order]
    positives = np.add.reduceat(weights * positive, tie_starts, axis=1)
    negatives = np.add.reduceat(weights * ~positive, tie_starts, axis=1)
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    ordered_pairs = np.sum(positives * (negatives_below + negatives / 2), axis=1)
    all_pairs = (positives.sum(axis=1) * negatives.sum(axis=1)).astype(np.float64)
    return np.divide(ordered_pairs, all_pairs, out=np.full(len(counts), np.nan), where=all_pairs > 0)


def _accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    return evaluate_scores(labels, scores, DEFAULT_THRESHOLD).metrics["accuracy"]


def _log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    return evaluate_scores(labels, scores, DEFAULT_THRESHOLD).metrics["log_loss"]


def _mae(targets: np.ndarray, predictions: np.ndarray) -> float:
    return evaluate_regression(targets, predictions, baseline=0.0)["mae"]  # the baseline does not enter the MAE


def _rmse(targets: np.ndarray, predictions: np.ndarray) -> float:
    return evaluate_regression(targets, predictions, baseline=0.0)["rmse"]


def _correct(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return ((scores >= DEFAULT_THRESHOLD) == (labels == 1)).astype(np.float64)


def _pair_log_loss(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    return -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))


def _absolute_error(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    return np.abs(predictions - targets)


def _squared_error(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    return (predictions - targets) ** 2


def _resampled_mean(
    per_pair: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A metric that averages a per-pair value: each resample's mean is one row of `counts @ values`."""

    def resample(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return counts @ per_pair(labels, scores) / labels.size

    return resample


def _resampled_rmse(targets: np.ndarray, predictions: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.sqrt(_resampled_mean(_squared_error)(targets, predictions, counts))


def _resampled_pearson(targets: np.ndarray, predictions: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pearson's correlation of each resample from count-weighted moments (0.0 where a side is constant, as `pearson`).

    Centred first, so that scores far from zero (a 1-5 scale) lose no precision in the differences
    of moments; a spread below a billionth of the whole set's counts as constant (rounding, not data).
    """
    targets, predictions = targets - targets.mean(), predictions - predictions.mean()

    def moment(values: np.ndarray) -> np.ndarray:
        return counts @ values / targets.size

    mean_target, mean_prediction = moment(targets), moment(predictions)
    covariance = moment(targets * predictions) - mean_target * mean_prediction
    target_variance = np.maximum(moment(targets**2) - mean_target**2, 0.0)
    prediction_variance = np.maximum(moment(predictions**2) - mean_prediction**2, 0.0)
    spread = np.sqrt(target_variance * prediction_variance)
    constant = spread <= 1e-9 * np.sqrt(np.mean(targets**2) * np.mean(predictions**2))
    return np.divide(covariance, spread, out=np.zeros(len(counts)), where=~constant)


GATE_METRICS: dict[str, GateMetric] = {
    metric.name: metric
    for metric in (
        # similarity: labels 0/1, scores 0..1
        GateMetric("roc_auc", True, roc_auc, _resampled_roc_auc),
        GateMetric("accuracy", True, _accuracy, _resampled_mean(_correct), decides=True),
        GateMetric("log_loss", False, _log_loss, _resampled_mean(_pair_log_loss)),
        # regression: numeric targets and predictions
        GateMetric("mae", False, _mae, _resampled_mean(_absolute_error)),
        GateMetric("rmse", False, _rmse, _resampled_rmse),
        GateMetric("pearson", True, pearson, _resampled_pearson),
    )
}


def _gate_metric(name: str) -> GateMetric:
    if name not in GATE_METRICS:
        raise ValueError(f"unknown gate metric {name!r}; known: {', '.join(sorted(GATE_METRICS))}")
    return GATE_METRICS[name]


def _require_finite(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _validated_arrays(labels: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Flat float arrays of one length (predictions often come as `(n, 1)`), checked to be finite."""
    names = ("labels", "challenger scores", "champion scores")[: 1 + len(scores)]
    arrays = tuple(np.asarray(array, dtype=np.float64).reshape(-1) for array in (labels, *scores))
    lengths = [array.size for array in arrays]
    if len(set(lengths)) > 1:
        described = ", ".join(f"{name} {length}" for name, length in zip(names, lengths))
        raise ValueError(f"labels and scores must have one value per test pair; got lengths {described}")
    if not lengths[0]:
        raise ValueError("the test set is empty: the gate needs the test pairs' labels and scores")
    for name, array in zip(names, arrays):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contain NaN or infinite values ({int(np.sum(~np.isfinite(array)))} of {array.size})")
    return arrays
