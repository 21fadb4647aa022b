"""Scheduled runs against a real Prefect API: deployments, their schedules, one run served to completion."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from flows import cli
from flows.schedules import RETRAIN_CRON, RETRAIN_DEPLOYMENT, SWEEP_DEPLOYMENT, TRAIN_CRON, TRAIN_DEPLOYMENT, scheduled_deployments
from siamese.config import config_from_dict, load_config

pytestmark = pytest.mark.usefixtures("prefect_api")

TINY = "seed = 3\n[data]\nnum_pairs = 120\ntimesteps = 5\n[training]\nepochs = 1\nbatch_size = 32\n[gate]\nmin_quality = 0.0\nmin_test_pairs = 0\n"
PREFECT_YAML = Path(__file__).parents[2] / "prefect.yaml"


async def read_deployment(name: str):
    async with get_client() as client:
        return await client.read_deployment_by_name(name)


def test_deployments_carry_their_schedules_and_config(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    config = load_config(tmp_path / "tiny.toml")

    for deployment in scheduled_deployments(config, timezone="Europe/Paris"):
        deployment.apply()

    train = asyncio.run(read_deployment(f"train-siamese/{TRAIN_DEPLOYMENT}"))
    retrain = asyncio.run(read_deployment(f"retrain-siamese/{RETRAIN_DEPLOYMENT}"))
    assert [(s.schedule.cron, s.schedule.timezone) for s in train.schedules] == [(TRAIN_CRON, "Europe/Paris")]
    assert [(s.schedule.cron, s.schedule.timezone) for s in retrain.schedules] == [(RETRAIN_CRON, "Europe/Paris")]
    assert train.parameters["config"] == config.to_dict() == retrain.parameters["config"]
    sweep = asyncio.run(read_deployment(f"tune-siamese/{SWEEP_DEPLOYMENT}"))
    assert sweep.schedules == [] and sweep.parameters["config"] == config.to_dict()  # started by hand


def test_prefect_yaml_declares_the_same_schedules_for_a_process_work_pool():
    declared = {entry["name"]: entry for entry in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    assert declared[TRAIN_DEPLOYMENT]["entrypoint"] == "flows/train.py:train_flow"
    assert declared[RETRAIN_DEPLOYMENT]["entrypoint"] == "flows/retrain.py:retrain_flow"
    assert [s["cron"] for s in declared[TRAIN_DEPLOYMENT]["schedules"]] == [TRAIN_CRON]
    assert [s["cron"] for s in declared[RETRAIN_DEPLOYMENT]["schedules"]] == [RETRAIN_CRON]
    assert declared[SWEEP_DEPLOYMENT]["entrypoint"] == "flows/tune.py:tune_flow" and "schedules" not in declared[SWEEP_DEPLOYMENT]
    for entry in declared.values():
        assert entry["work_pool"]["name"] == "siamese-process"
        assert config_from_dict(entry["parameters"]["config"], "prefect.yaml").kind == "sequences"


def test_serve_refuses_an_invalid_config_before_serving(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.toml").write_text("[training]\nepochs = 0\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["serve", "--config", "bad.toml"]) == cli.EXIT_INVALID
    assert "siamese: invalid configuration: --epochs must be an integer >= 1, got 0" in capsys.readouterr().err


def wait_for_deployment(name: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            asyncio.run(read_deployment(name))
            return
        except ObjectNotFound:
            time.sleep(1)
    raise AssertionError(f"deployment {name} was not registered by `siamese serve` (exit code {server.poll()})")


# Slow: `siamese serve`, then the run it serves, each a fresh process importing TensorFlow. What it
# rests on is checked by default: the deployments and their JSON config (above), the training flow
# taking its config as that JSON (the session's `stereo_run`), and `siamese serve`'s config checks.
@pytest.mark.slow
def test_served_deployment_runs_to_completion(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    env = os.environ | {
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # pick the run up at once, not within Prefect's default 10 s
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("siamese")), "serve", "--config", "tiny.toml"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_deployment(f"train-siamese/{TRAIN_DEPLOYMENT}", server)  # `siamese serve` registers it as it starts
        flow_run = run_deployment(f"train-siamese/{TRAIN_DEPLOYMENT}", timeout=300, poll_interval=1)
    finally:
        server.terminate()
        output = server.communicate(timeout=60)[0]
    assert flow_run.state.is_completed(), output[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["seed"] == "3"


SERVE_ON_AN_INTERVAL = """
from datetime import timedelta
from pathlib import Path

from prefect import serve
from prefect.schedules import Interval

from flows.train import train_flow
from siamese.config import load_config

every = [Interval(timedelta(seconds=15))]
serve(
    train_flow.to_deployment("every-few-seconds", schedules=every, parameters={"config": load_config(Path("tiny.toml")).to_dict()}),
    train_flow.to_deployment("failing", schedules=every, parameters={"config": load_config(Path("empty.toml")).to_dict()}),
    limit=1,  # one run at a time: each is a process importing TensorFlow, on 2 cores
)
"""


def test_the_scheduler_starts_served_runs_on_their_schedule_and_a_failure_shows_its_reason(tmp_path):
    """Prefect's own scheduler (not a hand-started run) creates the runs; the runner of `serve` runs them."""
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "empty.csv").write_text("left,right,label\n")
    (tmp_path / "empty.toml").write_text(f'kind = "text"\n[data]\npath = "{tmp_path / "empty.csv"}"\n')
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    settings = {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    }
    env = os.environ | settings | {"PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=os.environ | settings, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    runner = None
    try:
        wait_until(lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200, "the Prefect server to answer")
        runner = subprocess.Popen(
            [sys.executable, "-c", SERVE_ON_AN_INTERVAL], cwd=tmp_path, env=env | {"PYTHONPATH": str(REPOSITORY)},
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        completed = wait_until(lambda: finished_runs(api, "every-few-seconds", "COMPLETED"), "a scheduled run to complete")
        failed = wait_until(lambda: finished_runs(api, "failing", "FAILED"), "a scheduled run to fail")
    finally:
        for process in (runner, server):
            if process is not None:
                stop(process)
    assert completed[0]["auto_scheduled"] and failed[0]["auto_scheduled"], "the scheduler, not a person, created them"
    assert "PairFileError" in failed[0]["state"]["message"] and "has 0 usable rows" in failed[0]["state"]["message"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert "FINISHED" in {run.info.status for run in runs}


REPOSITORY = Path(__file__).resolve().parents[2]


def stop(process: subprocess.Popen, grace_seconds: float = 30) -> None:
    """SIGTERM, then SIGKILL to its process group if it still runs after `grace_seconds`: nothing outlives the test."""
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the runner's flow-run processes too
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(found, waiting_for: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = found()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {waiting_for}")


def finished_runs(api: str, deployment: str, state: str) -> list[dict]:
    """The flow runs of `deployment` in `state`, read from the Prefect API's REST endpoint."""
    body = {"deployments": {"name": {"any_": [deployment]}}, "flow_runs": {"state": {"type": {"any_": [state]}}}}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=5).json()
