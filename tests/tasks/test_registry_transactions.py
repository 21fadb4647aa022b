"""Registry transactions against a real SQLite store: the champion moves only where the gate judged it, failed runs take their version back, one input signature per registered model."""

from __future__ import annotations

import threading

import pytest
from mlflow import MlflowClient
from task_helpers import register_untrained, sequences_config

import tasks.registry
from tasks.registry import (
    IncompatibleVersionError,
    RegistryLockTimeout,
    champion_version,
    check_same_inputs,
    claim_champion,
    read_aliases,
    registry_transaction,
    retract_version,
    retract_versions_of_run,
)

NAME = "siamese-text-sequences"


@pytest.fixture(scope="module")
def versions(registered_with_runs) -> list[dict]:
    """Three versions of one registered model: 8, 8 and 16 features per timestep (the last is registered as challenger)."""
    return [registered for registered, _ in registered_with_runs]


@pytest.fixture(scope="module")
def registered_with_runs(module_store, tmp_path_factory) -> list[tuple[dict, str]]:
    """The versions and the runs that registered them."""
    registered = [
        register_untrained(sequences_config(features=features), tmp_path_factory.mktemp(f"v{number}"))
        for number, features in enumerate((8, 8, 16), start=1)
    ]
    return [(version, run_id) for version, _, _, run_id in registered]


def aliases(store: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in MlflowClient(store).get_registered_model(NAME).aliases.items()}


def test_the_champion_moves_only_from_the_version_the_gate_judged_against(versions, module_store):
    assert claim_champion(NAME, "1", None) == "1", "a first model, and no champion yet"
    assert claim_champion(NAME, "2", None) == "1", "judged as a first model, but version 1 took the alias meanwhile"
    assert champion_version(NAME) == "1"
    assert claim_champion(NAME, "2", "1") == "2", "judged against the champion that still holds the alias"
    assert aliases(module_store)["champion"] == "2"
    assert MlflowClient(module_store).get_model_version(NAME, "2").tags["siamese.previous_champion"] == "1"


def test_a_failed_runs_version_loses_its_aliases_and_says_why(versions, module_store):
    client = MlflowClient(module_store)
    client.set_registered_model_alias(NAME, "champion", "2")
    client.set_registered_model_alias(NAME, "challenger", "2")
    retract_version(versions[1], "RuntimeError: publishing the summary failed")

    assert aliases(module_store) == {"champion": "1"}, "challenger removed, champion back to the version it replaced"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["siamese.status"] == "failed" and tags["siamese.failure"] == "RuntimeError: publishing the summary failed"
    assert read_aliases.fn(versions[1]) == []


def test_retracting_a_first_champion_leaves_no_champion_and_other_versions_aliases_alone(versions, module_store):
    client = MlflowClient(module_store)
    client.delete_registered_model_alias(NAME, "champion")
    assert claim_champion(NAME, "1", None) == "1"
    client.set_model_version_tag(NAME, "1", "siamese.previous_champion", "")  # as a first model records it
    client.set_registered_model_alias(NAME, "challenger", "3")
    retract_version(versions[0], "ValueError: boom")
    assert aliases(module_store) == {"challenger": "3"}
    assert read_aliases.fn(versions[2]) == ["challenger"]


def test_a_version_with_other_inputs_than_the_champion_is_refused(versions, module_store):
    MlflowClient(module_store).set_registered_model_alias(NAME, "champion", "2")
    check_same_inputs(NAME, "1", "2")  # the same inputs: nothing to say
    with pytest.raises(IncompatibleVersionError) as error:
        check_same_inputs(NAME, "3", "2")
    message = str(error.value)
    assert "version 3 of siamese-text-sequences takes left: float32 (-1, -1, 16)" in message
    assert "champion, version 2, takes left: float32 (-1, -1, 8)" in message and "data.features" in message


def test_a_transaction_waits_for_another_one_and_gives_up_after_the_timeout(versions, monkeypatch):
    monkeypatch.setattr(tasks.registry, "REGISTRY_LOCK_TIMEOUT_SECONDS", 0.3)
    errors: list[BaseException] = []

    def contend() -> None:
        try:
            with registry_transaction():
                pass
        except RegistryLockTimeout as error:
            errors.append(error)

    with registry_transaction():  # another open file of the lock: excluded even within one process
        contender = threading.Thread(target=contend)
        contender.start()
        contender.join(timeout=10)
    assert len(errors) == 1 and "mlflow.db.registry-lock was held for over 0.3 s" in str(errors[0])

    contender = threading.Thread(target=contend)
    contender.start()
    contender.join(timeout=10)
    assert len(errors) == 1, "free again once the first transaction ended"


def test_the_versions_of_a_run_found_dead_are_retracted(registered_with_runs, module_store):
    (version, run_id) = registered_with_runs[2]  # registered as challenger, then (say) the process was killed
    assert aliases(module_store).get("challenger") == "3"

    assert retract_versions_of_run(run_id, f"its run {run_id} died before it ended") == [f"{NAME}/3"]

    assert "challenger" not in aliases(module_store)
    assert MlflowClient(module_store).get_model_version(NAME, "3").tags["siamese.status"] == "failed"
