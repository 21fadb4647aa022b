"""The retraining flow's registry gate against a real MLflow registry: promote, keep, regression."""

from __future__ import annotations

import dataclasses

import pytest
from mlflow import MlflowClient

from flows.retrain import Outcome, retrain_flow
from siamese.config import Config, GateConfig, SequenceDataConfig, TrainingConfig

pytestmark = pytest.mark.usefixtures("prefect_api")

NAME = "siamese-text-sequences"
GOOD = Config(
    data=SequenceDataConfig(num_pairs=400, timesteps=6),
    training=TrainingConfig(epochs=4, batch_size=32),
    gate=GateConfig(min_quality=0.0),
)
WEAK = dataclasses.replace(GOOD, training=TrainingConfig(epochs=1, batch_size=32, learning_rate=1e-7))


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(NAME, "champion").version)


def test_gate_promotes_better_keeps_equal_and_flags_worse(mlflow_store):
    client = MlflowClient(mlflow_store)

    first = retrain_flow(config=WEAK)
    assert first["outcome"] is Outcome.PROMOTED and first["gate"].champion is None, "a first model over the bar"
    assert champion(client) == "1"

    better = retrain_flow(config=GOOD)
    gate = better["gate"]
    assert better["outcome"] is Outcome.PROMOTED, gate.reason
    assert gate.ci_low > 0 and gate.challenger > gate.champion
    assert champion(client) == "2"
    version = client.get_model_version(NAME, "2")
    assert version.tags["gate.decision"] == "promote" and version.tags["gate.champion_version"] == "1"
    assert version.description.startswith("Gate: promote")
    assert "version 2: promote" in client.get_model_version(NAME, "1").tags["gate.last_challenge"]
    assert client.get_run(better["run_id"]).data.tags["gate.decision"] == "promote"

    same = retrain_flow(config=GOOD)  # same seed, same data: the same model
    assert same["outcome"] is Outcome.KEPT and same["gate"].improvement == 0.0
    assert champion(client) == "2"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "3"

    worse = retrain_flow(config=WEAK)
    assert worse["outcome"] is Outcome.REGRESSION and worse["gate"].ci_high < 0
    assert champion(client) == "2"
    assert client.get_model_version(NAME, "4").tags["gate.decision"] == "keep"


def test_first_model_below_the_quality_bar_does_not_become_champion(mlflow_store):
    client = MlflowClient(mlflow_store)

    result = retrain_flow(config=dataclasses.replace(WEAK, gate=GateConfig(min_quality=0.99)))

    assert result["outcome"] is Outcome.REGRESSION
    assert "champion" not in client.get_registered_model(NAME).aliases
    assert result["registered"]["aliases"] == ["challenger"]
