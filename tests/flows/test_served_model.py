"""The champion of raw-text pairs served over HTTP by a real `mlflow models serve` process, as the README shows.

The server runs outside the repository, finds the registry through `MLFLOW_TRACKING_URI` only,
and answers `POST /invocations`: similarities and decisions by default, each side's embedding
with `"params": {"output": "embedding"}`, HTTP 400 with a message for a request it cannot answer.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

import httpx
import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from flow_helpers import FlowRun, wait_until_answering

from siamese.config import ModelKind
from siamese.data.sample_questions import sample_question_pairs
from siamese.embedding import Embedder
from siamese.families import family_of

pytestmark = pytest.mark.usefixtures("prefect_api")

CHAMPION = f"models:/{family_of(ModelKind.TEXT).registered_name}@champion"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
START_TIMEOUT_SECONDS = 180  # imports MLflow, then TensorFlow in its uvicorn worker, and loads the model


def request_pairs() -> pd.DataFrame:
    """Two question pairs and the first one swapped: the same texts on both sides."""
    pairs = sample_question_pairs(2, seed=11)
    pairs = pd.DataFrame({"left": pairs["question1"], "right": pairs["question2"]})
    swapped = pairs.iloc[[0]].rename(columns={"left": "right", "right": "left"})
    return pd.concat([pairs, swapped[["left", "right"]]], ignore_index=True)


def split_request(pairs: pd.DataFrame, **extra) -> dict:
    return {"dataframe_split": {"columns": list(pairs.columns), "data": pairs.to_numpy().tolist()}} | extra


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServedModel(NamedTuple):
    url: str
    run: FlowRun
    log: Path


def start_model_server(run: FlowRun, directory: Path, port: int) -> subprocess.Popen:
    """The README's command, in a fresh directory, in a process group of its own (uvicorn is its child)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env |= {
        "MLFLOW_TRACKING_URI": run.uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # it runs `uvicorn` from PATH
        "TMPDIR": str(directory),  # the model it downloads goes there, removed with the test's directory
    }
    command = [MLFLOW, "models", "serve", "-m", CHAMPION, "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "-w", "1"]
    with open(directory / "server.log", "w") as log:
        return subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=log, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group, SIGKILL if it is still there after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def served_model(text_run, tmp_path_factory) -> Iterator[ServedModel]:
    directory = tmp_path_factory.mktemp("served-model")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_model_server(text_run, directory, port)
    try:
        wait_until_answering(url, server, directory / "server.log", "/ping", START_TIMEOUT_SECONDS)
        yield ServedModel(url, text_run, directory / "server.log")
    finally:
        stop(server)


@pytest.fixture
def champion(text_run, monkeypatch):
    """The champion loaded in this process, from the same store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", text_run.uri)
    mlflow.set_tracking_uri(text_run.uri)
    return mlflow.pyfunc.load_model(CHAMPION)


def invoke(served: ServedModel, body: dict) -> httpx.Response:
    return httpx.post(f"{served.url}/invocations", json=body, timeout=60)


def test_the_served_champion_answers_similarities_and_decisions_like_the_loaded_model(served_model, champion):
    pairs = request_pairs()

    response = invoke(served_model, split_request(pairs))

    assert response.status_code == 200, response.text
    predictions = pd.DataFrame(response.json()["predictions"])
    assert list(predictions.columns) == ["similarity", "is_similar"]
    threshold = mlflow.models.get_model_info(CHAMPION).metadata["threshold"]
    assert threshold == served_model.run.result["threshold"]
    similarity = predictions["similarity"].to_numpy(dtype=float)
    assert ((similarity >= 0) & (similarity <= 1)).all()
    assert predictions["is_similar"].tolist() == [score >= threshold for score in similarity]
    expected = champion.predict(pairs)
    np.testing.assert_allclose(similarity, expected["similarity"].to_numpy(dtype=float), atol=1e-5)
    assert predictions["is_similar"].tolist() == expected["is_similar"].tolist()


def test_the_served_champion_answers_embeddings_on_request(served_model, champion, tmp_path):
    pairs = request_pairs()

    response = invoke(served_model, split_request(pairs, params={"output": "embedding"}))

    assert response.status_code == 200, response.text
    predictions = pd.DataFrame(response.json()["predictions"])
    assert list(predictions.columns) == ["left_embedding", "right_embedding"]
    left, right = (np.array(predictions[f"{side}_embedding"].tolist(), dtype=np.float64) for side in ("left", "right"))
    embedder = Embedder(keras.saving.load_model(served_model.run.work_dir / "trained.keras"))
    assert left.shape == right.shape == (len(pairs), embedder.dimensions)
    np.testing.assert_allclose(np.linalg.norm(left, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(right, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(left, embedder.embed(pairs["left"].tolist()), atol=1e-5)
    np.testing.assert_allclose(right, embedder.embed(pairs["right"].tolist()), atol=1e-5)
    np.testing.assert_allclose(left[2], right[0], atol=1e-6)  # row 2 is row 0 swapped
    np.testing.assert_allclose(right[2], left[0], atol=1e-6)
    loaded = champion.predict(pairs, params={"output": "embedding"})  # and the model loaded here agrees
    np.testing.assert_allclose(np.array(loaded["left_embedding"].tolist()), left, atol=1e-5)
    # The server computed them with the model's own copy of `siamese` (code_paths), not this checkout's.
    model = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path)))
    assert (model / "code" / "siamese" / "embedding.py").is_file()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"dataframe_split": {"columns": ["left"], "data": [["How do i learn gardening?"]]}}, "right", id="missing-right-column"
        ),
        pytest.param(
            split_request(request_pairs(), params={"output": "vectors"}),
            "unknown output 'vectors': params 'output' is one of 'similarity', 'embedding'",
            id="unknown-output",
        ),
        pytest.param(
            split_request(pd.DataFrame({"left": ["How do i learn gardening?", "  "], "right": ["How can i grow tomatoes?", "x"]})),
            "1 of 2 rows cannot be scored (row 1: empty or missing left text)",
            id="blank-text",
        ),
    ],
)
def test_the_served_champion_refuses_a_bad_request_with_a_message(served_model, body, message):
    response = invoke(served_model, body)

    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


def test_the_loaded_model_names_the_outputs_it_gives(champion):
    with pytest.raises(ValueError, match=r"unknown output 'vectors': params 'output' is one of 'similarity', 'embedding'"):
        champion.predict(request_pairs(), params={"output": "vectors"})
