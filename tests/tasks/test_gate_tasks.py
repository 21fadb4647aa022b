"""The registry gate's steps called directly: find the champion, score versions from the registry, judge, record, move the alias."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mlflow import MlflowClient
from task_helpers import register_untrained, sequences_config

from siamese.config import GateConfig
from siamese.families import family_of
from siamese.gate import Decision
from tasks.gate import find_champion, judge, move_champion_alias, record_decision, score_version

NAME = "siamese-text-sequences"
SECOND_THRESHOLD = 0.47  # version 2's, as calibration would have stored it


@pytest.fixture(scope="module")
def versions(module_store, tmp_path_factory):
    """Two registered versions (seeds 0 and 1, the second with a decision threshold); the second's run holds the test split both are judged on."""
    first = register_untrained(sequences_config(), tmp_path_factory.mktemp("first"))
    second_config = dataclasses.replace(sequences_config(), seed=1)
    second = register_untrained(second_config, tmp_path_factory.mktemp("second"), threshold=SECOND_THRESHOLD)
    return first, second, second_config


@pytest.fixture(scope="module")
def scores(versions, tmp_path_factory):
    """Both versions' scores on the second run's test split, as the gate's score step writes them."""
    _, (_, paths, _, _), config = versions
    directory = tmp_path_factory.mktemp("scores")
    return {
        version: score_version.fn(f"models:/{NAME}/{version}", paths["test"], config, directory / f"v{version}.npy")
        for version in ("1", "2")
    }


def test_no_champion_before_the_first_promotion(versions):
    assert find_champion.fn(NAME) is None


def test_a_version_is_scored_from_the_registry_into_a_file_beside_its_threshold(versions, scores):
    _, (_, paths, _, _), config = versions
    assert scores["1"].path.suffix == ".npy"
    assert (scores["1"].threshold, scores["2"].threshold) == (0.5, SECOND_THRESHOLD), "0.5 for a version stored without one"
    one, two = np.load(scores["1"].path), np.load(scores["2"].path)
    assert len(one) == len(two) == len(family_of(config.kind).load_split(config, paths["test"]))
    assert np.all((one >= 0) & (one <= 1)) and not np.allclose(one, two), "two seeds, two models"


def test_a_first_model_is_judged_against_the_quality_bar(versions, scores):
    _, (_, paths, _, _), config = versions
    promoted = judge.fn(config, paths["test"], scores["2"], None)
    assert promoted.decision is Decision.PROMOTE and promoted.champion is None and promoted.metric == "roc_auc"
    unreachable = dataclasses.replace(config, gate=GateConfig(min_quality=0.99))
    kept = judge.fn(unreachable, paths["test"], scores["2"], None)
    assert kept.decision is Decision.KEEP and "0.99" in kept.reason



def test_an_explicit_min_quality_ignores_the_baselines_while_the_default_bar_uses_them(versions, scores):
    _, (_, paths, _, _), config = versions
    unbeatable = {"tfidf_cosine_auc": 0.999, "majority_auc": 0.5}
    default_bar = dataclasses.replace(config, gate=GateConfig())  # the helper's config sets min_quality 0.0
    default = judge.fn(default_bar, paths["test"], scores["2"], None, unbeatable)
    assert default.decision is Decision.KEEP and "strongest baseline, tfidf_cosine 0.999" in default.reason
    assert "too few to judge" in default.reason, "12 test pairs: the default bar needs 50"
    explicit = dataclasses.replace(config, gate=GateConfig(min_quality=0.0, min_test_pairs=0))
    promoted = judge.fn(explicit, paths["test"], scores["2"], None, unbeatable)
    assert promoted.decision is Decision.PROMOTE and "baseline" not in promoted.reason

