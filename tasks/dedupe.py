"""Collection tasks: read a collection's texts, index them, find and group duplicates, write the groups, save the index.

The library does the work (`siamese.embedding`, `siamese.dedupe`); these tasks read and write
files, show progress and say what happened. Outputs appear whole or not at all: the groups
through `AtomicTableWriter`, the saved index (`<output>.index/`) through a folder renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from siamese.data.tables import AtomicTableWriter, describe_rows, iter_table_chunks, read_columns, read_table
from siamese.data.text_pairs import detect_text_column, unscorable_texts
from siamese.dedupe import (
    CandidateSearch,
    Duplicates,
    IndexedTexts,
    NeighbourIndex,
    RowGroups,
    best_partners,
    find_duplicates,
    index_texts,
    score_pairs,
)
from siamese.embedding import Embedder
from tasks.scoring import CHUNK_ROWS, DecisionThreshold, OutputPathError, remove_stale_temporaries

INDEX_SUFFIX = ".index"  # the saved collection: `groups.parquet.index/` beside `groups.parquet`
GROUP_COLUMNS = ("group", "is_representative", "nearest", "similarity", "error")
KNOWN_COLUMNS = ("known_match", "known_similarity")  # with --against
EMBEDDING_COLUMN = "embedding"
# Random texts a text is, on average, decided a duplicate of, above which the summary warns: a
# model that accepts more than one unrelated text per text groups by topic, not by meaning.
TOPIC_WARNING = 1.0


class CollectionError(ValueError):
    """A saved collection that cannot be used (missing, unreadable, or indexed by another model); the message says which."""


@dataclass(frozen=True)
class CollectionTexts:
    """A collection's rows as texts to encode: each distinct text once."""

    distinct: np.ndarray  # the distinct encodable texts, in order of first appearance
    text_ids: np.ndarray  # per row: its text's position in `distinct`; -1 for a row that cannot be encoded
    problems: pd.Series  # per row: why it cannot be encoded, or None
    first_unencodable: str = ""  # where the first such rows are, e.g. "lines 4, 9"

    @property
    def rows(self) -> int:
        return len(self.text_ids)


@dataclass(frozen=True)
class KnownMatches:
    """For each distinct text of a new collection, its best match in a saved one (`--against`)."""

    row: np.ndarray  # the matching row of the saved collection; -1 when none reaches the threshold
    similarity: np.ndarray  # the best candidate's score (NaN: none found)

    def rows_matched(self, text_ids: np.ndarray) -> int:
        """How many rows (`text_ids`: each row's distinct text, -1 for none) match a saved text."""
        encoded = text_ids[text_ids >= 0]
        return int((self.row[encoded] >= 0).sum())


