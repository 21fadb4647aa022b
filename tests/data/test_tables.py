"""Pair tables: reading CSV/TSV/Parquet whole and in chunks, row names, bad files, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from siamese.data.tables import (
    TABLE_SUFFIXES,
    AtomicTableWriter,
    PairFileError,
    ReadOptions,
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
    assert TABLE_SUFFIXES == (".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq")


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


def test_an_empty_csv_is_named_with_the_reason(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("")
    with pytest.raises(PairFileError, match=r"pairs\.csv cannot be read as CSV: .*No columns to parse"):
        read_table(path)
    with pytest.raises(PairFileError, match=r"pairs\.csv cannot be read as CSV: .*No columns to parse"):
        list(iter_table_chunks(path, chunk_rows=1))


def test_a_ragged_line_is_a_parse_error_naming_the_line_under_both_quotings(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("left,right\na,b\nc,d,e\n")
    message = (
        r"pairs\.csv cannot be parsed as CSV: with CSV quoting, line 3 has 3 fields where the header has 2; "
        r"with quotes as text \(no quoting\), line 3 has 3 fields .*Fix the file from line 3, or, if it is not CSV, "
        r"name its format with data\.format"
    )
    for read in (read_table, read_columns, lambda p: list(iter_table_chunks(p, chunk_rows=1))):
        with pytest.raises(PairFileError, match=message):
            read(path)


def test_a_line_with_too_few_fields_is_a_parse_error_not_a_missing_cell(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("left\tright\tlabel\na\tb\t1\nc\t1\n")  # pandas alone would pad it with a missing cell
    with pytest.raises(PairFileError, match=r"line 3 has 2 fields where the header has 3"):
        read_table(path)


def test_a_quote_left_open_is_text_unless_csv_quoting_is_asked_for(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('left,right\na,"never closed\nb,c\n')
    assert read_table(path).to_numpy().tolist() == [["a", '"never closed'], ["b", "c"]]
    with pytest.raises(PairFileError) as error:
        read_table(path, options=ReadOptions(quoting="csv"))
    assert str(error.value) == (
        f"{path} cannot be parsed as CSV with CSV quoting (data.quoting = csv): the record from line 2 to line 3 "
        "(a quote opened on line 2 runs on): the file ends inside a quoted field; it parses with quotes as text (no quoting): "
        "set data.quoting = none"
    )


def test_non_utf8_text_is_named(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"left\tright\ncaf\xe9\tb\n")
    with pytest.raises(PairFileError, match=r"pairs\.tsv cannot be read as TSV: it is not UTF-8 text"):
        read_table(path)


def test_a_bad_line_late_in_a_csv_stops_the_chunks_before_any_row_is_used(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("left,right\n" + "a,b\n" * 50 + "c,d,e\n")
    chunks = iter_table_chunks(path, chunk_rows=10)
    with pytest.raises(PairFileError, match=r"pairs\.csv cannot be parsed as CSV: .*line 52 has 3 fields"):
        next(chunks)


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


# Quoting and formats

# MRPC's layout: quotes are text, some open at a field's start and never close, some close mid-field.
QUOTES_AS_TEXT = [
    ["1", 'He called him "the witness", of course.', 'Referring to "the witness", he agreed.'],
    ["0", "He said the pie business doesn't fit.", '"The pie business does not fit our strategy.'],
    ["1", '"Saddam\'s daughters had schools in mind," he said.', "It was 5' 11\" tall."],
    ["0", "A plain line.", '"'],
]


def tab_lines(rows: list[list[str]], header: str = "label\tleft\tright") -> str:
    return "".join(line + "\r\n" for line in [header, *("\t".join(row) for row in rows)])


@pytest.mark.parametrize("suffix", [".tsv", ".txt"])
def test_a_tab_file_whose_quotes_are_text_reads_every_row_as_written(tmp_path, suffix):
    """A BOM, CRLF line ends and quote characters that are not CSV quoting, as MRPC ships."""
    path = tmp_path / f"pairs{suffix}"
    path.write_bytes(("\ufeff" + tab_lines(QUOTES_AS_TEXT)).encode())

    assert read_columns(path) == ["label", "left", "right"]
    assert read_table(path).to_numpy().tolist() == QUOTES_AS_TEXT
    (chunk,) = iter_table_chunks(path, chunk_rows=100, columns=["right"])
    assert chunk.frame["right"].tolist() == [row[2] for row in QUOTES_AS_TEXT]


def test_a_tab_file_with_csv_quoting_is_unquoted(tmp_path):
    """Quora's layout: a field in quotes, its quotes doubled; separators and newlines inside quotes."""
    path = tmp_path / "pairs.tsv"
    path.write_text(
        'id\tquestion1\tquestion2\n1\t"What does ""once in a blue moon"" mean?"\tplain\n'
        '2\t"a\ttab"\t"two\nlines"\n3\tno quotes\t"only ""this"" one"\n'
    )
    assert read_table(path)[["question1", "question2"]].to_numpy().tolist() == [
        ['What does "once in a blue moon" mean?', "plain"],
        ["a\ttab", "two\nlines"],
        ["no quotes", 'only "this" one'],
    ]


