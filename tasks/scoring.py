"""Batch scoring tasks: find the text columns, score a file chunk by chunk, write the output atomically."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from siamese.data.tables import AtomicTableWriter, describe_rows, iter_table_chunks, read_columns
from siamese.data.text_pairs import PairColumns, detect_columns, unscorable_rows

CHUNK_ROWS = 50_000  # rows read, scored and written at a time: bounds memory for files of any length
SCORE_COLUMN, ERROR_COLUMN = "similarity", "error"  # added to every input row in the output
SHOWN_ROWS = 5  # unscorable rows named in the summary

Scorer = Callable[[pd.DataFrame], pd.DataFrame]  # DataFrame(left, right) -> DataFrame(similarity)


@dataclass(frozen=True)
class ScoringSummary:
    input_path: str
    output_path: str
    rows: int
    scored: int
    unscorable: dict[str, int] = field(default_factory=dict)  # reason -> rows
    unscorable_rows: str = ""  # where the first ones are, e.g. "lines 4, 9"
    seconds: float = 0.0

    @property
    def unscorable_count(self) -> int:
        return self.rows - self.scored


@task(name="find-text-columns", cache_policy=NO_CACHE)
def find_text_columns(input_path: Path, left_column: str | None, right_column: str | None) -> PairColumns:
    """The input's two text columns (named, or detected as for training); fails before the model loads."""
    columns = detect_columns(
        read_columns(input_path), left=left_column, right=right_column, require_label=False, source=str(input_path)
    )
    get_run_logger().info("scoring columns %r (left) and %r (right)", columns.left, columns.right)
    return columns


@task(name="score-file", cache_policy=NO_CACHE)
def score_file(
    scorer: Scorer, input_path: Path, output_path: Path, columns: PairColumns, chunk_rows: int = CHUNK_ROWS
) -> ScoringSummary:
    """Score every row of `input_path` into `output_path`: its columns plus `similarity` and `error`.

    Rows with missing or blank text are kept with an empty score and the reason in `error`, and
    counted. The output appears only when every chunk is written: a crash leaves no partial file.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    rows = scored = 0
    reasons: Counter[str] = Counter()
    first_unscorable: list[int] = []
    with AtomicTableWriter(output_path, empty_frame=_empty_output(input_path)) as writer, _progress_bar(input_path) as progress:
        bar = progress.add_task("scoring", total=None, rows=0)
        for chunk in iter_table_chunks(input_path, chunk_rows):
            problems = unscorable_rows(chunk.frame[columns.left], chunk.frame[columns.right])
            scores = _score_chunk(scorer, chunk.frame, columns, problems.isna().to_numpy())
            writer.write(_output_frame(chunk.frame, scores, problems))
            bad = np.flatnonzero(problems.notna().to_numpy())
            reasons.update(problems.iloc[bad])
            first_unscorable += [chunk.first_row + int(index) for index in bad][: SHOWN_ROWS - len(first_unscorable)]
            rows += len(chunk.frame)
            scored += len(chunk.frame) - len(bad)
            progress.update(bar, completed=chunk.done, total=chunk.total, rows=rows)
            logger.info("scored %s rows (%.0f%%)", f"{rows:,}", 100 * chunk.done / max(chunk.total, 1))
    summary = ScoringSummary(
        input_path=str(input_path),
        output_path=str(output_path),
        rows=rows,
        scored=scored,
        unscorable=dict(reasons),
        unscorable_rows=describe_rows(input_path, first_unscorable) if first_unscorable else "",
        seconds=time.perf_counter() - started,
    )
    if summary.unscorable_count:
        logger.warning("%d rows could not be scored (%s): %s", summary.unscorable_count, summary.unscorable_rows, dict(reasons))
    return summary


def _score_chunk(scorer: Scorer, frame: pd.DataFrame, columns: PairColumns, scorable: np.ndarray) -> np.ndarray:
    """Scores of the scorable rows; NaN (an empty cell in the output) for the others."""
    scores = np.full(len(frame), np.nan)
    if scorable.any():
        pairs = pd.DataFrame(
            {"left": frame[columns.left][scorable].astype(str), "right": frame[columns.right][scorable].astype(str)}
        )
        scores[scorable] = np.asarray(scorer(pairs)[SCORE_COLUMN], dtype=float)
    return scores


def _output_frame(frame: pd.DataFrame, scores: np.ndarray, problems: pd.Series) -> pd.DataFrame:
    """The input rows with their score and error; input columns of those names become `input_<name>`."""
    renamed = frame.rename(columns={name: f"input_{name}" for name in (SCORE_COLUMN, ERROR_COLUMN) if name in frame})
    return renamed.assign(**{SCORE_COLUMN: scores, ERROR_COLUMN: problems.astype("string").to_numpy()})


def _empty_output(input_path: Path) -> pd.DataFrame:
    """The output's columns for an input with a header and no rows."""
    header = pd.DataFrame(columns=read_columns(input_path), dtype="string")
    return _output_frame(header, np.array([]), pd.Series([], dtype="string"))


def _progress_bar(input_path: Path) -> Progress:
    """A terminal progress bar: bytes read for CSV/TSV, rows for Parquet, with rows scored so far."""
    return Progress(
        TextColumn(f"scoring {input_path.name}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
