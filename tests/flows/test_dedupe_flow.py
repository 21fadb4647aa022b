"""`siamese dedupe` and `siamese embed` with a registered text pair model whose groups are known in advance."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pytest
from dedupe_helpers import COLLECTION, EXPECTED_GROUPS, overlap_model
from mlflow import MlflowClient

from flows import cli
from flows.dedupe import EXPERIMENT, dedupe_flow, embed_flow
from siamese.config import Config, ModelKind, TextFileDataConfig
from siamese.data.text_pairs import TextPairs
from siamese.embedding import Embedder
from tasks.dedupe import CollectionError
from tasks.registry import log_and_register_model
from tasks.tracking import start_run

pytestmark = pytest.mark.usefixtures("prefect_api")

MODEL = "models:/siamese-text/1"
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def overlap_store(tmp_path_factory, new_store):
    """A store holding the overlap model (set weights) registered as `siamese-text` version 1, threshold 0.5."""
    directory = tmp_path_factory.mktemp("dedupe-store")
    uri = new_store(directory / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        model_path = directory / "overlap.keras"
        overlap_model().save(model_path)
        example = directory / "example.parquet"
        TextPairs(np.array(COLLECTION[:2], object), np.array(COLLECTION[2:4], object), np.array([1, 0]), np.arange(2)).save(example)
        config = Config(kind=ModelKind.TEXT, data=TextFileDataConfig(path=str(example)))
        log_and_register_model.fn(start_run.fn(config), model_path, example, config, THRESHOLD)
    return uri


@pytest.fixture
def store(overlap_store, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", overlap_store)
    mlflow.set_tracking_uri(overlap_store)
    return MlflowClient(overlap_store)


def collection_file(path, texts) -> pd.DataFrame:
    frame = pd.DataFrame({"id": [f"q{row}" for row in range(len(texts))], "question": texts})
    frame.to_csv(path, index=False)
    return frame


def test_the_groups_of_a_crafted_collection_come_out_right_in_row_order_with_a_recorded_run(tmp_path, store):
    texts = [*COLLECTION, "", "how do i learn python quickly", "?!"]  # a blank row, a repeat of row 0, a wordless row
    source, output = tmp_path / "queries.csv", tmp_path / "groups.parquet"
    frame = collection_file(source, texts)
    (tmp_path / ".groups.parquet.0badc0de.tmp").write_text("left by a run killed while writing")
    (tmp_path / ".groups.parquet.index.99999.partial").mkdir()

    summary = dedupe_flow(model_uri=MODEL, input_path=source, output_path=output, chunk_rows=4)

    groups = pd.read_parquet(output)
    assert list(groups.columns) == ["id", "question", "group", "is_representative", "nearest", "similarity", "error"]
    assert groups.id.tolist() == frame.id.tolist(), "every row, in input order"
    assert groups.group.iloc[:9].tolist() == EXPECTED_GROUPS and groups.group.iloc[10] == 0, "the repeat joins row 0's group"
    assert groups.group.iloc[[9, 11]].isna().all() and groups.error.iloc[[9, 11]].notna().all()
    assert groups.error.iloc[9] == "empty or missing text" and groups.error.iloc[11].startswith("no words in text")
    assert groups.is_representative.iloc[:9].tolist() == [row == group for row, group in enumerate(EXPECTED_GROUPS)]
    assert groups.nearest.iloc[0] == 10 and groups.nearest.iloc[10] == 0, "a repeat's nearest is its twin"
    assert (groups.similarity.iloc[:9][groups.group.iloc[:9] != np.arange(9)] >= THRESHOLD).all()
    assert (summary.rows, summary.encoded_rows, summary.distinct_texts, summary.groups) == (12, 10, 9, 5)
    assert summary.duplicates_removed == 5 and summary.index_kind == "exact"
    run = store.search_runs([store.get_experiment_by_name(EXPERIMENT).experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.metrics["groups"] == 5 and run.data.params["model_uri"] == MODEL
    assert run.data.metrics["random_pairs_accepted"] == summary.random_pairs_accepted and summary.accepted_per_text < 1
    assert run.data.params["max_neighbours"] == "640" and run.data.metrics["texts_cut_short"] == 0
    assert not any("warning" in line for line in summary.lines())
    topical = dataclasses.replace(summary, random_pairs_accepted=0.25)  # a model accepting a quarter of all pairs
    assert any("about 2 per text" in line and "configs/collection.toml" in line for line in topical.lines())
    stopped = dataclasses.replace(summary, cut_short=3)
    assert any("warning: 3 texts stopped" in line and "--max-neighbours 640" in line for line in stopped.lines())
    assert (tmp_path / "groups.parquet.index" / "vectors.faiss").exists()
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")], "no temporary file left, stale ones removed"


def test_new_texts_are_matched_against_a_saved_collection_without_encoding_it_again(tmp_path, store):
    known_source, known_output = tmp_path / "known.csv", tmp_path / "known.parquet"
    collection_file(known_source, COLLECTION)
    dedupe_flow(model_uri=MODEL, input_path=known_source, output_path=known_output)
    new_source, new_output = tmp_path / "new.csv", tmp_path / "new.csv.out.csv"
    collection_file(new_source, ["what is the capital city of france?", "how to cook rice", "how do i learn python quickly"])

    summary = dedupe_flow(model_uri=MODEL, input_path=new_source, output_path=new_output, against=known_output)

    matched = pd.read_csv(new_output)
    assert matched.known_match.tolist()[0] in (1, 4) and pd.isna(matched.known_match[1]) and matched.known_match[2] == 0
    assert matched.known_similarity[2] == pytest.approx(matched.known_similarity.max()) and summary.known_matches == 2
    with pytest.raises(CollectionError, match="no saved collection there"):
        dedupe_flow(model_uri=MODEL, input_path=new_source, output_path=tmp_path / "x.csv", against=tmp_path / "missing.parquet")


def test_embeddings_are_one_vector_per_text_whichever_side_it_was_on(tmp_path, store):
    source, output = tmp_path / "queries.csv", tmp_path / "vectors.parquet"
    collection_file(source, [*COLLECTION[:3], ""])

    summary = embed_flow(MODEL, source, output, chunk_rows=2)

    vectors = pd.read_parquet(output)
    assert (summary.rows, summary.embedded) == (4, 3) and vectors.embedding.iloc[3] is None
    expected = Embedder(overlap_model()).embed(COLLECTION[:3])
    np.testing.assert_allclose(np.stack(vectors.embedding.iloc[:3].to_numpy()), expected, atol=1e-6)


def test_the_command_refuses_a_csv_embedding_output_and_names_the_column_it_needs(tmp_path, store, capsys):
    source = tmp_path / "queries.csv"
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(source, index=False)
    with pytest.raises(SystemExit) as refused:
        cli.main(["embed", "--model", MODEL, "--input", str(source), "--output", str(tmp_path / "v.csv")])
    assert refused.value.code == cli.EXIT_INVALID and "v.csv: use a .parquet, .pq file" in capsys.readouterr().err
    assert cli.main(["dedupe", "--model", MODEL, "--input", str(source), "--output", str(tmp_path / "g.csv")]) == cli.EXIT_INVALID
    assert "cannot tell which column holds the texts" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        cli.main(["dedupe", "--model", MODEL, "--input", str(source), "--output", str(tmp_path / "g.csv"), "--neighbours", "30", "--max-neighbours", "20"])
    assert refused.value.code == cli.EXIT_INVALID and "--max-neighbours (20) must be >= --neighbours (30)" in capsys.readouterr().err
