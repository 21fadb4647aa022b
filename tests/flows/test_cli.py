"""The `siamese` command as a user runs it.

One real `siamese train` process (a text pair file, its own temporary Prefect API, a store in
its working directory), a real `siamese score` process on the model it registered and a real
`siamese ui` there: the README's path for a new user (`question_file_commands`, started as
collection ends). The other commands' wiring (flags to config keys, messages in flags, exit
codes) runs `flows.cli.main` in this process, against the session's Prefect API: no interpreter
start, TensorFlow import or Prefect server per test. `siamese retrain --fail-on-regression` ends
the retraining sequence in test_retrain_flow.py.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

import early
import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows import cli
from siamese.data.sample_questions import sample_question_pairs

SIAMESE = str(Path(sys.executable).with_name("siamese"))


@pytest.fixture
def siamese(tmp_path, monkeypatch, capsys):
    """`siamese ARGS` run in this process from `tmp_path` (store `tmp_path/mlruns`), as its exit code and output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a failure's debug log goes here, not to /tmp
    for key, default in (("TF_CPP_MIN_LOG_LEVEL", "2"), ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")):
        monkeypatch.setenv(key, os.environ.get(key, default))  # the command sets them; undone after the test

    def run(*args: str) -> early.CommandResult:
        capsys.readouterr()
        try:
            code = cli.main(list(args))
        except SystemExit as exit:  # argparse's errors: exit 2 with usage
            code = exit.code
        captured = capsys.readouterr()
        return early.CommandResult(code, captured.out, captured.err)

    return run


def store(directory: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{directory}/mlruns/mlflow.db")


@pytest.fixture
def cli_store(tmp_path, new_store) -> MlflowClient:
    """The store `siamese` uses in `tmp_path` (`mlruns/`), made empty beforehand: a copy is quicker than MLflow's creation."""
    return MlflowClient(new_store(tmp_path / "mlruns" / "mlflow.db"))


# The real processes


def test_help_does_not_import_heavy_packages():
    code = (
        "import sys\nfrom flows import cli\n"
        "try:\n    cli.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'prefect', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--num-pairs" in result.stdout
    assert result.stdout.strip().endswith("[]")


def test_train_on_a_question_file_records_registers_and_says_what_next(question_file_commands):
    directory, trained = question_file_commands.directory, question_file_commands.train
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "registered model:  siamese-text version 1 (alias challenger, champion)" in trained.stdout
    assert "siamese score --model models:/siamese-text/1" in trained.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{directory.resolve()}/mlruns/mlflow.db" in trained.stdout
    client = store(directory)
    (run,) = client.search_runs([client.get_experiment_by_name("siamese-text").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["kind"] == "text" and run.data.params["training.epochs"] == "1"
    assert run.data.params["data.path"] == str((directory / "questions.csv").resolve())
    assert list((directory / "mlruns" / "artifacts").iterdir()), "artifacts live beside the database"


def test_score_new_pairs_with_the_champion(question_file_commands):
    directory, scored = question_file_commands.directory, question_file_commands.score
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "Scored 39 of 40 rows into scores.parquet" in scored.stdout
    assert "1 row could not be scored (line 7; empty or missing right text: 1)" in scored.stdout
    scores = pd.read_parquet(directory / "scores.parquet")
    assert len(scores) == 40 and scores.similarity.notna().sum() == 39
    assert "is_similar: similarity >= " in scored.stdout and "(stored with the model" in scored.stdout
    threshold = float(store(directory).get_model_version("siamese-text", "1").tags["threshold"])
    scored_rows = scores.dropna(subset=["similarity"])
    assert scored_rows.is_similar.tolist() == (scored_rows.similarity >= threshold).tolist()


def test_ui_serves_the_project_store_on_loopback(question_file_ui):
    """`siamese ui` where a run was trained, with no MLFLOW_TRACKING_URI: its `mlruns/` store."""
    port = question_file_ui.url.rsplit(":", 1)[1]
    store_uri = f"sqlite:///{question_file_ui.directory.resolve()}/mlruns/mlflow.db"
    assert f"MLflow UI on http://127.0.0.1:{port} (store {store_uri})" in question_file_ui.output.read_text()
    page = httpx.get(f"{question_file_ui.url}/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    experiments = httpx.post(f"{question_file_ui.url}/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 10})
    assert experiments.status_code == 200
    assert "siamese-text" in {experiment["name"] for experiment in experiments.json()["experiments"]}


# The commands' wiring, in this process


@pytest.mark.parametrize(
    ("args", "config_text", "message"),
    [
        (["--epochs", "0"], None, "--epochs must be an integer >= 1, got 0"),
        (["--patience", "-1"], None, "--patience must be an integer >= 0, got -1"),
        (["--num-pairs", "-5"], None, "--num-pairs must be an integer >= 10"),
        (["--set", "data.num_pair=100"], None, "unknown key 'data.num_pair'"),
        (["--set", "training.epoch=1"], None, "allowed: epochs, batch_size, learning_rate, precision, devices"),
        ([], '[data]\nmode = "noise"\n', "data.mode must be one of paraphrase, random; got 'noise'"),
        ([], "[training\nepochs = 3\n", "is not valid TOML"),
        ([], "[model]\nunits = true\n", "--units must be an integer >= 1, got True"),
        (["--model", "vision", "--image-size", "8"], None, "--image-size must be an integer >= 16, got 8"),
        (["--set", "data.path=q.tsv", "--set", "data.quoting=single"], None, "--quoting must be one of auto, csv, none"),
    ],
)
def test_invalid_config_stops_before_any_work_naming_the_flag(siamese, tmp_path, args, config_text, message):
    if config_text is not None:
        (tmp_path / "bad.toml").write_text(config_text)
        args = ["--config", "bad.toml", *args]

    result = siamese("train", *args)

    assert result.returncode == 2
    assert "siamese: invalid configuration: " in result.stderr and message in result.stderr
    assert not (tmp_path / "mlruns").exists(), "nothing may be logged for an invalid config"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "missing.csv"], "--data missing.csv: no such file"),
        (["train", "--model", "vision", "--data", "pairs.csv"], "--data is for text pairs; give image pairs with --images"),
        (["train", "--model", "sequences", "--data", "pairs.csv"], "a file of text pairs trains --model text, not sequences"),
        (["train", "--model", "vision", "--images", "nowhere"], "--images nowhere: no such folder or file"),
        (["score", "--model", "models:/m/1", "--input", "missing.csv", "--output", "s.parquet"], "--input missing.csv: no such file"),
        (
            ["score", "--model", "models:/m/1", "--input", "pairs.csv", "--output", "s.xlsx"],
            "--output s.xlsx: use a .csv, .tsv, .tab, .txt, .parquet, .pq file",
        ),
        (
            ["score", "--model", "models:/m/1", "--input", "pairs.csv", "--output", "s.csv", "--threshold", "nan"],
            "--threshold must be a number, got nan",
        ),
    ],
)
def test_bad_paths_stop_before_any_work(siamese, tmp_path, args, message):
    (tmp_path / "pairs.csv").write_text("question1,question2\na,b\n")

    result = siamese(*args)

    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "mlruns").exists()