@dataclass(frozen=True)
class DedupeSummary:
    input_path: str
    output_path: str
    index_path: str
    rows: int
    encoded_rows: int
    distinct_texts: int
    groups: int
    pairs_scored: int
    threshold: DecisionThreshold
    index_kind: str
    search: CandidateSearch
    grouping: str
    unencodable: dict[str, int] = field(default_factory=dict)
    random_pairs_accepted: float = 0.0  # `siamese.dedupe.random_pair_acceptance`
    cut_short: int = 0  # texts whose search stopped while the model still accepted their farthest candidates
    known_matches: int | None = None  # rows matched in the saved collection (--against); None without one
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    @property
    def accepted_per_text(self) -> float:
        """How many other texts the model accepts for a text, at the rate it accepts random pairs: its false pairs, roughly."""
        return self.random_pairs_accepted * max(self.distinct_texts - 1, 0)

    @property
    def duplicates_removed(self) -> int:
        """Rows that keeping one row per group removes."""
        return self.encoded_rows - self.groups

    def metrics(self) -> dict[str, float]:
        """What the run's MLflow metrics record."""
        counted = {
            "rows": self.rows,
            "encoded_rows": self.encoded_rows,
            "distinct_texts": self.distinct_texts,
            "groups": self.groups,
            "duplicates_removed": self.duplicates_removed,
            "unencodable_rows": self.rows - self.encoded_rows,
            "pairs_scored": self.pairs_scored,
            "random_pairs_accepted": self.random_pairs_accepted,
            "texts_cut_short": self.cut_short,
        }
        if self.known_matches is not None:
            counted["known_matches"] = self.known_matches
        return counted | {f"seconds/{stage}": seconds for stage, seconds in self.seconds.items()}

    def _nearest(self) -> str:
        search = self.search
        return str(search.neighbours) if search.max_neighbours == search.neighbours else f"{search.neighbours} to {search.max_neighbours}"

    def lines(self) -> list[str]:
        """The summary in a few lines, for the terminal and the Prefect artifact."""
        lines = [
            f"{self.rows:,} rows, {self.encoded_rows:,} encoded ({self.distinct_texts:,} distinct texts)",
            f"{self.groups:,} groups: {self.duplicates_removed:,} duplicate rows removed by keeping one per group",
            f"{self.pairs_scored:,} candidate pairs scored ({self._nearest()} nearest per text, {self.index_kind} index); "
            f"duplicate when {self.threshold.describe()}; {self.grouping} groups",
        ]
        if self.cut_short:
            lines.append(
                f"warning: {self.cut_short:,} texts stopped growing their candidates while the model still accepted the farthest "
                f"(at --max-neighbours {self.search.max_neighbours}, or when {self.search.growth_budget:,} more pairs were searched): "
                "the model accepts pairs that were never scored, so some duplicates may be missed"
            )
        if self.accepted_per_text > TOPIC_WARNING:
            lines.append(
                f"warning: the model decides {self.random_pairs_accepted:.2%} of random pairs of these texts are duplicates "
                f"(about {self.accepted_per_text:,.0f} per text): groups will join texts that only share a topic. A model trained "
                "with random unrelated pairs accepts fewer (`siamese train --config configs/collection.toml`), a higher --threshold "
                "too (docs/dedupe.md)"
            )
        if self.known_matches is not None:
            lines.append(f"{self.known_matches:,} rows match a text of the saved collection")
        if self.unencodable:
            reasons = ", ".join(f"{reason}: {count:,}" for reason, count in self.unencodable.items())
            lines.append(f"{self.rows - self.encoded_rows:,} rows could not be encoded ({reasons}); kept, marked in `error`")
        lines.append(f"groups in {self.output_path}; its index in {self.index_path} (--against it to check new texts)")
        return lines


def check_embedding_output(output_path: Path) -> None:
    """Refuse, before any work, an embedding output that is not Parquet: a vector per cell has no CSV form worth reading.

    Raises:
        OutputPathError: naming the path and the suffix to use.
    """
    if output_path.suffix.lower() not in (".parquet", ".pq"):
        raise OutputPathError(f"the output {output_path} must be a Parquet file (.parquet): each row gets a vector, e.g. vectors.parquet")


@task(name="find-text-column", cache_policy=NO_CACHE)
def find_text_column(input_path: Path, column: str | None) -> str:
    """The collection's text column (named, or detected); fails before the model loads."""
    found = detect_text_column(read_columns(input_path), column=column, source=str(input_path))
    get_run_logger().info("texts in column %r", found)
    return found


@task(name="read-collection", cache_policy=NO_CACHE)
def read_collection(input_path: Path, column: str) -> CollectionTexts:
    """Every row's text; blank rows and rows without a word are kept, to be marked, and each distinct text is encoded once."""
    texts = read_table(input_path, columns=[column])[column]
    problems = unscorable_texts(texts)
    encodable = problems.isna().to_numpy()
    inverse, distinct = pd.factorize(texts[encodable].astype(str).to_numpy(object), sort=False)
    text_ids = np.full(len(texts), -1, dtype=np.int64)
    text_ids[encodable] = inverse
    bad = np.flatnonzero(~encodable)
    where = describe_rows(input_path, bad.tolist()) if len(bad) else ""
    if len(bad):
        get_run_logger().warning("%d rows cannot be encoded (%s): kept and marked", len(bad), where)
    return CollectionTexts(np.asarray(distinct, dtype=object), text_ids, problems, where)


