"""The registry gate's steps: check inputs, score a version, judge, record the decision, move the champion alias.

`flows/gate.py` runs them in order as the `registry-gate` subflow; each is a task, so the flow
run's page shows where a decision came from. Scores go to `.npy` files in the run's work
directory: tasks hand each other paths (with each version's decision threshold beside them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siamese.config import Config
from siamese.evaluation import DEFAULT_THRESHOLD
from siamese.families import family_of
from siamese.gate import GateResult, judge_challenger, judge_first_model
from tasks.registry import champion_version, check_same_inputs, claim_champion, version_scores
from tasks.store import mlflow_client
from tasks.tracking import LOGGING_TASK, MAX_TAG_LENGTH, reports_a_silent_server


@dataclass(frozen=True)
class VersionScores:
    """A registered version's scores on the test split, and the threshold it decides at."""

    path: Path  # a `.npy` file of one score per test pair
    threshold: float  # stored with the version; DEFAULT_THRESHOLD for one registered without (or graded: unused)


@task(name="find-champion", cache_policy=NO_CACHE)
@reports_a_silent_server
def find_champion(name: str) -> str | None:
    """The registered model's champion version, or None when it has none yet."""
    return champion_version(name)


@task(name="check-inputs", cache_policy=NO_CACHE)
@reports_a_silent_server
def check_inputs(name: str, version: str, champion: str) -> None:
    """Refuse a version whose inputs differ from the champion's, before anything is scored (`check_same_inputs`)."""
    check_same_inputs(name, version, champion)


@task(name="score-version", cache_policy=NO_CACHE)
@reports_a_silent_server
def score_version(model_uri: str, test_path: Path, config: Config, output_path: Path) -> VersionScores:
    """Score the test split with a registered version, loaded from the registry as serving would load it.

    Its stored threshold comes along: the gate's `accuracy` judges the decisions the version makes.

    Raises:
        MlflowException, OSError, ValueError: the version cannot be loaded or scored; it is then never promoted.
    """
    family = family_of(config.kind)
    scores, threshold = version_scores(model_uri, family.load_split(config, test_path), family.model_format)
    np.save(output_path, scores)
    get_run_logger().info("scored %d test pairs with %s", len(scores), model_uri)
    return VersionScores(output_path, DEFAULT_THRESHOLD if threshold is None else threshold)


@task(name="judge-challenger", cache_policy=NO_CACHE)
def judge(
    config: Config,
    test_path: Path,
    challenger: VersionScores,
    champion: VersionScores | None,
    baselines: dict[str, float] | None = None,
) -> GateResult:
    """A first model against its bar; a challenger against the champion with a paired bootstrap (`siamese.gate`).

    A first model's bar: `gate.min_quality` when set; by default the default bar
    (`GateConfig.quality_bar`) and the strongest of the run's `baselines` on the gate metric.
    Either is judged only on at least `gate.min_test_pairs` test pairs, and must be cleared by the
    worse end of the metric's bootstrap interval. `accuracy` judges each version at its own threshold.
    """
    labels = family_of(config.kind).load_split(config, test_path).labels
    gate = config.gate
    metric = gate.metric_for(config.task)
    challenger_scores = np.load(challenger.path)
    if champion is None:
        # An explicit gate.min_quality is the whole bar (the user's call); by default the model must also beat the baselines.
        result = judge_first_model(
            labels,
            challenger_scores,
            metric=metric,
            min_quality=gate.quality_bar(config.task),
            baselines=None if gate.min_quality is not None else baselines,
            threshold=challenger.threshold,
            bootstrap_samples=gate.bootstrap_samples,
            confidence=gate.confidence,
            seed=config.seed,
            min_test_pairs=gate.min_test_pairs,
        )
    else:
        result = judge_challenger(
            labels,
            challenger_scores,
            np.load(champion.path),
            metric=metric,
            min_improvement=gate.min_improvement,
            bootstrap_samples=gate.bootstrap_samples,
            confidence=gate.confidence,
            seed=config.seed,
            challenger_threshold=challenger.threshold,
            champion_threshold=champion.threshold,
        )
    get_run_logger().info("gate: %s: %s", result.decision, result.reason)
    return result


@task(name="record-gate-decision", **LOGGING_TASK)
@reports_a_silent_server
def record_decision(run_id: str, name: str, version: str, champion: str | None, result: GateResult) -> None:
    """The decision and its numbers as `gate.*` tags on the challenger (and its run), a note on the champion."""
    client = mlflow_client()
    tags = {f"gate.{key}": "" if value is None else str(value) for key, value in result.to_dict().items()}
    tags["gate.champion_version"] = champion or ""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(run_id, key, value[:MAX_TAG_LENGTH])
    client.update_model_version(name, version, description=f"Gate: {result.decision} - {result.reason}")
    if champion is not None:
        note = f"version {version}: {result.decision} - {result.reason}"
        client.set_model_version_tag(name, champion, "gate.last_challenge", note[:MAX_TAG_LENGTH])


@task(name="move-champion-alias", cache_policy=NO_CACHE)
@reports_a_silent_server
def move_champion_alias(name: str, version: str, judged_against: str | None) -> str | None:
    """Point `champion` at the promoted version unless a concurrent run moved it since the gate judged; returns the champion after.

    The last step, after the decision is recorded (`claim_champion`: under the store's registry lock).
    """
    return claim_champion(name, version, judged_against)
