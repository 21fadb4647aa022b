"""`prepare-pairs`: the run's family writes its splits to the work directory and says where they came from."""

from __future__ import annotations

import pytest
from task_helpers import sequences_config, text_config, vision_config

from siamese.config import MAX_FEATURES, MAX_PAIRS, ConfigError
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


def test_generated_pairs_too_large_for_the_disk_are_refused_before_anything_is_written(tmp_path):
    config = sequences_config(num_pairs=MAX_PAIRS, timesteps=1000, features=MAX_FEATURES)  # 52 PB
    with pytest.raises(ConfigError, match=r"^100,000,000 generated pairs would write [\d,]+ bytes .* free"):
        prepare_pairs.fn(config, tmp_path / "work")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    "config",
    [sequences_config(num_pairs=400, timesteps=10, features=64), vision_config(num_pairs=200, image_size=24)],
    ids=["sequences", "stereo"],
)
def test_the_disk_estimate_is_what_the_splits_take(tmp_path, config):
    prepare_pairs.fn(config, tmp_path)
    written = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    estimate = config.data.generated_bytes
    assert estimate <= written <= estimate * 1.05 + 16_384  # file headers and manifests on top
