"""The `siamese` command as a user runs it: a real process, its own temporary Prefect API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from siamese.data.sample_questions import sample_question_pairs

SIAMESE = str(Path(sys.executable).with_name("siamese"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    return subprocess.run([SIAMESE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_help_does_not_import_heavy_packages():
    code = (
        "import sys\nfrom flows import cli\n"
        "try:\n    cli.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'prefect', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--num-pairs" in result.stdout
    assert result.stdout.strip().endswith("[]")


@pytest.mark.parametrize(
    ("args", "config_text", "message"),
    [
        (["--epochs", "0"], None, "training.epochs must be an integer >= 1, got 0"),
        (["--num-pairs", "-5"], None, "data.num_pairs must be an integer >= 10"),
        (["--set", "data.num_pair=100"], None, "unknown key 'data.num_pair'"),
        ([], '[data]\nmode = "noise"\n', "data.mode must be one of paraphrase, random; got 'noise'"),
        ([], "[training\nepochs = 3\n", "is not valid TOML"),
        ([], "[model]\nunits = true\n", "model.units must be an integer >= 1, got True"),
    ],
)
def test_invalid_config_stops_before_any_work(tmp_path, args, config_text, message):
    if config_text is not None:
        (tmp_path / "bad.toml").write_text(config_text)
        args = ["--config", "bad.toml", *args]

    result = run_cli("train", *args, cwd=tmp_path)

    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "mlruns").exists(), "nothing may be logged for an invalid config"


@pytest.mark.usefixtures("prefect_api")
def test_train_command_end_to_end(tmp_path):
    (tmp_path / "tiny.toml").write_text("seed = 3\n[data]\nnum_pairs = 120\ntimesteps = 5\n[training]\nbatch_size = 32\n")

    result = run_cli("train", "--config", "tiny.toml", "--epochs", "1", "--set", "gate.min_quality=0.0", cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered model:  siamese-text-sequences version 1 (alias challenger, champion)" in result.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db" in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == "3" and run.data.params["training.epochs"] == "1"
    assert list((tmp_path / "mlruns" / "artifacts").iterdir()), "artifacts live beside the database"


@pytest.mark.usefixtures("prefect_api")
def test_train_vision_on_a_folder_of_class_images(tmp_path, write_class_folders):
    """As a new user: point `--images` at a folder of class folders; nothing else to set up."""
    write_class_folders(tmp_path / "shapes")

    result = run_cli(
        "train", "--model", "vision", "--images", "shapes", "--image-size", "16", "--num-pairs", "60", "--epochs", "1",
        "--set", "model.filters=4", cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered model:  siamese-vision version 1" in result.stdout
    assert "test AUC" in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("siamese-vision").experiment_id])
    assert run.data.params["data.source"] == "folder"
    assert run.data.params["data.path"] == str((tmp_path / "shapes").resolve())


def test_images_path_that_does_not_exist_stops_before_any_work(tmp_path):
    result = run_cli("train", "--model", "vision", "--images", "nowhere", cwd=tmp_path)
    assert result.returncode == 2
    assert "--images nowhere: no such folder or file" in result.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.usefixtures("prefect_api")
def test_unusable_image_folder_fails_with_the_class_named_and_nothing_logged(tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "shapes")
    for extra in sorted((root / "class_2").iterdir())[1:]:
        extra.unlink()

    result = run_cli("train", "--images", "shapes", "--image-size", "16", cwd=tmp_path)

    assert result.returncode == 2
    assert "class_2" in result.stderr
    assert "siamese: invalid data" in result.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert client.search_model_versions() == []
    experiment = client.get_experiment_by_name("siamese-vision")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


@pytest.mark.usefixtures("prefect_api")
def test_train_on_a_question_file_then_score_new_pairs_with_the_champion(tmp_path):
    """The README's path for a new user: a CSV of labelled question pairs in, a file of scores out."""
    sample_question_pairs(150, seed=3).to_csv(tmp_path / "questions.csv", index=False)
    new_pairs = sample_question_pairs(40, seed=4).drop(columns="is_duplicate")
    new_pairs.loc[5, "question2"] = ""
    new_pairs.to_csv(tmp_path / "new_pairs.csv", index=False)

    trained = run_cli(
        "train", "--data", "questions.csv", "--epochs", "1", "--set", "model.units=8", "--set", "model.embedding_dim=16",
        "--set", "gate.min_quality=0.0", cwd=tmp_path,
    )  # fmt: skip
    scored = run_cli(
        "score", "--model", "models:/siamese-text@champion", "--input", "new_pairs.csv", "--output", "scores.parquet",
        "--chunk-rows", "16", cwd=tmp_path,
    )  # fmt: skip

    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "registered model:  siamese-text version 1 (alias challenger, champion)" in trained.stdout
    assert "siamese score --model models:/siamese-text/1" in trained.stdout
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "Scored 39 of 40 rows into scores.parquet" in scored.stdout
    assert "1 row could not be scored (line 7; empty or missing right text: 1)" in scored.stdout
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == 40 and scores.similarity.notna().sum() == 39


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "missing.csv"], "--data missing.csv: no such file"),
        (["train", "--model", "vision", "--data", "pairs.csv"], "--data is for text pairs; give image pairs with --images"),
        (["score", "--model", "models:/m/1", "--input", "missing.csv", "--output", "s.parquet"], "--input missing.csv: no such file"),
        (["score", "--model", "models:/m/1", "--input", "pairs.csv", "--output", "s.xlsx"], "--output s.xlsx: use a .parquet"),
    ],
)
def test_bad_paths_stop_before_any_work(tmp_path, args, message):
    (tmp_path / "pairs.csv").write_text("question1,question2\na,b\n")

    result = run_cli(*args, cwd=tmp_path)

    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.usefixtures("prefect_api")
