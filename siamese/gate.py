"""Champion/challenger gate: may a newly trained model version replace the registered champion?

A retrained model that scores a little higher on one test split is not necessarily better: on a
few hundred pairs the difference is often noise, and promoting on noise makes the served model
drift back and forth between runs. So the challenger and the champion are scored on the SAME
test pairs and compared with a paired bootstrap: every resample draws one set of pair indices
and scores both models on it, so the variation the two share (easy or hard pairs) cancels, and
the challenger is promoted only when the whole confidence interval of its improvement clears
the bar. A first model has nothing to beat and only has to reach a minimum quality (and, by
default, the run's baselines): judged the same way, on the worse end of a bootstrap interval of
its metric, and only on enough test pairs to judge at all.

The caller computes both models' scores (and passes each version's stored decision threshold,
at which `accuracy` judges it); this module only decides, with pure numpy.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from siamese.config import MIN_JUDGED_PAIRS
from siamese.evaluation import DEFAULT_THRESHOLD, LOG_LOSS_EPSILON, evaluate_regression, evaluate_scores, pearson, roc_auc

MIN_BOOTSTRAP_SAMPLES = 100  # fewer resamples make the tails of the interval, which decide, mostly noise
BECOMES_CHAMPION = "so it becomes champion"  # how a first model's promoting reason ends
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
    ci_low: float | None  # bootstrap confidence interval of the improvement (a first model: of its metric)
    ci_high: float | None  # both None for a first model whose resamples mostly lack a class
    test_pairs: int
    outpaced_by: str | None = None  # the version a concurrent run made champion while this one was judged (`outpaced`)

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
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    min_test_pairs: int = MIN_JUDGED_PAIRS,
) -> GateResult:
    """Whether the first version of a registered model may become its champion.

    With no champion to beat, a model that learned nothing would otherwise be served; so it must
    reach `min_quality`: at least that for metrics where higher is better, at most that for
    errors (`mae`, `rmse`, `log_loss`), where the bar is a maximum. As for a challenger, a point
    estimate is not enough: the worse end of the metric's bootstrap interval (`bootstrap_samples`
    resamples of the test pairs, central `confidence` share) must clear every bar, and with fewer
    than `min_test_pairs` test pairs the model is not promoted at all.

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
        bootstrap_samples: resamples to draw (at least 100).
        confidence: the interval's coverage, in (0, 1).
        seed: seeds `np.random.default_rng`, so a decision can be reproduced.
        min_test_pairs: fewer test pairs than this are too few to judge (0: judge any number).

    Returns:
        PROMOTE if the interval clears every bar on enough test pairs, else KEEP (no champion is set).

    Raises:
        ValueError: unknown metric, empty test set, lengths differ, NaN or infinite values,
            a non-finite bar, `confidence` or `bootstrap_samples` out of range, or labels the
            metric cannot use.
    """
    gate_metric = _gate_metric(metric)
    _require_bootstrap(bootstrap_samples, confidence)
    labels, challenger_scores = _validated_arrays(labels, challenger_scores)
    judged_scores = _judged(gate_metric, challenger_scores, threshold, "threshold")
    value = float(gate_metric.compute(labels, judged_scores))
    values = _bootstrap_values(gate_metric, labels, judged_scores, bootstrap_samples, np.random.default_rng(seed))
    interval = _interval(values, bootstrap_samples, confidence)
    # The pessimistic end decides: the lower bound of a score, the upper bound of an error.
    worst = None if interval is None else interval[0 if gate_metric.higher_is_better else 1]
    checks = [_enough_pairs(labels.size, min_test_pairs, interval is not None)]  # (passes, why) for each bar
    if min_quality is not None:
        _require_finite(min_quality, "min_quality")
        comparison = ">=" if gate_metric.higher_is_better else "<="
        meets = worst is not None and (worst >= min_quality if gate_metric.higher_is_better else worst <= min_quality)
        kind = "a minimum" if gate_metric.higher_is_better else "a maximum error"
        checks.append((meets, f"{'meets' if meets else 'misses'} the bar {comparison} {min_quality:.3f} ({kind})"))
    strongest = strongest_baseline(baselines or {}, metric, gate_metric.higher_is_better)
    if strongest is not None:
        name, bar = strongest
        beats = worst is not None and (worst > bar if gate_metric.higher_is_better else worst < bar)
        checks.append((beats, f"{'beats' if beats else 'does not beat'} the strongest baseline, {name} {bar:.3f}"))
    passes = all(check for check, _ in checks)
    judged = f"first model {metric} {value:.3f}{_at(gate_metric, threshold)}"
    if interval is not None:
        judged += f" ({confidence * 100:g}% CI {interval[0]:.3f}..{interval[1]:.3f})"
    if len(checks) == 1 and passes:
        reason = f"{judged} {checks[0][1]}, no quality bar set (gate.min_quality), {BECOMES_CHAMPION}"
    else:
        outcome = BECOMES_CHAMPION if passes else "so it stays challenger only and no champion is set"
        reason = f"{judged} {', '.join(why for _, why in checks)}, {outcome}"
    return GateResult(
        decision=Decision.PROMOTE if passes else Decision.KEEP,
        reason=reason,
        metric=metric,
        challenger=value,
        champion=None,
        improvement=None,
        ci_low=None if interval is None else interval[0],
        ci_high=None if interval is None else interval[1],
        test_pairs=int(labels.size),
    )


def outpaced(result: GateResult, champion: str) -> GateResult:
    """A promotion that lost the race for the alias: version `champion` became champion while this one was judged.

    Two runs judged against the same champion (or both as first models) cannot both take its
    place; the second to move the alias keeps its judgement, but not the alias.
    """
    judged = result.reason.removesuffix(f", {BECOMES_CHAMPION}")
    reason = f"{judged}; but version {champion} became champion while it was judged (a concurrent run), so it stays challenger"
    return dataclasses.replace(result, decision=Decision.KEEP, reason=reason, outpaced_by=champion)


def _enough_pairs(test_pairs: int, min_test_pairs: int, resampled: bool) -> tuple[bool, str]:
    """Whether a first model's test set is large enough to judge it on, and the words for its reason."""
    if test_pairs < min_test_pairs:
        return False, f"on only {test_pairs} test pairs: too few to judge (at least {min_test_pairs})"
    if not resampled:
        return False, f"on {test_pairs} test pairs: too few resamples hold both classes to judge"
    return True, f"on {test_pairs} test pairs"


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
    _require_bootstrap(bootstrap_samples, confidence)
    labels, challenger_scores, champion_scores = _validated_arrays(labels, challenger_scores, champion_scores)
    challenger_scores = _judged(gate_metric, challenger_scores, challenger_threshold, "challenger_threshold")
    champion_scores = _judged(gate_metric, champion_scores, champion_threshold, "champion_threshold")

    challenger = float(gate_metric.compute(labels, challenger_scores))
    champion = float(gate_metric.compute(labels, champion_scores))
    improvement = float(_signed(gate_metric, np.float64(challenger - champion)))
    rng = np.random.default_rng(seed)
    improvements = _bootstrap_improvements(gate_metric, labels, challenger_scores, champion_scores, bootstrap_samples, rng)
    interval = _interval(improvements, bootstrap_samples, confidence)
    if interval is None:
        usable = int(np.sum(~np.isnan(improvements)))
        raise ValueError(
            f"only {usable} of {bootstrap_samples} resamples of the {labels.size} test pairs could be scored "
            f"with {metric} (each needs both classes): the test set is too small to judge on"
        )
    ci_low, ci_high = interval

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
    blocks = []
    for counts in _resample_counts(labels.size, samples, rng):
        # Both models see the same counts: that pairing is what cancels the shared noise.
        difference = metric.resample(labels, challenger_scores, counts) - metric.resample(labels, champion_scores, counts)
        blocks.append(_signed(metric, difference))
    return np.concatenate(blocks)


