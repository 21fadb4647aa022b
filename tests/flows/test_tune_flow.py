"""`siamese tune` for real: trials on a Dask scheduler and worker processes started here, on loopback.

One sweep of 4 tiny trials on a `dask scheduler` with `dask worker --nworkers 2 --nthreads 1`,
recorded in a real MLflow store: 4 nested runs under one parent, the study's figures, a best config
that loads, a registered challenger. Then a trial that diverges (NaN loss) is recorded failed while
the others complete, a worker killed mid-trial loses nothing, the default local cluster works from
the command line, and invalid search spaces stop before any work with exit 2.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows import cli
from flows.flow_helpers import sequences_config
from flows.tune import MAX_LOCAL_WORKERS, tune_flow
from siamese.config import ConfigError, ModelKind, load_config
from tasks.tuning import STATE_TAG, TrialState

TINY = sequences_config(epochs=3)
# The tiny LSTM's units and the learning rate: trial 0 is the base config's own values.
SPACE = {"training.learning_rate": {"low": 1e-3, "high": 3e-2, "log": True}, "model.units": [8, 32]}
DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and `dask worker --nworkers 2 --nthreads 1` on loopback, as a team's cluster would run them."""
    directory = tmp_path_factory.mktemp("dask")
    scheduler_file = directory / "scheduler.json"
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = subprocess.Popen(
        [DASK, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=directory,  # not the tests' folder: a worker finds nothing by relative path
    )
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            yield client.scheduler.address
    finally:
        for process in (workers, scheduler):
            process.send_signal(signal.SIGTERM)
        for process in (workers, scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def sweep(dask_cluster, tmp_path_factory, new_store, prefect_api):
    """One sweep of 4 trials on the cluster, in a store of its own."""
    directory = tmp_path_factory.mktemp("sweep")
    uri = new_store(directory / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        result = tune_flow(config=TINY, space=SPACE, trials=4, parallel=2, dask_address=dask_cluster, best_config_path=directory / "best.toml")
    return result, MlflowClient(uri), directory


def trial_runs(client: MlflowClient, sweep_run_id: str) -> list:
    experiment = client.get_run(sweep_run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{sweep_run_id}'")


def test_every_trial_is_a_nested_run_with_its_values_epochs_and_state(sweep):
    result, client, _ = sweep
    trials = trial_runs(client, result["sweep_run_id"])
    assert len(trials) == 4 and len(result["trials"]) == 4
    assert {run.data.tags[STATE_TAG] for run in trials} <= {"complete", "pruned"}
    for run in trials:
        assert run.info.status in ("FINISHED", "KILLED")  # KILLED: pruned
        assert run.data.params["model.units"] in ("8", "32")
        assert "trial/value" in run.data.metrics and "test/roc_auc" not in run.data.metrics  # judged on validation only
        epochs = client.get_metric_history(run.info.run_id, "val/auc")
        assert len(epochs) == int(run.data.metrics["trial/epochs"]) >= 1
    # Trial 0 is the base config itself: the sweep's best is never worse than the defaults on validation.
    first = next(run for run in trials if run.data.params["trial.number"] == "0")
    assert float(first.data.params["training.learning_rate"]) == TINY.training.learning_rate
    assert result["best_value"] >= first.data.metrics["trial/value"]


def test_the_sweeps_run_has_the_space_the_counts_the_figures_and_the_best_config(sweep):
    result, client, _ = sweep
    sweep_run = client.get_run(result["sweep_run_id"])
    assert sweep_run.info.status == "FINISHED"
    assert sweep_run.data.params["tune.trials"] == "4" and "tcp://127.0.0.1" in sweep_run.data.params["tune.cluster"]
    counts = sum(sweep_run.data.metrics[f"tune/trials_{state}"] for state in TrialState)
    assert counts == 4 and sweep_run.data.metrics["tune/best_value"] == pytest.approx(result["best_value"])
    logged = {artifact.path for artifact in client.list_artifacts(sweep_run.info.run_id, "tune")}
    assert {"tune/best.toml", "tune/space.json", "tune/optimization_history.png", "tune/parallel_coordinate.png"} <= logged


def test_the_best_config_loads_and_was_trained_tested_and_registered_as_challenger(sweep):
    result, client, directory = sweep
    best = load_config(directory / "best.toml")
    assert best.kind is ModelKind.SEQUENCES and best.data == TINY.data
    assert dataclasses.replace(best, training=TINY.training, model=TINY.model) == TINY  # only the space's keys differ
    assert "challenger" in result["registered"]["aliases"] and "roc_auc" in result["test_metrics"]
    final = client.get_run(result["run_id"])
    assert final.data.tags["tune.sweep_run_id"] == result["sweep_run_id"]
    assert float(final.data.params["training.learning_rate"]) == pytest.approx(best.training.learning_rate)
    assert result["outcome"] in ("promoted", "kept", "regression")


def test_a_trial_that_diverges_is_recorded_failed_while_the_others_complete(dask_cluster, mlflow_store, prefect_api, tmp_path):
    # Trial 0 is the base rate; a rate of 1e38 turns the loss to NaN in its second epoch.
    space = {"training.learning_rate": [TINY.training.learning_rate, 1e38]}
    result = tune_flow(config=TINY, space=space, trials=4, parallel=2, dask_address=dask_cluster, work_dir=tmp_path / "sweep")
    outcomes = {outcome.number: outcome for outcome in result["trials"]}
    failed = [outcome for outcome in outcomes.values() if outcome.state is TrialState.FAILED]
    assert failed and outcomes[0].state is TrialState.COMPLETE
    assert all("FloatingPointError" in outcome.error and "diverged" in outcome.error for outcome in failed)
    client = MlflowClient(mlflow_store)
    runs = {run.data.params["trial.number"]: run for run in trial_runs(client, result["sweep_run_id"])}
    for outcome in failed:
        run = runs[str(outcome.number)]
        assert run.info.status == "FAILED" and run.data.tags[STATE_TAG] == "failed" and "diverged" in run.data.tags["failure"]
    assert "challenger" in result["registered"]["aliases"]  # the sweep went on to ship the best


def test_a_worker_killed_mid_trial_loses_no_trial(mlflow_store, prefect_api, tmp_path):
    """The local cluster's worker running the first trial is killed once: Dask runs that trial again on another worker."""
    from distributed import get_client

    killed: list[int] = []

    def kill_the_first_busy_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                client = get_client()
            except ValueError:  # the sweep's cluster is not up yet
                time.sleep(0.2)
                continue
            busy = [worker for worker, tasks in client.processing().items() if tasks]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    threading.Thread(target=kill_the_first_busy_worker, daemon=True).start()
    result = tune_flow(config=TINY, space=SPACE, trials=2, parallel=2, work_dir=tmp_path / "sweep")
    assert killed
    assert [outcome.state for outcome in result["trials"]] == [TrialState.COMPLETE] * 2
    assert all(str(killed[0]) not in outcome.worker for outcome in result["trials"])


@pytest.mark.usefixtures("prefect_api")
def test_a_sweep_without_validation_pairs_stops_before_any_run(mlflow_store, tmp_path):
    no_validation = dataclasses.replace(TINY, data=dataclasses.replace(TINY.data, validation_fraction=0.0))
    with pytest.raises(ConfigError, match="data.validation_fraction above 0"):
        tune_flow(config=no_validation, space=SPACE, trials=2, work_dir=tmp_path / "sweep")
    assert not MlflowClient(mlflow_store).search_experiments(filter_string="name = 'siamese-text'")


# The command line


@pytest.fixture
def siamese(tmp_path, monkeypatch, capsys):
    """`siamese ARGS` run in this process from `tmp_path` (store `tmp_path/mlruns`); returns exit code, stdout, stderr."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = cli.main(list(args))
        except SystemExit as exit:
            code = exit.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.mark.usefixtures("prefect_api")
def test_tune_on_the_default_local_cluster_from_the_command_line(siamese, tmp_path):
    code, out, err = siamese(
        "tune", "--num-pairs", "200", "--timesteps", "6", "--epochs", "2", "--batch-size", "32",
        "--trials", "2", "--set", "gate.min_quality=0.0", "--set", "gate.min_test_pairs=0",
    )  # fmt: skip
    assert code == 0, err
    assert "Sweep finished: 2 trials" in out and "registered model:  siamese-text-sequences version 1" in out
    best = load_config(tmp_path / "tuned.toml")
    assert best.kind is ModelKind.SEQUENCES and best.training.epochs == 2
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    workers = min(MAX_LOCAL_WORKERS, os.cpu_count() or 1)  # the default: a worker process per core, at most 4
    query = f"params.`tune.cluster` = 'local cluster of {workers} worker processes'"
    assert len(client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id], query)) == 1


@pytest.mark.parametrize(
    ("tune_table", "message"),
    [
        ('"model.nope" = { low = 1, high = 2 }', "unknown key 'model.nope' for a sequences run"),
        ('"training.learning_rate" = { low = 0.1, high = 0.01 }', "training.learning_rate: empty range"),
        ('"training.learning_rate" = { low = 0.0, high = 0.1, log = true }', "training.learning_rate: a log range must stay above zero"),
        ('"model.head" = ["symmetric", "round"]', "model.head = 'round' does not make a valid config"),
    ],
)
def test_an_invalid_search_space_exits_2_naming_the_key_before_any_work(siamese, tmp_path, tune_table, message):
    (tmp_path / "base.toml").write_text(f"[training]\nepochs = 2\n\n[tune]\n{tune_table}\n")
    code, _, err = siamese("tune", "--config", "base.toml", "--trials", "2")
    assert code == 2
    assert f"siamese: invalid search space: [tune] of base.toml: {message}" in err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "tuned.toml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "--trials must be an integer from 1 to 10,000, got 0"),
        (["--trials", "100000"], "--trials must be an integer from 1 to 10,000, got 100000"),
        (["--parallel", "0"], "--parallel must be an integer from 1 to 1,024, got 0"),
    ],
)
def test_sweep_sizes_are_checked_before_any_work(siamese, args, message):
    code, _, err = siamese("tune", *args)
    assert code == 2 and message in err
