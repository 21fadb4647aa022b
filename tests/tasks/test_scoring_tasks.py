"""Scoring tasks called directly: which threshold decides `is_similar`, and the decision written beside each score."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from siamese.data.tables import AtomicTableWriter
from siamese.data.text_pairs import PairColumns
from tasks.scoring import DecisionThreshold, OutputPathError, check_output_path, choose_threshold, score_file


def by_length(pairs: pd.DataFrame) -> pd.DataFrame:
    """A stand-in model: the shorter text's share of the longer one's length."""
    left, right = pairs.left.str.len(), pairs.right.str.len()
    return pd.DataFrame({"similarity": np.minimum(left, right) / np.maximum(left, right)})


@pytest.mark.parametrize(
    ("stored", "given", "expected", "source"),
    [
        (0.37, None, 0.37, "stored with the model"),
        (0.37, 0.9, 0.9, "given, instead of the stored 0.37"),
        (None, 0.2, 0.2, "given"),
        (None, None, 0.5, "default: the model was registered without a threshold"),
    ],
)
def test_a_given_threshold_overrides_the_stored_one_and_0_5_is_the_last_resort(stored, given, expected, source):
    chosen = choose_threshold.fn(stored, given)
    assert chosen.value == expected and chosen.source.startswith(source)


@pytest.mark.parametrize("given", [-0.1, 1.5, math.nan])
def test_a_threshold_outside_0_to_1_is_refused(given):
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 1"):
        choose_threshold.fn(0.4, given)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_is_similar_is_the_score_at_the_threshold_and_empty_where_there_is_no_score(tmp_path, suffix):
    source, output = tmp_path / "pairs.csv", tmp_path / f"scores{suffix}"
    pairs = pd.DataFrame({"left": ["abcd", "ab", "abcd", "", "abc"], "right": ["abcd", "abcd", "a", "x", "abcd"], "is_similar": 1})
    pairs.to_csv(source, index=False)

    # Chunks of 2: the first has no unscorable row, yet a Parquet schema taken from it must hold the later errors.
    summary = score_file.fn(by_length, source, output, PairColumns("left", "right", None), DecisionThreshold(0.5, "given"), chunk_rows=2)

    scores = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)
    assert list(scores.columns) == ["left", "right", "input_is_similar", "similarity", "is_similar", "error"]
    np.testing.assert_allclose(scores.similarity, [1.0, 0.5, 0.25, np.nan, 0.75])
    assert scores.is_similar.tolist()[:3] == [True, True, False] and scores.is_similar.tolist()[4] is True
    assert pd.isna(scores.is_similar[3]) and scores.error[3] == "empty or missing left text"
    assert summary.threshold == DecisionThreshold(0.5, "given") and summary.scored == 4


def test_a_graded_model_decides_only_at_a_threshold_given_on_its_scale():
    undecided = choose_threshold.fn(None, None, (0.0, 5.0))
    assert undecided.value is None and undecided.describe().startswith("left empty")
    assert choose_threshold.fn(None, 3.5, (0.0, 5.0)).value == 3.5
    with pytest.raises(ValueError, match="threshold must be a number from 1 to 5"):
        choose_threshold.fn(None, 0.5, (1.0, 5.0))


def test_without_a_threshold_is_similar_is_empty_and_the_scores_are_kept(tmp_path):
    source, output = tmp_path / "pairs.csv", tmp_path / "scores.parquet"
    pd.DataFrame({"left": ["abcd", "ab"], "right": ["abcd", "abcd"]}).to_csv(source, index=False)
    undecided = DecisionThreshold(None, "none: a graded model decides only at a given threshold")
    score_file.fn(by_length, source, output, PairColumns("left", "right", None), undecided, chunk_rows=2)
    scores = pd.read_parquet(output)
    np.testing.assert_allclose(scores.similarity, [1.0, 0.5])
    assert scores.is_similar.isna().all()


def test_an_output_that_is_the_input_by_any_path_or_a_folder_is_refused(tmp_path, monkeypatch):
    source = tmp_path / "pairs.csv"
    source.write_text("left,right\na,b\n")
    (tmp_path / "link.csv").symlink_to(source)
    (tmp_path / "hard.csv").hardlink_to(source)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)

    for same in (Path("pairs.csv"), Path("out/../pairs.csv"), tmp_path / "link.csv", tmp_path / "hard.csv"):
        with pytest.raises(OutputPathError, match=r"is the input file .*pairs.csv: scoring would replace it"):
            check_output_path(source, same)
    with pytest.raises(OutputPathError, match=r"the output .*out is a folder; name the file to write, e.g. .*out/scores.parquet"):
        check_output_path(source, tmp_path / "out")
    check_output_path(source, tmp_path / "scores.csv")  # a new file, and an existing other one, are fine
    check_output_path(source, tmp_path / "link.csv.bak")
    assert source.read_text() == "left,right\na,b\n"


def test_a_temporary_file_left_by_a_killed_run_is_removed_by_the_next_one(tmp_path):
    source, output = tmp_path / "pairs.csv", tmp_path / "scores.parquet"
    pd.DataFrame({"left": ["abcd", "ab"], "right": ["abcd", "abcd"]}).to_csv(source, index=False)
    killed = AtomicTableWriter(output).__enter__()  # a run killed mid-write: never exits, its hidden file stays
    killed.write(pd.DataFrame({"left": ["x"], "right": ["y"]}))
    others = [tmp_path / ".other.parquet.0123abcd.tmp", tmp_path / ".scores.parquet.notes.tmp"]  # not this output's
    for other in others:
        other.write_text("keep")
    (stale,) = [path for path in tmp_path.iterdir() if path.name.startswith(".scores.parquet.") and path not in others]

    score_file.fn(by_length, source, output, PairColumns("left", "right", None), DecisionThreshold(0.5, "given"))

    assert not stale.exists()
    assert all(other.read_text() == "keep" for other in others)
    np.testing.assert_allclose(pd.read_parquet(output).similarity, [1.0, 0.5])