def test_messages_name_the_flag_where_a_key_has_one():
    assert cli.in_flags("data.left_column 'q' is not a column; data.noise must be >= 0") == (
        "--left-column 'q' is not a column; data.noise must be >= 0"
    )
    assert cli.in_flags("kind must be one of sequences, text, vision") == "kind must be one of sequences, text, vision"
    assert cli.in_flags("training.epochs_total") == "training.epochs_total", "only whole keys"
    assert cli.in_flags("it parses with quotes as text: set data.quoting = none") == (
        "it parses with quotes as text: set --quoting none"
    )
    assert cli.in_flags("no column 'fold' (data.split_column)") == "no column 'fold' (--split-column)"


@pytest.mark.usefixtures("prefect_api")
def test_train_vision_on_a_folder_of_class_images(siamese, cli_store, tmp_path, write_class_folders):
    """As a new user: point `--images` at a folder of class folders; nothing else to set up.

    25 classes put 5 in the test split: enough for 5-way one-shot trials, too few for 20-way.
    """
    write_class_folders(tmp_path / "shapes", classes=25)

    result = siamese(
        "train", "--model", "vision", "--images", "shapes", "--image-size", "16", "--num-pairs", "60", "--epochs", "1",
        "--set", "model.filters=4",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered model:  siamese-vision version 1" in result.stdout
    assert "test AUC" in result.stdout
    client = cli_store
    (run,) = client.search_runs([client.get_experiment_by_name("siamese-vision").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["sharing/passed"] == 1.0
    assert run.data.params["data.source"] == "folder"
    assert run.data.params["data.path"] == str((tmp_path / "shapes").resolve())
    metrics = run.data.metrics
    assert {"baseline/pixel_cosine_auc", "baseline/pixel_cosine_accuracy", "baseline/pixel_cosine_oneshot_5way"} <= metrics.keys()
    assert 0 <= metrics["test/oneshot_5way_accuracy"] <= 1
    assert "test/oneshot_20way_accuracy" not in metrics and "baseline/pixel_cosine_oneshot_20way" not in metrics


@pytest.mark.usefixtures("prefect_api")
def test_unusable_image_folder_fails_with_the_class_named_and_nothing_logged(siamese, cli_store, tmp_path, write_class_folders):
    root = write_class_folders(tmp_path / "shapes")
    for extra in sorted((root / "class_2").iterdir())[1:]:
        extra.unlink()

    result = siamese("train", "--images", "shapes", "--image-size", "16")

    assert result.returncode == 2
    assert "class_2" in result.stderr
    assert "siamese: invalid data" in result.stderr
    client = cli_store
    assert client.search_model_versions() == []
    experiment = client.get_experiment_by_name("siamese-vision")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


@pytest.mark.usefixtures("prefect_api")
def test_invalid_pair_file_exits_2_naming_the_column(siamese, cli_store, tmp_path):
    pairs = sample_question_pairs(40, seed=6)
    pairs.loc[[2, 3], "is_duplicate"] = 7
    pairs.to_csv(tmp_path / "questions.csv", index=False)

    result = siamese("train", "--data", "questions.csv")

    assert result.returncode == 2
    assert "siamese: invalid data" in result.stderr
    assert "column 'is_duplicate': 2 rows with labels that are not 0 or 1 (lines 4, 5" in result.stderr
    assert not (tmp_path / "mlruns" / "artifacts").exists()


@pytest.mark.usefixtures("prefect_api")
def test_score_takes_every_table_suffix_the_library_reads(siamese, tmp_path):
    (tmp_path / "pairs.tab").write_text("a\tb\nx\ty\n")

    result = siamese("score", "--model", "models:/m/1", "--input", "pairs.tab", "--output", "scores.pq")

    assert result.returncode == 2
    assert "use a" not in result.stderr, "the output suffix was accepted"
    assert "siamese: cannot score: " in result.stderr and "its columns are: a, b" in result.stderr


@pytest.mark.parametrize("output", ["pairs.csv", "./sub/../pairs.csv", "link.csv", "sub", "old.parquet"])
def test_score_refuses_an_output_that_is_its_input_or_a_folder_before_any_work(siamese, tmp_path, output):
    (tmp_path / "pairs.csv").write_text("question1,question2\na,b\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "pairs.csv")
    (tmp_path / "sub").mkdir()
    (tmp_path / "old.parquet").mkdir()  # e.g. a Parquet dataset folder written by another tool

    result = siamese("score", "--model", "models:/m/1", "--input", "pairs.csv", "--output", output)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("siamese: cannot score: the output ")
    assert ("is a folder" if output in ("sub", "old.parquet") else "is the input file") in result.stderr
    assert (tmp_path / "pairs.csv").read_text() == "question1,question2\na,b\n"
    assert not (tmp_path / "mlruns").exists() and not list((tmp_path / "sub").iterdir())


def test_ui_shows_a_tracking_server_without_its_password(siamese, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:secret@127.0.0.1:9/")

    result = siamese("ui")

    assert result.returncode == 0
    assert "open http://user:***@127.0.0.1:9/" in result.stdout and "secret" not in result.stdout + result.stderr


# Two failing commands as a user meets them, in a fresh directory with its own Prefect home, one
# after the other (each starts a temporary Prefect API): a data file that names no text columns,
# behind a 250 kB header line, and a tracking server, with credentials in its URI, that is down.
FAILING_COMMANDS = """
export PREFECT_HOME="$PWD/prefect-home" TMPDIR="$PWD"  # the debug logs too: removed with the directory
"$2" -c "print(','.join(f'column_{i}' for i in range(20000))); print(','.join(['x'] * 20000))" > questions.csv
"$1" train --data questions.csv > data.out 2> data.err; echo $? > data.code
MLFLOW_TRACKING_URI=http://user:secret@127.0.0.1:9/ "$1" train --epochs 1 > server.out 2> server.err; echo $? > server.code
"""


def _start_failing_commands() -> early.EarlyProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    return early.command(["bash", "-c", FAILING_COMMANDS, "bash", SIAMESE, sys.executable], env=env)


early.register("failing_commands", _start_failing_commands)


class FailingCommands(NamedTuple):
    directory: Path
    data: early.CommandResult
    server: early.CommandResult


@pytest.fixture(scope="session")
def failing_commands(request) -> FailingCommands:
    """`siamese train` on a bad data file, then against a dead server with a password in its URI."""
    process = early.started(request, "failing_commands")
    early.result(process, timeout=600)

    def result(name: str) -> early.CommandResult:
        read = lambda suffix: (process.directory / f"{name}.{suffix}").read_text()  # noqa: E731
        return early.CommandResult(int(read("code")), read("out"), read("err"))

    return FailingCommands(process.directory, result("data"), result("server"))


def failure_log(stderr: str) -> Path:
    (path,) = re.findall(r"\(tracebacks: (\S+\.log);", stderr)
    return Path(path)


def test_a_bad_data_file_prints_one_clean_message_and_keeps_tracebacks_in_a_debug_log(failing_commands):
    result = failing_commands.data

    assert result.returncode == 2, result.stderr[-3000:]
    prefect_lines = [line for line in result.stderr.splitlines() if " | " in line]  # Prefect's log lines
    assert all(" | INFO " in line for line in prefect_lines), "a failed run's reports stay off the console"
    assert "Traceback" not in result.stderr and len(result.stderr) < 5_000
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("siamese: invalid data: ")]
    assert "cannot tell which columns hold the two texts; its columns are: column_0, column_1" in message
    assert "… (" in message and "characters); known layouts are" in message and message.endswith("--verbose prints them)")
    log = failure_log(message).read_text()
    assert "Traceback" in log and "PairFileError" in log


def test_credentials_in_the_tracking_uri_are_never_printed_or_logged(failing_commands):
    result = failing_commands.server

    assert result.returncode == 1, result.stderr[-3000:]
    assert "siamese: training failed: MLflow tracking server http://user:***@127.0.0.1:9/ is unreachable" in result.stderr
    log = failure_log(result.stderr).read_text()
    assert "http://user:***@127.0.0.1:9/" in log
    assert "secret" not in result.stdout + result.stderr + log
    stored = stored_log_messages(failing_commands.directory / "prefect-home" / "prefect.db")
    assert any("user:***@127.0.0.1:9" in message for message in stored), "the failure was logged to the Prefect API"
    assert not [message for message in stored if "secret" in message]


def stored_log_messages(database: Path) -> list[str]:
    """Every log line the Prefect API stored in its database."""
    with closing(sqlite3.connect(database)) as connection:
        return [message for (message,) in connection.execute("SELECT message FROM log")]
