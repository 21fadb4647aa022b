"""Retraining against a real MLflow registry: promote a better model, keep the champion against a worse one.

One real sequence on one store: a first model, a better one, then a worse one through the
command CI runs, `siamese retrain --fail-on-regression` (exit 3), then one of other inputs, refused
and taken back. A first model below the bar and a tie are judged in tests/tasks/test_gate_tasks.py;
every outcome of the gate's numbers below.
"""

from __future__ import annotations

import dataclasses

import pytest
from mlflow import MlflowClient

from flows import cli
from flows.retrain import Outcome, outcome_of, retrain_flow
from siamese.config import Config, GateConfig, SequenceDataConfig, TrainingConfig
from siamese.gate import Decision, GateResult
from tasks.registry import IncompatibleVersionError

pytestmark = pytest.mark.usefixtures("prefect_api")

NAME = "siamese-text-sequences"
GOOD = Config(
    data=SequenceDataConfig(num_pairs=400, timesteps=6),
    training=TrainingConfig(epochs=4, batch_size=32),
    gate=GateConfig(min_quality=0.0, min_test_pairs=0),
)
WEAK = dataclasses.replace(GOOD, training=TrainingConfig(epochs=1, batch_size=32, learning_rate=1e-7))
# WEAK as a config file; `--epochs 1` on the command line makes it WEAK.
WEAK_TOML = (
    "[data]\nnum_pairs = 400\ntimesteps = 6\n"
    "[training]\nepochs = 4\nbatch_size = 32\nlearning_rate = 1e-7\n"
    "[gate]\nmin_quality = 0.0\nmin_test_pairs = 0\n"
)


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(NAME, "champion").version)


def test_retraining_promotes_a_better_model_and_ci_fails_on_a_worse_one(tmp_path, monkeypatch, capsys, new_store):
    monkeypatch.chdir(tmp_path)  # the project's store, `mlruns/`, as the command finds it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(new_store(tmp_path / "mlruns" / "mlflow.db"))

    first = retrain_flow(config=WEAK)
    assert first["outcome"] is Outcome.PROMOTED and first["gate"].champion is None, "a first model over the bar"
    assert champion(client) == "1"

    better = retrain_flow(config=GOOD)
    gate = better["gate"]
    assert better["outcome"] is Outcome.PROMOTED, gate.reason
    assert gate.ci_low > 0 and gate.challenger > gate.champion
    assert champion(client) == "2" and better["registered"]["aliases"] == ["challenger", "champion"]
    version = client.get_model_version(NAME, "2")
    assert version.tags["gate.decision"] == "promote" and version.tags["gate.champion_version"] == "1"
    assert version.description.startswith("Gate: promote")
    assert "version 2: promote" in client.get_model_version(NAME, "1").tags["gate.last_challenge"]
    assert client.get_run(better["run_id"]).data.tags["gate.decision"] == "promote"

    (tmp_path / "weak.toml").write_text(WEAK_TOML)
    capsys.readouterr()
    code = cli.main(["retrain", "--config", "weak.toml", "--epochs", "1", "--fail-on-regression"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_REGRESSION, err[-3000:]
    assert "registered model:  siamese-text-sequences version 3 (alias challenger)\n" in out
    assert "outcome:           regression" in out and "siamese score" not in out
    assert "siamese: regression (--fail-on-regression): " in err
    assert champion(client) == "2"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "3"
    worse = client.get_model_version(NAME, "3")
    assert worse.tags["gate.decision"] == "keep" and float(worse.tags["gate.ci_high"]) < 0
    run = client.get_run(worse.run_id)
    assert run.info.status == "FINISHED", "a regression is the gate's verdict, not a failed run"
    assert run.data.params["training.epochs"] == "1" and run.data.params["training.learning_rate"] == "1e-07", "the file, then the flags"

    narrower = dataclasses.replace(WEAK, data=SequenceDataConfig(num_pairs=400, timesteps=6, features=16))
    with pytest.raises(IncompatibleVersionError, match=r"version 4 of siamese-text-sequences takes left: float32 \(-1, -1, 16\)"):
        retrain_flow(config=narrower)
    assert {alias: str(version) for alias, version in client.get_registered_model(NAME).aliases.items()} == {"champion": "2"}
    refused = client.get_model_version(NAME, "4")
    assert refused.aliases == [], "a failed run's version is no challenger"
    assert refused.tags["siamese.status"] == "failed" and "IncompatibleVersionError: version 4" in refused.tags["siamese.failure"]
    assert "gate.decision" not in refused.tags, "refused before anything was scored or judged"
    assert client.get_run(refused.run_id).info.status == "FAILED"


def gate_result(decision: Decision, champion: float | None, ci: tuple[float, float] | None) -> GateResult:
    low, high = ci or (None, None)
    return GateResult(decision, "", "roc_auc", 0.8, champion, None if champion is None else 0.8 - champion, low, high, 100)


@pytest.mark.parametrize(
    ("gate", "outcome"),
    [
        (gate_result(Decision.PROMOTE, None, None), Outcome.PROMOTED),
        (gate_result(Decision.PROMOTE, 0.7, (0.05, 0.15)), Outcome.PROMOTED),
        (gate_result(Decision.KEEP, 0.8, (-0.02, 0.02)), Outcome.KEPT),
        (gate_result(Decision.KEEP, 0.9, (-0.15, -0.05)), Outcome.REGRESSION),
        (gate_result(Decision.KEEP, None, None), Outcome.REGRESSION),
        (dataclasses.replace(gate_result(Decision.KEEP, None, None), outpaced_by="7"), Outcome.KEPT),
    ],
    ids=["first", "better", "within-noise", "worse", "first-below-the-bar", "first-outpaced"],
)
def test_outcome_for_ci_of_each_gate_decision(gate, outcome):
    assert outcome_of(gate) is outcome
