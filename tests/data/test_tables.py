"""Pair tables: reading CSV/TSV/Parquet whole and in chunks, row names, bad files, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from siamese.data.tables import (
    TABLE_SUFFIXES,
    AtomicTableWriter,
    PairFileError,
    describe_rows,
    iter_table_chunks,
    read_columns,
    read_table,
    row_name,
)

SUFFIXES = [*TABLE_SUFFIXES, ".CSV"]  # every suffix the library (and the command line) accepts, in any case


def sample(rows: int = 5) -> pd.DataFrame:
    """Text that pandas would otherwise turn into numbers or NaN, and a tab, quote and newline to escape."""
    return pd.DataFrame(
        {
            "left": [f"question {i}" if i % 3 else str(i) for i in range(rows)],
            "right": ['say "hi"\tthere', "NA", "line\nbreak", "007", "None"][:rows] + ["x"] * max(0, rows - 5),
            "label": [str(i % 2) for i in range(rows)],
        }
    )


def write(path: Path, frame: pd.DataFrame) -> Path:
    with AtomicTableWriter(path) as writer:
        writer.write(frame)
    return path


def test_the_one_list_of_table_suffixes():
    assert TABLE_SUFFIXES == (".csv", ".tsv", ".tab", ".parquet", ".pq")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_each_format_round_trips_text_as_text(tmp_path, suffix):
    """Written by AtomicTableWriter and read back, for every suffix in TABLE_SUFFIXES."""
    frame = sample()
    path = write(tmp_path / f"pairs{suffix}", frame)

    assert read_columns(path) == ["left", "right", "label"]
    table = read_table(path)
    assert table["left"].tolist() == frame["left"].tolist()  # "0" and "3" stay text
    assert table["right"].tolist() == frame["right"].tolist()  # "NA" and "None" are not missing
    assert table["label"].tolist() == ["0", "1", "0", "1", "0"]
    assert list(table.index) == list(range(5))
    chunks = list(iter_table_chunks(path, chunk_rows=100))
    assert len(chunks) == 1
    pd.testing.assert_frame_equal(chunks[0].frame, table)


def test_read_table_selects_and_orders_columns(tmp_path):
    path = write(tmp_path / "pairs.csv", sample())
    assert list(read_table(path, columns=["label", "left"]).columns) == ["label", "left"]
    with pytest.raises(PairFileError, match=r"pairs\.csv has no column 'nope'; its columns are: left, right, label"):
        read_table(path, columns=["left", "nope"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_empty_cells_are_missing(tmp_path, suffix):
    frame = pd.DataFrame({"left": ["a", None, "c"], "right": ["x", "y", None]})
    path = write(tmp_path / f"pairs{suffix}", frame)
    table = read_table(path)
    assert table.isna().to_numpy().tolist() == [[False, False], [True, False], [False, True]]


def test_csv_is_read_with_or_without_a_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffleft,right\nä,b\n".encode())
    assert read_columns(path) == ["left", "right"]
    assert read_table(path)["left"].tolist() == ["ä"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_chunks_cover_the_file_in_order_with_progress_reaching_the_total(tmp_path, suffix):
    frame = sample(rows=2500)
    frame["left"] += " padding" * 40  # a 1 MB file: the CSV parser reads 256 kB at a time
    path = tmp_path / f"pairs{suffix}"
    with AtomicTableWriter(path) as writer:
        for start in range(0, 2500, 1000):  # several Parquet row groups
            writer.write(frame.iloc[start : start + 1000])

    chunks = list(iter_table_chunks(path, chunk_rows=300, columns=["right", "left"]))

    assert len(chunks) >= 9
    assert all(len(chunk.frame) <= 300 for chunk in chunks)
    sizes = [len(chunk.frame) for chunk in chunks]
    assert [chunk.first_row for chunk in chunks] == [sum(sizes[:i]) for i in range(len(chunks))]
    for chunk in chunks:
        assert list(chunk.frame.index) == list(range(chunk.first_row, chunk.first_row + len(chunk.frame)))
    done = [chunk.done for chunk in chunks]
    assert done == sorted(done) and done[0] < chunks[0].total
    assert chunks[-1].done == chunks[-1].total
    expected_total = 2500 if suffix == ".parquet" else path.stat().st_size
    assert {chunk.total for chunk in chunks} == {expected_total}
    joined = pd.concat([chunk.frame for chunk in chunks])
    assert list(joined.columns) == ["right", "left"]
    assert joined["left"].tolist() == frame["left"].tolist()


def test_chunk_rows_must_be_positive(tmp_path):
    path = write(tmp_path / "pairs.csv", sample())
    with pytest.raises(ValueError, match="chunk_rows"):
        next(iter_table_chunks(path, chunk_rows=0))


def test_unknown_suffix_and_missing_file_are_named(tmp_path):
    (tmp_path / "pairs.xlsx").write_text("left,right\n")
    with pytest.raises(PairFileError, match=r"pairs\.xlsx has an unsupported suffix '\.xlsx'; use one of \.csv, \.tsv"):
        read_table(tmp_path / "pairs.xlsx")
    with pytest.raises(PairFileError, match=r"missing\.csv does not exist"):
        read_columns(tmp_path / "missing.csv")
    with pytest.raises(PairFileError, match=r"missing\.parquet does not exist"):
        next(iter_table_chunks(tmp_path / "missing.parquet", chunk_rows=10))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('left,right\na,"never closed\nb,c\n', "EOF inside string"),
        ("left,right\na,b\nc,d,e\n", "Expected 2 fields in line 3, saw 3"),
        ("", "No columns to parse"),
    ],
)
def test_unparseable_csv_is_named_with_the_reason(tmp_path, text, reason):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(PairFileError, match=rf"pairs\.csv cannot be read as CSV: .*{reason}"):
        read_table(path)
    with pytest.raises(PairFileError, match=rf"pairs\.csv cannot be read as CSV: .*{reason}"):
        list(iter_table_chunks(path, chunk_rows=1))


def test_non_utf8_text_is_named(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"left\tright\ncaf\xe9\tb\n")
    with pytest.raises(PairFileError, match=r"pairs\.tsv cannot be read as TSV: it is not UTF-8 text"):
        read_table(path)


def test_bad_rows_late_in_a_csv_fail_only_when_reached(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("left,right\n" + "a,b\n" * 50 + "c,d,e\n")
    chunks = iter_table_chunks(path, chunk_rows=10)
    assert len(next(chunks).frame) == 10
    with pytest.raises(PairFileError, match=r"pairs\.csv cannot be read as CSV: .*line 52"):
        list(chunks)


def test_corrupt_parquet_is_named(tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(b"left,right\nthis is not parquet\n")
    for read in (read_table, read_columns, lambda p: list(iter_table_chunks(p, chunk_rows=5))):
        with pytest.raises(PairFileError, match=r"pairs\.parquet cannot be read as Parquet: "):
            read(path)


def test_truncated_parquet_is_named(tmp_path):
    path = write(tmp_path / "pairs.parquet", sample(rows=200))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(PairFileError, match=r"pairs\.parquet cannot be read as Parquet"):
        read_table(path)


def test_row_names_are_what_a_user_looks_for():
    assert row_name("pairs.csv", 0) == "line 2"  # the header is line 1
    assert row_name("pairs.TSV", 9) == "line 11"
    assert row_name("pairs.parquet", 0) == "row 1"
    assert describe_rows("pairs.csv", [2]) == "line 4"
    assert describe_rows("pairs.pq", [0, 1]) == "rows 1, 2"
    assert describe_rows("pairs.csv", [2, 7, 10, 18, 29, *range(40, 47)]) == "lines 4, 9, 12, 20, 31 and 7 more"
    assert describe_rows("pairs.csv", [2, 7, 10], limit=2) == "lines 4, 9 and 1 more"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_writer_failure_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, suffix):
    path = write(tmp_path / f"scores{suffix}", sample())
    before = path.read_bytes()

    with pytest.raises(RuntimeError, match="interrupted"):
        with AtomicTableWriter(path) as writer:
            writer.write(sample(rows=3))
            raise RuntimeError("interrupted")

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_writer_creates_folders_counts_rows_and_replaces_in_one_step(tmp_path):
    path = tmp_path / "out" / "nested" / "scores.parquet"
    with AtomicTableWriter(path) as writer:
        writer.write(sample(rows=3))
        assert not path.exists()  # nothing at the target until the writer is done
        (temporary,) = path.parent.iterdir()
        assert temporary.name.startswith(".scores.parquet.") and temporary.name.endswith(".tmp")
        writer.write(sample(rows=4))
    assert writer.rows_written == 7
    assert len(read_table(path)) == 7
    assert [p.name for p in path.parent.iterdir()] == ["scores.parquet"]


def test_writer_rejects_a_chunk_with_other_columns(tmp_path):
    path = tmp_path / "scores.csv"
    with pytest.raises(ValueError, match="columns"):
        with AtomicTableWriter(path) as writer:
            writer.write(sample())
            writer.write(sample().rename(columns={"label": "score"}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_writing_no_chunk_uses_the_empty_frame(tmp_path, suffix):
    empty = pd.DataFrame({"row": pd.Series(dtype="int64"), "score": pd.Series(dtype="float32")})
    path = tmp_path / f"scores{suffix}"
    with AtomicTableWriter(path, empty_frame=empty) as writer:
        pass
    assert writer.rows_written == 0
    assert read_columns(path) == ["row", "score"]
    assert len(read_table(path)) == 0
    assert list(iter_table_chunks(path, chunk_rows=10)) == []


def test_writing_no_chunk_without_columns_is_an_error_and_writes_nothing(tmp_path):
    path = tmp_path / "scores.parquet"
    with pytest.raises(ValueError, match="no empty_frame"):
        with AtomicTableWriter(path):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_an_unknown_suffix(tmp_path):
    with pytest.raises(PairFileError, match=r"scores\.json has an unsupported suffix"):
        AtomicTableWriter(tmp_path / "scores.json")