@task(name="index-collection", cache_policy=NO_CACHE)
def index_collection(embedder: Embedder, texts: CollectionTexts) -> IndexedTexts:
    """Encode each distinct text once (a progress bar counts them) and index the search vectors."""
    with _progress("encoding") as progress:
        bar = progress.add_task("encoding", total=len(texts.distinct), rows=0)
        indexed = index_texts(embedder, texts.distinct, progress=lambda done: progress.update(bar, completed=done, rows=done))
    get_run_logger().info("encoded %d distinct texts; %s index of %d-dimensional vectors", len(texts.distinct), indexed.index.kind, embedder.dimensions)
    return indexed


@task(name="find-duplicates", cache_policy=NO_CACHE)
def find_collection_duplicates(embedder: Embedder, indexed: IndexedTexts, threshold: float, search: CandidateSearch, grouping: str) -> Duplicates:
    """Score each text's nearest texts with the model's head; group those it decides are duplicates (`grouping`)."""
    found = find_duplicates(embedder, indexed, threshold, search, grouping)
    get_run_logger().info("scored %d candidate pairs; %d texts stopped while the model still accepted their farthest", found.pairs_scored, found.cut_short)
    return found


@task(name="match-saved-collection", cache_policy=NO_CACHE)
def match_known(embedder: Embedder, indexed: IndexedTexts, known: Path, threshold: float, neighbours: int) -> KnownMatches:
    """Each new text's best match in a saved collection: its index is searched, and only the candidates are encoded again.

    Raises:
        CollectionError: the saved collection is missing, incomplete, or was indexed by another model.
    """
    saved = load_saved_collection(known, embedder)
    candidates = saved.index.search_with(indexed.index, min(neighbours, len(saved.index)))
    new, old = np.repeat(np.arange(len(indexed.texts)), candidates.shape[1]), candidates.reshape(-1)
    found = old >= 0
    new, old = new[found], old[found]
    needed, positions = np.unique(old, return_inverse=True)
    encodings = embedder.encode(saved.texts["text"].to_numpy(object)[needed])  # only the candidates, not the whole collection
    scores = score_pairs(embedder, indexed.encodings, encodings, (new, positions))
    nearest, best = best_partners(len(indexed.texts), new, old, scores)
    matched = nearest >= 0
    matched[matched] = best[matched] >= threshold
    rows = np.where(matched, saved.texts["row"].to_numpy()[np.maximum(nearest, 0)], -1)
    get_run_logger().info("%d of %d texts match a text of %s", int(matched.sum()), len(indexed.texts), known)
    return KnownMatches(rows, best)


@dataclass(frozen=True)
class SavedCollection:
    index: NeighbourIndex
    texts: pd.DataFrame  # per indexed vector: `text`, its first `row` and that row's `group`
    manifest: dict[str, object]


