"""`prepare-pairs`: the run's family writes its splits to the work directory and says where they came from."""

from __future__ import annotations

import pytest
from task_helpers import sequences_config, text_config

from siamese.data.tables import PairFileError
from tasks.data import prepare_pairs


def test_generated_pairs_become_split_files_in_the_work_directory(tmp_path):
    prepared = prepare_pairs.fn(sequences_config(), tmp_path)
    assert set(prepared.paths) == {"train", "validation", "test"}
    assert all(path.parent == tmp_path and path.exists() for path in prepared.paths.values())
    assert sum(prepared.sizes.values()) == 60 and prepared.source is None


def test_a_pair_file_is_split_with_its_source_recorded(tmp_path):
    config = text_config(tmp_path)
    prepared = prepare_pairs.fn(config, tmp_path)
    assert {path.suffix for path in prepared.paths.values()} == {".parquet"}
    assert prepared.source.path == str((tmp_path / "questions.csv").absolute()) and prepared.source.total_rows == 60
    assert all(label.endswith("positive") for label in prepared.labels.values())


def test_bad_input_stops_here_naming_the_file(tmp_path):
    config = text_config(tmp_path)
    (tmp_path / "questions.csv").write_text("question1,question2,is_duplicate\na,b,7\n")
    with pytest.raises(PairFileError, match="questions.csv"):
        prepare_pairs.fn(config, tmp_path / "work")