def test_a_csv_with_quoted_commas_and_newlines_and_crlf_is_read_as_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(b'left,right,label\r\n"Paris, France","one\r\ntwo",1\r\nplain,"say ""hi""",0\r\n')
    assert read_table(path).to_numpy().tolist() == [["Paris, France", "one\r\ntwo", "1"], ["plain", 'say "hi"', "0"]]


def test_explicit_quoting_none_keeps_every_quote_as_text(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text('left\tright\n"quoted"\tx\n')
    assert read_table(path)["left"].tolist() == ["quoted"]  # detected: CSV quoting parses, so it wins
    assert read_table(path, options=ReadOptions(quoting="none"))["left"].tolist() == ['"quoted"']


def test_explicit_csv_quoting_on_quotes_as_text_names_the_line_and_the_option_to_try(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text(tab_lines(QUOTES_AS_TEXT))
    with pytest.raises(PairFileError) as error:
        read_table(path, options=ReadOptions(quoting="csv"))
    message = str(error.value)
    assert message.startswith(f"{path} cannot be parsed as TSV with CSV quoting (data.quoting = csv): ")
    assert "line 3" in message and message.endswith("it parses with quotes as text (no quoting): set data.quoting = none")


def test_a_txt_file_is_tab_separated_unless_its_header_has_only_commas(tmp_path):
    tabs, commas = tmp_path / "tabs.txt", tmp_path / "commas.txt"
    tabs.write_text("left\tright\na, b\tc\n")
    commas.write_text('left,right\n"a, b",c\n')
    assert read_table(tabs).to_numpy().tolist() == [["a, b", "c"]]
    assert read_table(commas).to_numpy().tolist() == [["a, b", "c"]]
    assert row_name(tabs, 0) == "line 2"


def test_explicit_format_reads_any_suffix_and_overrides_the_suffix(tmp_path):
    path = tmp_path / "pairs.data"
    path.write_text("left\tright\na\tb\n")
    assert read_table(path, options=ReadOptions(format="tsv")).to_numpy().tolist() == [["a", "b"]]
    assert describe_rows(path, [0], options=ReadOptions(format="tsv")) == "line 2"
    with pytest.raises(PairFileError, match=r"unsupported suffix '\.data'; .*or name the format with data\.format"):
        read_table(path)
    misnamed = tmp_path / "pairs.tsv"
    misnamed.write_text("left,right\na,b\n")
    assert read_table(misnamed, options=ReadOptions(format="csv")).to_numpy().tolist() == [["a", "b"]]


def test_read_options_name_the_config_key_of_a_bad_value():
    with pytest.raises(ValueError, match=r"data\.quoting must be one of auto, csv, none; got 'single'"):
        ReadOptions(quoting="single")
    with pytest.raises(ValueError, match=r"data\.format must be one of auto, csv, tsv, parquet; got 'xlsx'"):
        ReadOptions(format="xlsx")
    assert ReadOptions(format="", quoting="") == ReadOptions()  # blank means detect, as in a config file
