"""A run's resumable state: one command at a time holds it, a success removes it, a failure keeps what a rerun reuses."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from task_helpers import sequences_config, text_config

from siamese.data.tables import PairFileError
from siamese.models.text import build_text_model
from siamese.training import TrainingCheckpoint, compile_for_training
from tasks.data import prepare_pairs
from tasks.resume import find_checkpoint, resumable_state
from tasks.tracking import start_run


@pytest.fixture(autouse=True)
def checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMESE_CHECKPOINTS", str(tmp_path / "checkpoints"))
    return tmp_path / "checkpoints"


def save_a_completed_epoch(directory, epochs: int) -> None:
    """What an interrupted training leaves: its state after `epochs` epochs."""
    model = build_text_model(features=8, units=4)
    compile_for_training(model, sequences_config().training)
    model.optimizer.build(model.trainable_variables)
    saving = TrainingCheckpoint(directory)
    saving.set_model(model)
    saving.on_epoch_end(epochs - 1)


def test_a_crashed_run_keeps_its_pairs_and_training_for_a_rerun_that_names_it(tmp_path, checkpoints, mlflow_store):
    config = sequences_config()
    first = start_run.fn(config)
    with pytest.raises(RuntimeError, match="killed"), resumable_state(config) as state:
        prepared = prepare_pairs.fn(config, tmp_path / "work", state)
        assert all(path.parent == state.splits for path in prepared.paths.values()), "not in the work directory, lost in a crash"
        save_a_completed_epoch(find_checkpoint.fn(state, first), epochs=3)
        raise RuntimeError("killed")
    assert state.directory.parent == checkpoints and (state.directory / "run_id").read_text() == first

    second = start_run.fn(config)
    with resumable_state(config) as again:
        assert again == state, "same config, same data: the same state"
        reused = prepare_pairs.fn(config, tmp_path / "work", again)
        assert reused.paths == prepared.paths and reused.sizes == prepared.sizes
        assert reused.params["data.prepared_by_run"] == first
        assert find_checkpoint.fn(again, second) == state.training
    params = MlflowClient().get_run(second).data.params
    assert params["training.resumed_from_run"] == first and params["training.resumed_after_epoch"] == "3"
    assert not state.directory.exists(), "a command that succeeds leaves no state behind"


def test_fresh_prepares_and_trains_from_the_start(tmp_path, mlflow_store):
    config = sequences_config()
    with pytest.raises(RuntimeError), resumable_state(config) as state:
        prepare_pairs.fn(config, tmp_path, state)
        save_a_completed_epoch(find_checkpoint.fn(state, start_run.fn(config)), epochs=2)
        raise RuntimeError("killed")
    with resumable_state(config, fresh=True) as again:
        assert not again.splits.exists() and TrainingCheckpoint.completed_epochs(again.training) == 0
        third = start_run.fn(config)
        find_checkpoint.fn(again, third)
    assert "training.resumed_from_run" not in MlflowClient().get_run(third).data.params


def test_other_data_or_config_is_another_state(tmp_path):
    with resumable_state(sequences_config()) as state, resumable_state(sequences_config(num_pairs=61)) as other:
        assert other is not None and other.directory != state.directory


def test_a_second_identical_command_runs_without_a_state_while_the_first_holds_it(tmp_path):
    config = sequences_config()
    with resumable_state(config) as holder, resumable_state(config) as second:
        assert holder is not None and second is None
        prepared = prepare_pairs.fn(config, tmp_path / "work", second)
        assert all(path.parent == tmp_path / "work" for path in prepared.paths.values())
        assert find_checkpoint.fn(second, "a run") is None, "it saves no training state to collide with the holder's"
    with resumable_state(config) as after:
        assert after is not None, "released with the first command"


def test_bad_data_leaves_no_state(tmp_path):
    config = text_config(tmp_path)
    (tmp_path / "questions.csv").write_text("question1,question2,is_duplicate\na,b,7\n")
    with pytest.raises(PairFileError), resumable_state(config) as state:
        prepare_pairs.fn(config, tmp_path / "work", state)
    assert not state.directory.exists() and not state.splits.with_name("splits.partial").exists()