def load_saved_collection(path: Path, embedder: Embedder) -> SavedCollection:
    """A collection `save_collection` wrote (its folder, or the output file it sits beside), checked against `embedder`'s model."""
    folder = path if path.name.endswith(INDEX_SUFFIX) else path.with_name(path.name + INDEX_SUFFIX)
    manifest_path = folder / "collection.json"
    if not manifest_path.exists():
        raise CollectionError(f"{path}: no saved collection there (expected {manifest_path}); run `siamese dedupe` on the known texts first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("model_fingerprint") != embedder.fingerprint:
        raise CollectionError(
            f"{folder} was indexed with another model ({manifest.get('model')}): its vectors cannot be compared with this "
            "model's; run `siamese dedupe` on the known texts again with this model"
        )
    return SavedCollection(NeighbourIndex.load(folder / "vectors.faiss"), pd.read_parquet(folder / "texts.parquet"), manifest)


@task(name="save-collection", cache_policy=NO_CACHE)
def save_collection(output_path: Path, indexed: IndexedTexts, texts: CollectionTexts, rows: RowGroups, model_uri: str, embedder: Embedder) -> Path:
    """Save the index beside the output (`<output>.index/`), so later collections are checked against it without re-encoding it.

    Written to a hidden folder first and renamed into place: a crash leaves the previous index
    whole, and the hidden folder a killed run left is removed by the next run into the same output.
    """
    folder = output_path.with_name(output_path.name + INDEX_SUFFIX)
    for stale in output_path.parent.glob(f".{folder.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = output_path.with_name(f".{folder.name}.{os.getpid()}.partial")
    partial.mkdir(parents=True)
    try:
        encoded = np.flatnonzero(texts.text_ids >= 0)
        _, first = np.unique(texts.text_ids[encoded], return_index=True)  # every distinct text occurs: ids 0..n-1 in order
        first_rows = encoded[first]
        frame = pd.DataFrame({"text": indexed.texts, "row": first_rows, "group": rows.group[first_rows]})
        frame.to_parquet(partial / "texts.parquet", index=False)
        indexed.index.save(partial / "vectors.faiss")
        manifest = {
            "model": model_uri,
            "model_fingerprint": embedder.fingerprint,
            "dimensions": embedder.search_dimensions,
            "texts": len(indexed.texts),
            "rows": texts.rows,
            "source": str(output_path),
            "index": indexed.index.kind,
        }
        (partial / "collection.json").write_text(json.dumps(manifest, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder


@task(name="write-groups", cache_policy=NO_CACHE)
def write_groups(
    input_path: Path, output_path: Path, rows: RowGroups, texts: CollectionTexts, known: KnownMatches | None, chunk_rows: int = CHUNK_ROWS
) -> None:
    """Every input row, in order, with its columns and `group`, `is_representative`, `nearest`, `similarity`, `error`.

    Row numbers (`group`, `nearest`, `known_match`) count data rows from 0. Rows that could not be
    encoded have empty group columns and the reason in `error`. Written whole or not at all.
    """
    remove_stale_temporaries(output_path)
    known_rows = None if known is None else np.where(texts.text_ids >= 0, known.row[np.maximum(texts.text_ids, 0)], -1)
    known_scores = None if known is None else np.where(texts.text_ids >= 0, known.similarity[np.maximum(texts.text_ids, 0)], np.nan)
    empty = pd.DataFrame(columns=read_columns(input_path), dtype="string")
    with AtomicTableWriter(output_path, empty_frame=_with_groups(empty, _slice(rows, 0, 0), texts.problems.iloc[:0], None, None)) as writer:
        for chunk in iter_table_chunks(input_path, chunk_rows):
            start, stop = chunk.first_row, chunk.first_row + len(chunk.frame)
            writer.write(
                _with_groups(
                    chunk.frame,
                    _slice(rows, start, stop),
                    texts.problems.iloc[start:stop],
                    None if known_rows is None else known_rows[start:stop],
                    None if known_scores is None else known_scores[start:stop],
                )
            )


def _slice(rows: RowGroups, start: int, stop: int) -> RowGroups:
    return RowGroups(rows.group[start:stop], rows.is_representative[start:stop], rows.nearest[start:stop], rows.similarity[start:stop])


def _with_groups(
    frame: pd.DataFrame, rows: RowGroups, problems: pd.Series, known_rows: np.ndarray | None, known_scores: np.ndarray | None
) -> pd.DataFrame:
    """The rows with the group columns added (an input column of the same name becomes `input_<name>`); nullable types keep empty cells empty."""
    added = GROUP_COLUMNS + (KNOWN_COLUMNS if known_rows is not None else ())
    renamed = frame.rename(columns={name: f"input_{name}" for name in added if name in frame})
    encoded = rows.group >= 0
    columns = {
        "group": pd.array(np.where(encoded, rows.group, 0), dtype="Int64").copy(),
        "is_representative": pd.arrays.BooleanArray(rows.is_representative.astype(bool), mask=~encoded),
        "nearest": pd.arrays.IntegerArray(np.maximum(rows.nearest, 0), mask=rows.nearest < 0),
        "similarity": rows.similarity.astype(float),
        "error": pd.array(problems, dtype="string"),
    }
    columns["group"][~encoded] = pd.NA
    if known_rows is not None:
        columns["known_match"] = pd.arrays.IntegerArray(np.maximum(known_rows, 0), mask=known_rows < 0)
        columns["known_similarity"] = known_scores.astype(float)
    return renamed.assign(**columns)


@dataclass(frozen=True)
class EmbeddingSummary:
    rows: int
    embedded: int
    dimensions: int
    unencodable: dict[str, int]
    seconds: float


@task(name="embed-file", cache_policy=NO_CACHE)
def embed_file(embedder: Embedder, input_path: Path, output_path: Path, column: str, chunk_rows: int = CHUNK_ROWS) -> EmbeddingSummary:
    """Every input row with its columns and `embedding` (the text's unit-length embedding, a list of floats) and `error`, to Parquet.

    Read, encoded and written `chunk_rows` rows at a time, so memory stays bounded for files of
    any length; the output appears only when complete. Rows that cannot be encoded keep an empty
    embedding and the reason in `error`.
    """
    remove_stale_temporaries(output_path)
    started = time.perf_counter()
    rows = embedded = 0
    reasons: Counter[str] = Counter()
    empty = pd.DataFrame(columns=read_columns(input_path), dtype="string")
    with AtomicTableWriter(output_path, empty_frame=_with_embeddings(empty, np.zeros((0, embedder.dimensions), np.float32), pd.Series([], dtype=object))) as writer, _progress(f"embedding {input_path.name}") as progress:
        bar = progress.add_task("embedding", total=None, rows=0)
        for chunk in iter_table_chunks(input_path, chunk_rows):
            problems = unscorable_texts(chunk.frame[column])
            encodable = problems.isna().to_numpy()
            vectors = np.full((len(chunk.frame), embedder.dimensions), np.nan, dtype=np.float32)
            vectors[encodable] = embedder.embed(chunk.frame[column][encodable].astype(str).to_numpy(object))
            writer.write(_with_embeddings(chunk.frame, vectors, problems))
            reasons.update(problems.dropna())
            rows += len(chunk.frame)
            embedded += int(encodable.sum())
            progress.update(bar, completed=chunk.done, total=chunk.total, rows=rows)
    return EmbeddingSummary(rows, embedded, embedder.dimensions, dict(reasons), time.perf_counter() - started)


def _with_embeddings(frame: pd.DataFrame, vectors: np.ndarray, problems: pd.Series) -> pd.DataFrame:
    """The rows with `embedding` (missing where the text could not be encoded) and `error` added."""
    renamed = frame.rename(columns={name: f"input_{name}" for name in (EMBEDDING_COLUMN, "error") if name in frame})
    encoded = ~np.isnan(vectors).any(axis=1) if len(vectors) else np.zeros(0, bool)
    embeddings = pd.Series([vector if ok else None for vector, ok in zip(vectors, encoded)], index=frame.index, dtype=object)
    return renamed.assign(**{EMBEDDING_COLUMN: embeddings, "error": pd.array(problems, dtype="string")})


@task(name="publish-dedupe-summary", cache_policy=NO_CACHE)
def publish_dedupe_summary(model_uri: str, summary: DedupeSummary) -> str:
    """A markdown artifact on the flow run's page: the counts, the decision and where the outputs are."""
    lines = ["# Duplicates in a collection", f"- Model: `{model_uri}`", f"- Input: `{summary.input_path}`"]
    lines += [f"- {line}" for line in summary.lines()]
    lines += [f"- {stage}: {seconds:.1f} s" for stage, seconds in summary.seconds.items()]
    return str(create_markdown_artifact("\n".join(lines), key="dedupe-summary", description="siamese dedupe"))


@dataclass
class StageTimer:
    """Seconds per stage, for the summary and the run's metrics."""

    seconds: dict[str, float] = field(default_factory=dict)
    _started: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._started
        self._started = now


def unencodable_counts(texts: CollectionTexts) -> dict[str, int]:
    return dict(Counter(texts.problems.dropna()))


def _progress(what: str) -> Progress:
    return Progress(
        TextColumn(what),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} texts"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