def test_a_first_model_on_too_few_test_pairs_is_kept_and_the_reason_recorded(versions, scores, module_store):
    """12 test pairs: too few to judge at all, whatever the bar, unless `gate.min_test_pairs` says otherwise."""
    (registered, paths, _, run_id), _, config = versions
    default_bar = dataclasses.replace(config, gate=GateConfig(metric="roc_auc", bootstrap_samples=200))
    lenient = dataclasses.replace(default_bar, gate=GateConfig(min_quality=0.0, bootstrap_samples=200))
    assert "on only 12 test pairs: too few to judge" in judge.fn(lenient, paths["test"], scores["1"], None).reason
    any_number = dataclasses.replace(lenient, gate=GateConfig(min_quality=0.0, min_test_pairs=12, bootstrap_samples=200))
    assert judge.fn(any_number, paths["test"], scores["1"], None).decision is Decision.PROMOTE

    result = judge.fn(default_bar, paths["test"], scores["1"], None)
    record_decision.fn(run_id, NAME, registered["version"], None, result)

    assert result.decision is Decision.KEEP and result.test_pairs == 12
    assert "on only 12 test pairs: too few to judge (at least 50)" in result.reason
    client = MlflowClient(module_store)
    assert "too few to judge" in client.get_model_version(NAME, "1").tags["gate.reason"]
    assert "too few to judge" in client.get_run(run_id).data.tags["gate.reason"]
    assert find_champion.fn(NAME) is None


def test_accuracy_judges_each_version_at_its_stored_threshold(versions, scores):
    _, (_, paths, _, _), config = versions
    labels = family_of(config.kind).load_split(config, paths["test"]).labels
    two = np.load(scores["2"].path)
    accuracy = dataclasses.replace(config, gate=GateConfig(metric="accuracy", min_quality=0.0, bootstrap_samples=200))
    result = judge.fn(accuracy, paths["test"], scores["2"], scores["1"])
    assert result.challenger == pytest.approx(np.mean((two >= SECOND_THRESHOLD) == (labels == 1)))
    assert result.challenger != pytest.approx(np.mean((two >= 0.5) == (labels == 1))), "the threshold must matter here"
    assert f"at threshold {SECOND_THRESHOLD} vs champion" in result.reason and "at threshold 0.5" in result.reason


def test_a_challenger_is_judged_against_the_champion_on_the_same_pairs(versions, scores):
    _, (_, paths, _, _), config = versions
    result = judge.fn(config, paths["test"], scores["2"], scores["1"])
    assert result.champion is not None and result.ci_low <= result.improvement <= result.ci_high
    assert result.improvement == pytest.approx(result.challenger - result.champion)
    same = judge.fn(config, paths["test"], scores["1"], scores["1"])
    assert same.decision is Decision.KEEP and same.improvement == 0.0


def test_the_decision_is_recorded_on_both_versions_and_the_run_then_the_alias_moves(versions, scores, module_store):
    (_, _, _, _), (registered, paths, _, run_id), config = versions
    client = MlflowClient(module_store)
    assert move_champion_alias.fn(NAME, "1", None) == "1"
    assert find_champion.fn(NAME) == "1"

    result = dataclasses.replace(judge.fn(config, paths["test"], scores["2"], scores["1"]), decision=Decision.PROMOTE)
    record_decision.fn(run_id, NAME, registered["version"], "1", result)
    assert move_champion_alias.fn(NAME, registered["version"], "1") == "2"

    version = client.get_model_version(NAME, "2")
    assert version.tags["gate.decision"] == "promote" and version.tags["gate.champion_version"] == "1"
    assert version.tags["gate.metric"] == "roc_auc" and float(version.tags["gate.challenger"]) == result.challenger
    assert version.description.startswith("Gate: promote - ")
    assert client.get_run(run_id).data.tags["gate.decision"] == "promote"
    assert client.get_model_version(NAME, "1").tags["gate.last_challenge"].startswith("version 2: promote")
    assert find_champion.fn(NAME) == "2"
    assert move_champion_alias.fn(NAME, "1", None) == "2", "judged as a first model, but version 2 is champion now"
    assert find_champion.fn(NAME) == "2"
