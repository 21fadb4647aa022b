"""Batch scoring tasks: find the text columns, choose the decision threshold, score a file chunk by chunk, write the output atomically."""

from __future__ import annotations

import math
import re
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
from siamese.evaluation import DEFAULT_THRESHOLD

CHUNK_ROWS = 50_000  # rows read, scored and written at a time: bounds memory for files of any length
SCORE_COLUMN, DECISION_COLUMN, ERROR_COLUMN = "similarity", "is_similar", "error"  # added to every input row in the output
SHOWN_ROWS = 5  # unscorable rows named in the summary

Scorer = Callable[[pd.DataFrame], pd.DataFrame]  # DataFrame(left, right) -> DataFrame(similarity)


class ThresholdError(ValueError):
    """A given decision threshold outside the model's scores; the message gives the range."""


class OutputPathError(ValueError):
    """An output path that scoring must not write: the input itself, or a folder; the message says which."""


def check_output_path(input_path: Path, output_path: Path) -> None:
    """Refuse, before any work, an output that is the input file (by any path to it) or an existing folder.

    Either would otherwise show only at the end: the finished output would replace the input,
    or fail to move onto the folder after every row was scored.

    Raises:
        OutputPathError: naming the path and what to do instead.
    """
    if output_path.is_dir():
        raise OutputPathError(f"the output {output_path} is a folder; name the file to write, e.g. {output_path / 'scores.parquet'}")
    if input_path.exists() and output_path.exists() and output_path.samefile(input_path):
        raise OutputPathError(
            f"the output {output_path} is the input file {input_path}: scoring would replace it; write the scores to another file"
        )


@dataclass(frozen=True)
class DecisionThreshold:
    """The threshold `is_similar` is decided at (similarity >= it), and where it came from."""

    value: float | None  # None: nothing to decide at (a graded model given no threshold): `is_similar` stays empty
    source: str  # for the log and the summary, e.g. "stored with the model"

    def describe(self) -> str:
        """How `is_similar` was decided, for summaries: `similarity >= 0.42 (stored with the model ...)`."""
        rule = "left empty" if self.value is None else f"similarity >= {self.value:.4g}"
        return f"{rule} ({self.source})"


@dataclass(frozen=True)
class ScoringSummary:
    input_path: str
    output_path: str
    rows: int
    scored: int
    threshold: DecisionThreshold
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


@task(name="choose-threshold", cache_policy=NO_CACHE)
def choose_threshold(stored: float | None, given: float | None, scale: tuple[float, float] | None = None) -> DecisionThreshold:
    """The threshold `is_similar` is decided at: `given` if any, else the model's stored one, else 0.5 (said in the log).

    A graded-score model (`scale`, its lowest and highest score) stores no threshold: what counts
    as similar on a 0-5 scale is the user's call, so `is_similar` is decided only at a `given`
    threshold on that scale, and otherwise left empty.

    Raises:
        ThresholdError: `given` lies outside the model's scores (0 to 1, or the graded scale).
    """
    low, high = scale or (0.0, 1.0)
    if given is not None and not (math.isfinite(given) and low <= given <= high):
        raise ThresholdError(f"threshold must be a number from {low:g} to {high:g} (similarity >= threshold is similar), got {given!r}")
    logger = get_run_logger()
    if given is not None:
        chosen = DecisionThreshold(float(given), "given" + ("" if stored is None else f", instead of the stored {stored:.4g}"))
    elif stored is not None:
        chosen = DecisionThreshold(stored, "stored with the model: maximum F1 on its validation split")
    elif scale is not None:
        logger.info("a graded model (scores %g to %g): is_similar is left empty; pass --threshold on that scale to decide", low, high)
        return DecisionThreshold(None, "none: a graded model decides only at a given threshold")
    else:
        chosen = DecisionThreshold(DEFAULT_THRESHOLD, "default: the model was registered without a threshold")
        logger.warning("the model stores no decision threshold (registered before thresholds were): deciding at %g", chosen.value)
        return chosen
    logger.info("is_similar = similarity >= %.4g (%s)", chosen.value, chosen.source)
    return chosen


