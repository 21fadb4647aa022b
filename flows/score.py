"""The batch scoring flow: a registered text pair model scores a file of raw text pairs.

find the text columns -> load the registered model -> score the file chunk by chunk -> summary.
The columns are checked before the model loads, so a wrong file fails in a second.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.reporting import publish_scoring_summary
from tasks.scoring import CHUNK_ROWS, ScoringSummary, find_text_columns, score_file
from tasks.registry import load_text_pair_scorer


@flow(name="score-pairs")
def score_flow(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    left_column: str | None = None,
    right_column: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ScoringSummary:
    """Score every row of a CSV, TSV or Parquet file of text pairs with a registered model.

    Args:
        model_uri: a text pair model, e.g. `models:/siamese-text@champion` or `models:/siamese-text/3`.
        input_path: the pairs; text columns named, or detected as in training (question1/question2, ...).
        output_path: `.parquet`, `.csv` or `.tsv`: the input's columns plus `similarity` and `error`,
            written only when complete.
        chunk_rows: rows read and scored at a time; memory stays bounded for files of any length.

    Raises:
        PairFileError: the input cannot be read or has no recognisable text columns.
        ScoringModelError: the model is not a text pair model (it takes tensors, not strings).
    """
    columns = find_text_columns(input_path, left_column, right_column)
    scorer = load_text_pair_scorer(model_uri)
    summary = score_file(scorer, input_path, output_path, columns, chunk_rows)
    publish_scoring_summary(model_uri, summary)
    return summary
