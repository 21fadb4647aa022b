"""Scheduled runs against a real Prefect API: deployments, their schedules, one run served to completion."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from flows import cli
from flows.schedules import RETRAIN_CRON, RETRAIN_DEPLOYMENT, TRAIN_CRON, TRAIN_DEPLOYMENT, scheduled_deployments
from siamese.config import config_from_dict, load_config

pytestmark = pytest.mark.usefixtures("prefect_api")

TINY = "seed = 3\n[data]\nnum_pairs = 120\ntimesteps = 5\n[training]\nepochs = 1\nbatch_size = 32\n[gate]\nmin_quality = 0.0\n"
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


def test_prefect_yaml_declares_the_same_schedules_for_a_process_work_pool():
    declared = {entry["name"]: entry for entry in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    assert declared[TRAIN_DEPLOYMENT]["entrypoint"] == "flows/train.py:train_flow"
    assert declared[RETRAIN_DEPLOYMENT]["entrypoint"] == "flows/retrain.py:retrain_flow"
    assert [s["cron"] for s in declared[TRAIN_DEPLOYMENT]["schedules"]] == [TRAIN_CRON]
    assert [s["cron"] for s in declared[RETRAIN_DEPLOYMENT]["schedules"]] == [RETRAIN_CRON]
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
