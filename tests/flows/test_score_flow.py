"""The batch scoring flow with a registered text pair model: chunks, unscorable rows, atomic output."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from flows import cli
from flows.score import score_flow
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.tables import AtomicTableWriter, PairFileError
from tasks.scoring import OutputPathError

pytestmark = pytest.mark.usefixtures("prefect_api")

CHAMPION = "models:/siamese-text@champion"
BLANK = {7: "question1", 61: "question2", 120: "question1"}  # data row -> the column left blank


@pytest.fixture
def pairs_to_score(tmp_path) -> pd.DataFrame:
    """130 unlabelled pairs with an id column, three with a blank side."""
    pairs = sample_question_pairs(130, seed=5).drop(columns="is_duplicate")
    pairs.insert(0, "id", [f"q{index}" for index in range(len(pairs))])
    for row, column in BLANK.items():
        pairs.loc[row, column] = ""
    return pairs


def test_scores_a_file_larger_than_one_chunk(tmp_path, text_store, pairs_to_score):
    source, output = tmp_path / "pairs.csv", tmp_path / "scores.parquet"
    pairs_to_score.to_csv(source, index=False)

    summary = score_flow(model_uri=CHAMPION, input_path=source, output_path=output, chunk_rows=50)

    scores = pd.read_parquet(output)
    assert (summary.rows, summary.scored, summary.unscorable_count) == (130, 127, 3)
    assert summary.unscorable_rows == "lines 9, 63, 122"
    assert summary.unscorable == {"empty or missing left text": 2, "empty or missing right text": 1}
    assert list(scores.columns) == ["id", "question1", "question2", "similarity", "is_similar", "error"]
    assert scores.id.tolist() == pairs_to_score.id.tolist(), "every row, in input order"
    blank = scores.iloc[list(BLANK)]
    assert blank.similarity.isna().all() and blank.is_similar.isna().all() and blank.error.tolist() == [
        "empty or missing left text", "empty or missing right text", "empty or missing left text",
    ]  # fmt: skip
    valid = scores.drop(index=list(BLANK))
    assert valid.error.isna().all()
    expected = mlflow.pyfunc.load_model(CHAMPION).predict(
        pd.DataFrame({"left": valid.question1.to_numpy(), "right": valid.question2.to_numpy()})
    )
    np.testing.assert_allclose(valid.similarity.to_numpy(), expected.similarity.to_numpy(), rtol=1e-6)
    stored = mlflow.models.get_model_info(CHAMPION).metadata["threshold"]
    assert summary.threshold.value == stored and summary.threshold.source.startswith("stored with the model")
    assert valid.is_similar.tolist() == (valid.similarity >= stored).tolist()
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")], "no temporary file left"


def test_a_given_threshold_decides_instead_of_the_stored_one(tmp_path, text_store, pairs_to_score):
    source = tmp_path / "pairs.csv"
    pairs_to_score.head(20).to_csv(source, index=False)
    stored = mlflow.models.get_model_info(CHAMPION).metadata["threshold"]
    decided = {}
    for given in (0.0, 1.0):
        output = tmp_path / f"scores-{given}.parquet"
        summary = score_flow(model_uri=CHAMPION, input_path=source, output_path=output, threshold=given)
        assert summary.threshold.value == given and summary.threshold.source == f"given, instead of the stored {stored:.4g}"
        decided[given] = pd.read_parquet(output).dropna(subset=["similarity"]).is_similar
    assert decided[0.0].all() and not decided[1.0].any()


def test_named_columns_of_a_parquet_file_into_csv(tmp_path, text_store, pairs_to_score):
    source, output = tmp_path / "pairs.parquet", tmp_path / "scores.csv"
    pairs_to_score.rename(columns={"question1": "a", "question2": "b"}).to_parquet(source, index=False)

    summary = score_flow(
        model_uri=CHAMPION, input_path=source, output_path=output, left_column="a", right_column="b", chunk_rows=64
    )

    scores = pd.read_csv(output)
    assert summary.unscorable_rows == "rows 8, 62, 121"
    assert len(scores) == 130 and scores.similarity.notna().sum() == 127
    assert scores.similarity.dropna().between(0, 1).all()


def test_a_bad_row_mid_file_leaves_the_previous_output_untouched(tmp_path, text_store, pairs_to_score):
    source, output = tmp_path / "pairs.csv", tmp_path / "scores.parquet"
    text = pairs_to_score.to_csv(index=False)
    source.write_text(text + "q999,a line with,one field too many,What is chess?\n")
    output.write_bytes(b"yesterday's scores")

    with pytest.raises(PairFileError, match="pairs.csv"):
        score_flow(model_uri=CHAMPION, input_path=source, output_path=output, chunk_rows=50)

    assert output.read_bytes() == b"yesterday's scores"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.csv", "scores.parquet"]


def test_input_without_text_columns_fails_before_the_model_loads(tmp_path, text_store):
    source = tmp_path / "pairs.csv"
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(source, index=False)

    with pytest.raises(PairFileError, match=r"its columns are: a, b"):
        score_flow(model_uri="models:/no-such-model@champion", input_path=source, output_path=tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_file_with_only_a_header_gives_an_empty_output_with_its_columns(tmp_path, text_store):
    source, output = tmp_path / "pairs.csv", tmp_path / "scores.parquet"
    source.write_text("id,left,right\n")

    summary = score_flow(model_uri=CHAMPION, input_path=source, output_path=output)

    assert (summary.rows, summary.scored) == (0, 0)
    assert list(pd.read_parquet(output).columns) == ["id", "left", "right", "similarity", "is_similar", "error"]


def test_the_flow_refuses_to_write_over_its_input_before_the_model_loads(tmp_path, text_store, pairs_to_score):
    source = tmp_path / "pairs.csv"
    pairs_to_score.to_csv(source, index=False)
    before = source.read_bytes()

    with pytest.raises(OutputPathError, match="is the input file"):
        score_flow(model_uri="models:/no-such-model@champion", input_path=source, output_path=tmp_path / "." / "pairs.csv")
    assert source.read_bytes() == before


def test_siamese_score_removes_a_temporary_file_a_killed_run_left(tmp_path, text_store, pairs_to_score, monkeypatch, capsys):
    source, output = tmp_path / "pairs.csv", tmp_path / "scores.parquet"
    pairs_to_score.head(20).to_csv(source, index=False)
    killed = AtomicTableWriter(output).__enter__()  # what kill -9 mid-write leaves: the hidden file, never moved or removed
    killed.write(pairs_to_score.head(3))
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".scores.parquet.")]
    monkeypatch.chdir(tmp_path)

    code = cli.main(["score", "--model", CHAMPION, "--input", "pairs.csv", "--output", "scores.parquet"])

    assert code == 0, capsys.readouterr().err[-3000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.csv", "scores.parquet"]
    assert len(pd.read_parquet(output)) == 20
