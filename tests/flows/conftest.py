"""Flow fixtures: one text pair model trained and registered once, shared by the training and scoring tests."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from text_helpers import BLANK_ROWS, TextRun, text_pairs_config

from siamese.data.sample_questions import sample_question_pairs


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, prefect_api) -> TextRun:
    """One flow run on a CSV of 200 question pairs, two of them invalid and dropped."""
    from flows.train import train_flow

    directory = tmp_path_factory.mktemp("text-run")
    pairs = sample_question_pairs(200, seed=1)
    pairs.loc[list(BLANK_ROWS), "question2"] = ""
    source = directory / "questions.csv"
    pairs.to_csv(source, index=False)
    uri = f"sqlite:///{directory / 'mlflow' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        result = train_flow(config=text_pairs_config(source, drop_invalid_rows=True), work_dir=directory / "work")
    return TextRun(result, source, directory / "work", uri)


@pytest.fixture
def text_store(text_run, monkeypatch) -> MlflowClient:
    """Point this test at the text run's MLflow store (models:/siamese-text@champion resolves there)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", text_run.uri)
    mlflow.set_tracking_uri(text_run.uri)
    return MlflowClient(text_run.uri)
