"""Two first models trained at once on one new store and one new Prefect home: both run, one champion, true printouts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

SIAMESE = str(Path(sys.executable).with_name("siamese"))
NAME = "siamese-text-sequences"
# `min_quality = 0.0` on any number of test pairs: each model alone would become champion, so both try to.
TINY = "[data]\nnum_pairs = 120\ntimesteps = 5\n[training]\nepochs = 1\nbatch_size = 32\n[gate]\nmin_quality = 0.0\nmin_test_pairs = 0\n"
REGISTERED = re.compile(rf"registered model:  {NAME} version (\d+) \(alias ([^)]*)\)")


@pytest.mark.slow  # two `siamese train` processes, each starting its own Prefect API, on 2 cores: about a minute
def test_two_first_models_trained_at_once_make_one_champion_and_each_printout_is_true(tmp_path, new_store):
    uri = new_store(tmp_path / "store" / "mlflow.db")
    (tmp_path / "tiny.toml").write_text(TINY)
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env |= {"MLFLOW_TRACKING_URI": uri, "PREFECT_HOME": str(tmp_path / "new-prefect-home")}  # created by whichever is first
    runs = [
        subprocess.Popen([SIAMESE, "train", "--config", "tiny.toml", "--seed", str(seed)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=600) for run in runs]

    client = MlflowClient(uri)
    champion = str(client.get_registered_model(NAME).aliases["champion"])
    said_champion = []
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-3000:]
        version, aliases = REGISTERED.search(stdout).groups()
        holds = version == champion
        assert ("champion" in aliases.split(", ")) == holds, stdout
        assert "becomes champion" not in stdout or holds, stdout
        assert "stays challenger" not in stdout or not holds, stdout
        said_champion.append("champion" in aliases)
        if not holds and "gate:" in stdout:  # it judged itself a first model too, and lost the race for the alias
            tags = client.get_model_version(NAME, version).tags
            assert tags["gate.decision"] == "keep" and tags["gate.outpaced_by"] == champion
    assert sorted(said_champion) == [False, True], "exactly one command says its version is champion"
    versions = {str(version.version) for version in client.search_model_versions(f"name='{NAME}'")}
    assert versions == {"1", "2"} and champion in versions
    recorded = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert sorted(run.data.params["seed"] for run in recorded) == ["1", "2"]
    assert {run.info.status for run in recorded} == {"FINISHED"}