def test_invalid_pair_file_exits_2_naming_the_column(tmp_path):
    pairs = sample_question_pairs(40, seed=6)
    pairs.loc[[2, 3], "is_duplicate"] = 7
    pairs.to_csv(tmp_path / "questions.csv", index=False)

    result = run_cli("train", "--data", "questions.csv", cwd=tmp_path)

    assert result.returncode == 2
    assert "siamese: invalid data" in result.stderr
    assert "column 'is_duplicate': 2 rows with labels that are not 0 or 1 (lines 4, 5" in result.stderr
    assert not (tmp_path / "mlruns" / "artifacts").exists()


@pytest.mark.usefixtures("prefect_api")
def test_retrain_fails_on_regression_with_its_own_exit_code(tmp_path):
    (tmp_path / "tiny.toml").write_text("seed = 3\n[data]\nnum_pairs = 120\ntimesteps = 5\n[gate]\nmin_quality = 0.99\n")

    result = run_cli("retrain", "--config", "tiny.toml", "--epochs", "1", "--fail-on-regression", cwd=tmp_path)

    assert result.returncode == 3, result.stderr[-3000:]
    assert "outcome:           regression" in result.stdout
    assert "siamese: regression (--fail-on-regression): " in result.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert "champion" not in client.get_registered_model("siamese-text-sequences").aliases


def test_ui_serves_the_project_store_on_loopback(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    ui = subprocess.Popen([SIAMESE, "ui", "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        page = None
        for _ in range(120):
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(1)
        assert page is not None and page.status_code == 200 and "<html" in page.text.lower()
        experiments = httpx.post(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 10})
        assert experiments.status_code == 200
    finally:
        ui.terminate()
        output = ui.communicate(timeout=30)[0]
    assert f"MLflow UI on http://127.0.0.1:{port} (store sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db)" in output
    assert (tmp_path / "mlruns" / "mlflow.db").exists(), "the UI opened the project's store"


@pytest.mark.usefixtures("prefect_api")
def test_two_training_runs_at_once_on_one_store_both_complete(tmp_path):
    (tmp_path / "tiny.toml").write_text(
        "[data]\nnum_pairs = 120\ntimesteps = 5\n[training]\nepochs = 1\nbatch_size = 32\n[gate]\nmin_quality = 0.0\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    runs = [
        subprocess.Popen([SIAMESE, "train", "--config", "tiny.toml", "--seed", str(seed)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=600) for run in runs]

    for run, (_, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    recorded = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert sorted(run.data.params["seed"] for run in recorded) == ["1", "2"]
    assert {run.info.status for run in recorded} == {"FINISHED"}
    versions = {str(version.version) for version in client.search_model_versions("name='siamese-text-sequences'")}
    assert versions == {"1", "2"}
    aliases = client.get_registered_model("siamese-text-sequences").aliases
    assert set(aliases) == {"champion", "challenger"} and {str(v) for v in aliases.values()} <= versions