def _bootstrap_values(
    metric: GateMetric, labels: np.ndarray, scores: np.ndarray, samples: int, rng: np.random.Generator
) -> np.ndarray:
    """One model's metric on each of `samples` resamples (NaN where the metric is undefined): a first model's interval."""
    return np.concatenate([metric.resample(labels, scores, counts) for counts in _resample_counts(labels.size, samples, rng)])


def _resample_counts(size: int, samples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`samples` bootstrap resamples of `size` pairs, in blocks: `counts[r, i]` is how often resample `r` drew pair `i`."""
    rows_per_block = max(1, _BLOCK_ELEMENTS // size)
    for start in range(0, samples, rows_per_block):
        rows = min(rows_per_block, samples - start)
        indices = rng.integers(0, size, size=(rows, size))
        yield np.bincount((indices + size * np.arange(rows)[:, None]).ravel(), minlength=rows * size).reshape(rows, size)


def _interval(values: np.ndarray, samples: int, confidence: float) -> tuple[float, float] | None:
    """The central `confidence` share of the resampled values; None when under half of them have a value (NaN)."""
    usable = values[~np.isnan(values)]
    if usable.size < samples / 2:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(usable, [tail, 1 - tail])
    return float(low), float(high)


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


def _require_bootstrap(samples: int, confidence: float) -> None:
    if not (isinstance(confidence, numbers.Real) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < MIN_BOOTSTRAP_SAMPLES:
        raise ValueError(f"bootstrap_samples must be an integer >= {MIN_BOOTSTRAP_SAMPLES}, got {samples!r}")


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
