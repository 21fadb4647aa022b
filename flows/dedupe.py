"""Collection flows: the duplicates in a whole collection of texts, and the embedding of each text.

dedupe: check the output path -> find the text column -> load the registered model -> choose
the threshold -> (MLflow run) read the texts -> encode and index each distinct text once ->
score each text's nearest texts with the model's head -> group duplicates -> check against a
saved collection (`against`) -> write the groups -> save the index beside them -> summary.

embed: check the output path -> find the text column -> load the model -> write one search
vector per row, chunk by chunk.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from siamese.dedupe import DEFAULT_NEIGHBOURS, GROUPINGS, MAX_NEIGHBOURS, CandidateSearch, row_groups
from tasks.dedupe import (
    DedupeSummary,
    EmbeddingSummary,
    StageTimer,
    check_embedding_output,
    embed_file,
    find_collection_duplicates,
    find_text_column,
    index_collection,
    match_known,
    publish_dedupe_summary,
    read_collection,
    save_collection,
    unencodable_counts,
    write_groups,
)
from tasks.registry import load_text_pair_embedder
from tasks.scoring import CHUNK_ROWS, ThresholdError, check_output_path, choose_threshold
from tasks.tracking import ended_run, log_metrics, open_run

EXPERIMENT = "siamese-dedupe"


@flow(name="dedupe-collection")
def dedupe_flow(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    text_column: str | None = None,
    against: Path | None = None,
    neighbours: int = DEFAULT_NEIGHBOURS,
    max_neighbours: int | None = None,
    threshold: float | None = None,
    grouping: str = "centre",
    chunk_rows: int = CHUNK_ROWS,
) -> DedupeSummary:
    """Group the duplicate texts of a CSV, TSV or Parquet file with a registered text pair model.

    Args:
        model_uri: e.g. `models:/siamese-text@champion`.
        input_path: the collection, one text per row (`text_column`, or detected: text, question, query, ...).
        output_path: `.parquet`, `.csv` or `.tsv`: every input row, in order, with its columns and
            `group` (its group's first row), `is_representative`, `nearest` (the best-matching
            other row), `similarity` and `error`; with `against`, `known_match` and
            `known_similarity` too. The index goes beside it, in `<output>.index/`.
        against: a collection saved by an earlier run (its output file or its `.index` folder):
            each text is also matched against it, without encoding it again.
        neighbours: nearest texts scored per text at first; `max_neighbours`: at most, where the
            model keeps accepting the farthest (`siamese.dedupe.CandidateSearch`; None: 640, or
            `neighbours` if more).
        threshold: decide duplicates here instead of at the model's stored threshold.
        grouping: `centre`: each group a text and the texts the model decides are its duplicates
            (no chains); `connected`: every pair decided duplicate joins its two groups
            (transitive). BENCHMARKS.md, "Duplicates in a collection", measures both.

    Raises:
        OutputPathError: `output_path` is the input file or a folder.
        PairFileError: the input cannot be read or its text column not found.
        ScoringModelError: the model does not take raw text pairs.
        EmbeddingError: the model's head cannot compare encodings (`concat`).
        CollectionError: `against` is not a saved collection of this model.
        ThresholdError: `threshold` lies outside the model's scores, or a graded model was given none.
    """
    if grouping not in GROUPINGS:  # before any work, not after the encoding
        raise ValueError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
    search = CandidateSearch(neighbours, max(neighbours, MAX_NEIGHBOURS) if max_neighbours is None else max_neighbours)
    check_output_path(input_path, output_path)
    column = find_text_column(input_path, text_column)
    model = load_text_pair_embedder(model_uri)
    decision = choose_threshold(model.threshold, threshold, model.scale)
    if decision.value is None:
        raise ThresholdError("a graded model decides duplicates only at a given threshold on its scale: pass --threshold")
    params = {
        "model_uri": model_uri,
        "input": str(input_path),
        "neighbours": neighbours,
        "max_neighbours": search.max_neighbours,
        "threshold": decision.value,
        "grouping": grouping,
        "against": str(against or ""),
    }
    with ended_run(open_run(EXPERIMENT, f"dedupe {input_path.name}", f"Duplicates among the texts of {input_path} ({model_uri}).", params)) as run_id:
        timer = StageTimer()
        texts = read_collection(input_path, column)
        timer.lap("read")
        indexed = index_collection(model.embedder, texts)
        timer.lap("encode")
        duplicates = find_collection_duplicates(model.embedder, indexed, decision.value, search, grouping)
        timer.lap("search_and_score")
        known = None if against is None else match_known(model.embedder, indexed, against, decision.value, neighbours)
        timer.lap("match_saved")
        rows = row_groups(texts.text_ids, duplicates, model.embedder.score(indexed.encodings, indexed.encodings))
        write_groups(input_path, output_path, rows, texts, known, chunk_rows)
        index_path = save_collection(output_path, indexed, texts, rows, model_uri, model.embedder)
        timer.lap("write")
        summary = DedupeSummary(
            input_path=str(input_path),
            output_path=str(output_path),
            index_path=str(index_path),
            rows=texts.rows,
            encoded_rows=int((texts.text_ids >= 0).sum()),
            distinct_texts=len(texts.distinct),
            groups=rows.groups,
            pairs_scored=duplicates.pairs_scored,
            threshold=decision,
            index_kind=indexed.index.kind,
            search=search,
            grouping=grouping,
            unencodable=unencodable_counts(texts),
            random_pairs_accepted=duplicates.random_pairs_accepted,
            cut_short=duplicates.cut_short,
            known_matches=None if known is None else known.rows_matched(texts.text_ids),
            seconds=timer.seconds,
        )
        log_metrics(run_id, summary.metrics())
    for line in summary.lines():
        get_run_logger().info(line)
    publish_dedupe_summary(model_uri, summary)
    return summary


@flow(name="embed-texts")
def embed_flow(
    model_uri: str, input_path: Path, output_path: Path, text_column: str | None = None, chunk_rows: int = CHUNK_ROWS
) -> EmbeddingSummary:
    """Write each text's embedding (`siamese.embedding.Embedder.embed`: from the shared encoder, unit length) to a Parquet file.

    Raises:
        OutputPathError: `output_path` is the input file, a folder, or not `.parquet`.
        PairFileError, ScoringModelError, EmbeddingError: as `dedupe_flow`.
    """
    check_output_path(input_path, output_path)
    check_embedding_output(output_path)
    column = find_text_column(input_path, text_column)
    model = load_text_pair_embedder(model_uri)
    summary = embed_file(model.embedder, input_path, output_path, column, chunk_rows)
    get_run_logger().info("%d rows, %d embedded (%d dimensions) in %.1f s", summary.rows, summary.embedded, summary.dimensions, summary.seconds)
    return summary
