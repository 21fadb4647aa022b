"""The batch scoring flow: a registered text pair model scores and decides a file of raw text pairs.

check the output path -> find the text columns -> load the registered model -> choose the
threshold -> score the file chunk by chunk -> summary. The output path and the columns are
checked before the model loads, so a wrong path or file fails in a second.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.reporting import publish_scoring_summary
from tasks.scoring import CHUNK_ROWS, ScoringSummary, check_output_path, choose_threshold, find_text_columns, score_file
from tasks.registry import load_text_pair_scorer


@flow(name="score-pairs")
def score_flow(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    left_column: str | None = None,
    right_column: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    threshold: float | None = None,
) -> ScoringSummary:
    """Score every row of a CSV, TSV or Parquet file of text pairs with a registered model.

    Args:
        model_uri: a text pair model, e.g. `models:/siamese-text@champion` or `models:/siamese-text/3`.
        input_path: the pairs; text columns named, or detected as in training (question1/question2, ...).
        output_path: `.parquet`, `.csv` or `.tsv`: the input's columns plus `similarity`,
            `is_similar` (similarity >= the threshold) and `error`, written only when complete.
        chunk_rows: rows read and scored at a time; memory stays bounded for files of any length.
        threshold: decide `is_similar` here instead of at the threshold stored with the model (the
            one of maximum F1 on its validation split; 0.5 for a model registered without one).

    Raises:
        OutputPathError: `output_path` is the input file or a folder.
        PairFileError: the input cannot be read or has no recognisable text columns.
        ScoringModelError: the model is not a text pair model (it takes tensors, not strings).
        ValueError: `threshold` lies outside the model's scores (0 to 1, or a graded model's scale).
    """
    check_output_path(input_path, output_path)
    columns = find_text_columns(input_path, left_column, right_column)
    model = load_text_pair_scorer(model_uri)
    decision = choose_threshold(model.threshold, threshold, model.scale)
    summary = score_file(model.predict, input_path, output_path, columns, decision, chunk_rows)
    publish_scoring_summary(model_uri, summary)
    return summary