@task(name="score-file", cache_policy=NO_CACHE)
def score_file(
    scorer: Scorer,
    input_path: Path,
    output_path: Path,
    columns: PairColumns,
    threshold: DecisionThreshold,
    chunk_rows: int = CHUNK_ROWS,
) -> ScoringSummary:
    """Score every row of `input_path` into `output_path`: its columns plus `similarity`, `is_similar` and `error`.

    Rows with missing or blank text are kept with an empty score and decision and the reason in
    `error`, and counted. The output appears only when every chunk is written: a crash leaves
    no partial file, and the hidden temporary file a killed earlier run left is removed first.
    """
    logger = get_run_logger()
    remove_stale_temporaries(output_path)
    started = time.perf_counter()
    rows = scored = 0
    reasons: Counter[str] = Counter()
    first_unscorable: list[int] = []
    with AtomicTableWriter(output_path, empty_frame=_empty_output(input_path)) as writer, _progress_bar(input_path) as progress:
        bar = progress.add_task("scoring", total=None, rows=0)
        for chunk in iter_table_chunks(input_path, chunk_rows):
            problems = unscorable_rows(chunk.frame[columns.left], chunk.frame[columns.right])
            scores = _score_chunk(scorer, chunk.frame, columns, problems.isna().to_numpy())
            writer.write(_output_frame(chunk.frame, scores, problems, threshold.value))
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
        threshold=threshold,
        unscorable=dict(reasons),
        unscorable_rows=describe_rows(input_path, first_unscorable) if first_unscorable else "",
        seconds=time.perf_counter() - started,
    )
    if summary.unscorable_count:
        logger.warning("%d rows could not be scored (%s): %s", summary.unscorable_count, summary.unscorable_rows, dict(reasons))
    return summary


def remove_stale_temporaries(output_path: Path) -> None:
    """Remove the hidden temporary files `AtomicTableWriter` left beside `output_path` when its process was killed.

    They are named `.<output name>.<8 hex digits>.tmp`; a run that ended normally removed its own.
    (Two commands writing one output at the same time are not supported: the later removes the
    earlier's file, and the earlier then fails instead of being overwritten unseen.)
    """
    pattern = re.compile(rf"\.{re.escape(output_path.name)}\.[0-9a-f]{{8}}\.tmp")
    if not output_path.parent.is_dir():
        return
    for stale in sorted(path for path in output_path.parent.iterdir() if pattern.fullmatch(path.name)):
        stale.unlink(missing_ok=True)
        get_run_logger().info("removed %s, left by an earlier run into %s that stopped before it finished", stale.name, output_path.name)


def _score_chunk(scorer: Scorer, frame: pd.DataFrame, columns: PairColumns, scorable: np.ndarray) -> np.ndarray:
    """Scores of the scorable rows; NaN (an empty cell in the output) for the others."""
    scores = np.full(len(frame), np.nan)
    if scorable.any():
        pairs = pd.DataFrame(
            {"left": frame[columns.left][scorable].astype(str), "right": frame[columns.right][scorable].astype(str)}
        )
        scores[scorable] = np.asarray(scorer(pairs)[SCORE_COLUMN], dtype=float)
    return scores


def _output_frame(frame: pd.DataFrame, scores: np.ndarray, problems: pd.Series, threshold: float | None) -> pd.DataFrame:
    """The input rows with their score, decision and error; input columns of those names become `input_<name>`.

    The decision is a nullable boolean, empty where there is no score or no threshold. Decision and error keep
    their types even in a chunk where every value is missing, so a Parquet output's schema,
    taken from the first chunk, fits the later ones.
    """
    added = (SCORE_COLUMN, DECISION_COLUMN, ERROR_COLUMN)
    renamed = frame.rename(columns={name: f"input_{name}" for name in added if name in frame})
    undecided = np.isnan(scores) | (threshold is None)
    decisions = pd.arrays.BooleanArray(np.nan_to_num(scores) >= (threshold or 0.0), mask=undecided)
    errors = pd.array(problems, dtype="string")  # an array, not a Series: no alignment on the chunk's index
    return renamed.assign(**{SCORE_COLUMN: scores, DECISION_COLUMN: decisions, ERROR_COLUMN: errors})


def _empty_output(input_path: Path) -> pd.DataFrame:
    """The output's columns for an input with a header and no rows."""
    header = pd.DataFrame(columns=read_columns(input_path), dtype="string")
    return _output_frame(header, np.array([]), pd.Series([], dtype="string"), DEFAULT_THRESHOLD)


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
