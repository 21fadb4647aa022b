"""A training run killed with SIGKILL continues where it stopped, on the pairs it had prepared, when the same command runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

SIAMESE = str(Path(sys.executable).with_name("siamese"))
EPOCHS = 40
LONG = f"[data]\nnum_pairs = 600\ntimesteps = 8\n[training]\nepochs = {EPOCHS}\nbatch_size = 32\npatience = 0\n[gate]\nmin_quality = 0.0\n"


def test_a_killed_training_resumes_from_its_last_epoch_and_names_the_run_it_continues(tmp_path):
    (tmp_path / "long.toml").write_text(LONG)
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env["PREFECT_HOME"], env["TMPDIR"] = str(tmp_path / "prefect-home"), str(tmp_path)
    command = [SIAMESE, "train", "--config", "long.toml"]
    killed = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    states = tmp_path / "mlruns" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(states.glob("*/training/training_state.npz")) and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.2)
    time.sleep(1)  # an epoch or two more
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (first,) = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert first.info.status == "RUNNING", "a SIGKILL ends nothing by itself"
    assert list(tmp_path.glob(f"siamese-train-{killed.pid}-*")), "nor removes the run's work directory"

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    assert again.returncode == 0, again.stderr[-3000:]
    runs = {run.info.run_id: run for run in client.search_runs([first.info.experiment_id])}
    second = next(run for run_id, run in runs.items() if run_id != first.info.run_id)
    resumed_after = int(second.data.params["training.resumed_after_epoch"])
    assert second.data.params["training.resumed_from_run"] == first.info.run_id and 1 <= resumed_after < EPOCHS
    assert second.data.params["data.prepared_by_run"] == first.info.run_id, "the pairs were not prepared again"
    assert second.info.status == "FINISHED" and second.data.metrics["train/stopped_epoch"] == EPOCHS
    epochs_logged = [metric.step for metric in client.get_metric_history(second.info.run_id, "train/loss")]
    assert epochs_logged[0] == resumed_after, "the resumed run logs the epochs it trained, numbered on"
    assert runs[first.info.run_id].info.status == "FAILED" and "ended without ending the run" in runs[first.info.run_id].data.tags["failure"]
    assert not any(states.iterdir()), "a command that succeeds leaves no state behind"
    assert not list(tmp_path.glob("siamese-train-*")), "the killed run's work directory was removed too"
