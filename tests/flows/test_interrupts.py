"""Ctrl-C and SIGTERM stop a real `siamese` command within seconds and leave nothing behind.

Each command runs in a new session, as a terminal's foreground job. Ctrl-C goes to its whole
process group (`os.killpg`), as a terminal sends it, so it would also reach any server the
command started in that group; SIGTERM goes to the command alone, as `kill PID` sends it, so a
server it started must be stopped by the command itself.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

SIAMESE = str(Path(sys.executable).with_name("siamese"))
# Trains for ever unless interrupted: 10,000 epochs (the maximum), no early stopping.
FOREVER = "[data]\nnum_pairs = 200\ntimesteps = 5\n[training]\nepochs = 10000\nbatch_size = 16\npatience = 0\n"
STOP_BOUND_SECONDS = 20
API_LINE = re.compile(r"starting a temporary Prefect API on http://127\.0\.0\.1:(\d+)")


class Command:
    """A `siamese` command in `directory`, in a session of its own, its output in files there."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.directory = directory
        env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
        env["TMPDIR"] = str(directory)  # its temporary work directory and debug log, where the test can look
        with open(directory / "stdout", "w") as stdout, open(directory / "stderr", "w") as stderr:
            self.process = subprocess.Popen(
                [SIAMESE, *args], cwd=directory, env=env, stdout=stdout, stderr=stderr, start_new_session=True
            )

    def output(self, name: str = "stderr") -> str:
        return (self.directory / name).read_text()

    def wait_for(self, text: str, name: str = "stdout", timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output(name):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{text!r} never appeared (exit {self.process.poll()}): {self.output()[-3000:]}")
            time.sleep(0.2)

    def interrupt(self, number: int, group: bool = True) -> float:
        """Send `number` to the command's process group (or to the command alone); the seconds it took to exit."""
        sent = time.monotonic()
        (os.killpg if group else os.kill)(self.process.pid, number)
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        return time.monotonic() - sent

    def api_port(self) -> int:
        return int(API_LINE.search(self.output()).group(1))


# A real `siamese train` (TensorFlow import, a Prefect API) interrupted mid-training: 12-20 s each on 2 cores.
@pytest.mark.parametrize(
    ("number", "group", "code"),
    [
        pytest.param(signal.SIGINT, True, 130, id="ctrl-c"),
        pytest.param(signal.SIGTERM, False, 143, id="kill-pid", marks=pytest.mark.slow),
    ],
)
def test_an_interrupted_training_stops_fails_its_run_and_leaves_nothing_behind(tmp_path, number, group, code):
    (tmp_path / "forever.toml").write_text(FOREVER)
    command = Command(tmp_path, "train", "--config", "forever.toml")
    command.wait_for("Epoch 2/")  # the MLflow run exists and training is under way

    seconds = command.interrupt(number, group)

    stderr = command.output()
    assert command.process.returncode == code, stderr[-3000:]
    assert seconds < STOP_BOUND_SECONDS
    name = signal.Signals(number).name
    assert stderr.rstrip().splitlines()[-1].startswith(f"siamese: interrupted by {name}: the MLflow run")
    assert "Traceback" not in stderr and "Connection refused" not in stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure"] == f"interrupted ({name})"
    assert not client.search_model_versions("name='siamese-text-sequences'"), "nothing registered"
    assert not _listening(command.api_port()), "the temporary Prefect API outlived its command"
    assert not list(tmp_path.glob("siamese-train-*")), "the run's work directory (or a debug log) was left behind"


def test_an_interrupted_sweep_fails_its_runs_and_leaves_no_worker_behind(tmp_path):
    (tmp_path / "forever.toml").write_text(FOREVER + '[tune]\n"training.learning_rate" = [0.01, 0.001]\n')
    command = Command(tmp_path, "tune", "--config", "forever.toml", "--trials", "2", "--parallel", "1")
    command.wait_for("Epoch 2/")  # a trial is training on the local cluster's worker

    seconds = command.interrupt(signal.SIGINT)

    stderr = command.output()
    assert command.process.returncode == 130, stderr[-3000:]
    assert seconds < STOP_BOUND_SECONDS
    assert stderr.rstrip().splitlines()[-1].startswith("siamese: interrupted by SIGINT: the sweep's MLflow runs")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert len(runs) == 2 and {run.info.status for run in runs} == {"FAILED"}  # the sweep and its trial: none left RUNNING
    assert _group_ends(command.process.pid, within=10), "a Dask worker or nanny of the command's session was left"
    assert not _listening(command.api_port())


@pytest.mark.slow  # `siamese serve` imports the flows (TensorFlow) and starts a Prefect API: 10-30 s
def test_serve_stops_on_the_first_ctrl_c(tmp_path):
    (tmp_path / "tiny.toml").write_text("[data]\nnum_pairs = 120\ntimesteps = 5\n[training]\nepochs = 1\n")
    command = Command(tmp_path, "serve", "--config", "tiny.toml")
    command.wait_for("Your deployments are being served", timeout=300)

    seconds = command.interrupt(signal.SIGINT)

    stderr = command.output()
    assert command.process.returncode == 130, stderr[-3000:]
    assert seconds < STOP_BOUND_SECONDS
    assert stderr.rstrip().splitlines()[-1] == "siamese: interrupted by SIGINT: no longer serving"
    assert not _listening(command.api_port())


def _group_ends(group: int, within: float) -> bool:
    """Whether every process of `group` is gone within `within` seconds (a killed worker's child may take a moment to be reaped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
