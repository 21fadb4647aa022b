"""Pair tables on disk: CSV, TSV and Parquet read whole or in chunks, written atomically.

One place decides how a table file is read, so that training, scoring and validation see the
same cells: text stays text (a question "1" is not the number 1), an empty cell is missing, and
a file that cannot be parsed is reported with its name, the line and the option to try. Rows
are named the way a user finds them: "line N" in an editor for CSV/TSV (the header is line 1),
"row N" for Parquet. Outputs are written to a temporary file and moved into place only when
complete, so an interrupted run never leaves a truncated table where a good one was.

Quote characters are ambiguous in delimited text: CSV quoting in most files (Quora's TSV), part
of the text in others (MRPC's TSV, where `"The ... strategy.` opens a quote that never closes).
Read the wrong way, rows silently merge or split. So a CSV/TSV file is scanned, whole, before
it is read: standard CSV quoting is used when every record parses strictly that way with
the header's field count, else quotes are text when every line splits into the header's field
count, else the file cannot be parsed and the message says where each reading broke. The scan
also finds a ragged line before any row is used, so a parse problem is never reported as rows
with missing text. `ReadOptions` (`data.format`, `data.quoting`) overrides either decision.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from siamese.config import Quoting, TableFormat, member_of


class PairFileError(ValueError):
    """A pair file that cannot be used; the message names the file and, where known, the column and rows."""


@dataclass(frozen=True)
class _Format:
    name: str  # as messages spell it
    separator: str | None  # None: Parquet


_CSV, _TSV, _PARQUET = _Format("CSV", ","), _Format("TSV", "\t"), _Format("Parquet", None)
_FORMATS = {".csv": _CSV, ".tsv": _TSV, ".tab": _TSV, ".txt": _TSV, ".parquet": _PARQUET, ".pq": _PARQUET}
_NAMED_FORMATS = {TableFormat.CSV: _CSV, TableFormat.TSV: _TSV, TableFormat.PARQUET: _PARQUET}
_SNIFFED_SUFFIX = ".txt"  # public sets ship tab-separated `.txt` files; a header without a tab is read as CSV
TABLE_SUFFIXES = tuple(_FORMATS)  # the one list: read, written (AtomicTableWriter) and offered by the command line

# Spreadsheets save UTF-8 with a byte order mark; "-sig" reads files with and without one.
_ENCODING = "utf-8-sig"
# Only an empty cell is missing: "NA", "null" or "None" are text someone may have written.
_TEXT_OPTIONS = {"dtype": str, "keep_default_na": False, "na_values": [""], "encoding": _ENCODING}
_QUOTING_WORDS = {Quoting.CSV: "CSV quoting", Quoting.NONE: "quotes as text (no quoting)"}
_PANDAS_QUOTING = {Quoting.CSV: csv.QUOTE_MINIMAL, Quoting.NONE: csv.QUOTE_NONE}


@dataclass(frozen=True)
class ReadOptions:
    """How to parse a table file; the defaults decide from the file (`TableFormat`, `Quoting`).

    Accepts the config's strings ("", "auto", "tsv", "none", ...); messages name the config keys.
    """

    format: TableFormat = TableFormat.AUTO  # data.format
    quoting: Quoting = Quoting.AUTO  # data.quoting

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", member_of(TableFormat, self.format, "data.format"))
        object.__setattr__(self, "quoting", member_of(Quoting, self.quoting, "data.quoting"))


_DETECT = ReadOptions()


@dataclass(frozen=True)
class TableChunk:
    """Consecutive data rows of a table, and how far through the file they reach.

    `done` and `total` are bytes of the file for CSV/TSV (read so far: the parser reads ahead of
    the rows it returns) and rows for Parquet: the unit that is exact for each format, for a
    progress bar. The last chunk has `done == total`.
    """

    frame: pd.DataFrame  # indexed by data-row index, first_row onwards
    first_row: int  # 0-based data-row index of the frame's first row
    done: int
    total: int


def read_columns(path: str | Path, options: ReadOptions = _DETECT) -> list[str]:
    """The table's column names, from the header (CSV/TSV, as its quoting reads it) or the schema (Parquet).

    Raises:
        PairFileError: the file is missing, has an unsupported suffix, or cannot be parsed.
    """
    path, table_format = _checked(path, options)
    with _read_errors(path, table_format.name):
        return _header(path, table_format, _quoting(path, table_format, options.quoting))


def read_table(path: str | Path, columns: Sequence[str] | None = None, options: ReadOptions = _DETECT) -> pd.DataFrame:
    """The whole table, indexed by data row from 0; text columns hold `str`, empty cells are missing.

    Args:
        path: a `.csv`, `.tsv`/`.tab`/`.txt` or `.parquet`/`.pq` file.
        columns: read only these (in this order); all columns when None.
        options: the format and quoting, when the suffix and the detection should not decide.

    Raises:
        PairFileError: the file is missing, has an unsupported suffix, lacks a requested column,
            or cannot be parsed (names the file, the line, and the option to try).
    """
    path, table_format = _checked(path, options)
    with _read_errors(path, table_format.name):
        quoting = _quoting(path, table_format, options.quoting)
        columns = _requested(path, columns, _header(path, table_format, quoting))
        if table_format.separator is None:
            frame = pq.read_table(path, columns=columns).to_pandas()
        else:
            frame = pd.read_csv(path, sep=table_format.separator, usecols=columns, quoting=quoting, **_TEXT_OPTIONS)
    frame = frame[columns] if columns is not None else frame  # usecols keeps the file's order
    return frame.reset_index(drop=True)


def iter_table_chunks(
    path: str | Path, chunk_rows: int, columns: Sequence[str] | None = None, options: ReadOptions = _DETECT
) -> Iterator[TableChunk]:
    """Read a table `chunk_rows` rows at a time, so memory does not grow with the file.

    Parquet chunks may be shorter than `chunk_rows` at row-group boundaries. An empty table
    yields no chunk. A CSV/TSV file is scanned whole (line by line) before the first chunk, so a
    line that cannot be parsed stops the read before any row is used.

    Raises (while iterating):
        PairFileError: as `read_table`.
        ValueError: `chunk_rows` is not a positive integer.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    path, table_format = _checked(path, options)
    with _read_errors(path, table_format.name):
        quoting = _quoting(path, table_format, options.quoting)
        columns = _requested(path, columns, _header(path, table_format, quoting))
    if quoting is None:
        yield from _parquet_chunks(path, table_format, chunk_rows, columns)
    else:
        yield from _text_chunks(path, table_format, quoting, chunk_rows, columns)


def row_name(path: str | Path, index: int, options: ReadOptions = _DETECT) -> str:
    """How a user finds data row `index` (0-based): "line N" in a CSV/TSV editor, "row N" in Parquet."""
    unit, offset = _row_unit(Path(path), options)
    return f"{unit} {index + offset}"


def describe_rows(path: str | Path, indices: Sequence[int], limit: int = 5, options: ReadOptions = _DETECT) -> str:
    """Name the first `limit` data rows and count the rest: "lines 4, 9, 12 and 7 more"."""
    unit, offset = _row_unit(Path(path), options)
    if len(indices) == 0:
        return f"no {unit}s"
    shown = ", ".join(str(index + offset) for index in indices[:limit])
    more = len(indices) - limit
    plural = "s" if len(indices) > 1 else ""
    return f"{unit}{plural} {shown}" + (f" and {more} more" if more > 0 else "")


class AtomicTableWriter:
    """Write a table chunk by chunk to a hidden temporary file; move it onto `path` only when complete.

    The format follows `path`'s suffix. On a clean exit the temporary file replaces `path` in one
    step (same directory, so same file system); on an exception it is removed and whatever was
    at `path` before is left as it was.

        with AtomicTableWriter("scores.parquet") as writer:
            for chunk in chunks:
                writer.write(chunk)

    Args:
        path: the table to produce; its folder is created if missing.
        empty_frame: the columns (and dtypes) to write when no chunk is written. Without it,
            writing nothing is an error: a table with unknown columns cannot be read back.

    Raises:
        PairFileError: `path` has an unsupported suffix.
        ValueError: a chunk's columns differ from the first chunk's, or nothing was written and
            there is no `empty_frame` (raised on exit; `path` is then untouched).
    """

    def __init__(self, path: str | Path, empty_frame: pd.DataFrame | None = None) -> None:
        self.path = Path(path)
        self._format = _format_of(self.path)
        self._empty_frame = empty_frame
        self._temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        self._file: BinaryIO | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._columns: list[str] | None = None
        self._rows_written = 0

    @property
    def rows_written(self) -> int:
        return self._rows_written

    def __enter__(self) -> AtomicTableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._temporary, "xb")  # "x": never reuse a file another writer owns
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append the frame's rows (its index is not written)."""
        if self._file is None:
            raise RuntimeError(f"write to {self.path} inside `with AtomicTableWriter(...) as writer:`")
        columns = [str(name) for name in frame.columns]
        if self._columns is not None and columns != self._columns:
            raise ValueError(f"{self.path}: a chunk has columns {columns}, the first chunk had {self._columns}")
        if self._format.separator is None:
            self._write_parquet(frame)
        else:
            frame.to_csv(
                self._file,
                sep=self._format.separator,
                index=False,
                header=self._columns is None,
                encoding="utf-8",
                lineterminator="\n",
            )
        self._columns = columns
        self._rows_written += len(frame)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
                os.replace(self._temporary, self.path)
        finally:
            self._close()
            self._temporary.unlink(missing_ok=True)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        schema = self._parquet.schema if self._parquet is not None else None
        # Later chunks take the first chunk's schema: an all-missing column must not change type.
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._file, table.schema)
        self._parquet.write_table(table)

    def _finish(self) -> None:
        if self._columns is None:
            if self._empty_frame is None:
                raise ValueError(
                    f"nothing was written to {self.path} and no empty_frame gives its columns; "
                    "the file was not created"
                )
            self.write(self._empty_frame.iloc[:0])
        if self._parquet is not None:
            self._parquet.close()  # writes the footer
            self._parquet = None
        self._file.flush()
        os.fsync(self._file.fileno())  # the data is on disk before the name points at it

    def _close(self) -> None:
        if self._parquet is not None:
            # Only reached after an error: the file is deleted next, and that error is the one to report.
            with contextlib.suppress(Exception):
                self._parquet.close()
        if self._file is not None:
            self._file.close()


# Formats and paths


def _format_of(path: Path, options: ReadOptions = _DETECT) -> _Format:
    """The format `data.format` names, else the suffix's (a `.txt` file counts as TSV until sniffed)."""
    if options.format is not TableFormat.AUTO:
        return _NAMED_FORMATS[options.format]
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise PairFileError(
            f"{path} has an unsupported suffix {path.suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}, "
            "or name the format with data.format (csv, tsv or parquet)"
        ) from None


def _checked(path: str | Path, options: ReadOptions = _DETECT) -> tuple[Path, _Format]:
    """The path and its format, once it is known to be a readable file of a supported kind."""
    path = Path(path)
    table_format = _format_of(path, options)
    if not path.exists():
        raise PairFileError(f"{path} does not exist")
    if path.is_dir():
        raise PairFileError(f"{path} is a folder; give the table file itself")
    if options.format is TableFormat.AUTO and path.suffix.lower() == _SNIFFED_SUFFIX:
        return path, _sniffed(path)
    return path, table_format


def _sniffed(path: Path) -> _Format:
    """A `.txt` table: tab-separated if its header line has a tab, else comma-separated."""
    with _read_errors(path, "text"), open(path, encoding=_ENCODING, newline="") as handle:
        header = handle.readline()
    return _TSV if "\t" in header or "," not in header else _CSV


def _header(path: Path, table_format: _Format, quoting: int | None) -> list[str]:
    """The column names, as the quoting `_quoting` chose reads the header (None: Parquet's schema)."""
    if quoting is None:
        return _parquet_columns(pq.read_schema(path))
    header = pd.read_csv(path, sep=table_format.separator, nrows=0, quoting=quoting, **_TEXT_OPTIONS)
    return [str(name) for name in header.columns]


def _requested(path: Path, columns: Sequence[str] | None, available: list[str]) -> list[str] | None:
    """The columns to read, checked against the header so a typo names the file and its columns."""
    if columns is None:
        return None
    missing = [column for column in columns if column not in available]
    if missing:
        raise PairFileError(
            f"{path} has no column {', '.join(map(repr, missing))}; its columns are: {', '.join(available)}"
        )
    return list(columns)


def _row_unit(path: Path, options: ReadOptions) -> tuple[str, int]:
    """The word for a data row and the number of data row 0 (a CSV's header is line 1)."""
    if _format_of(path, options).separator is None:
        return "row", 1
    return "line", 2


@contextlib.contextmanager
def _read_errors(path: Path, format_name: str) -> Iterator[None]:
    """Turn a parser's failure into a PairFileError naming the file and the parser's reason."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise PairFileError(f"{path} cannot be read as {format_name}: it is not UTF-8 text ({error})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowException, OSError) as error:
        reason = str(error).strip() or type(error).__name__
        raise PairFileError(f"{path} cannot be read as {format_name}: {reason}") from None


# Quoting


@dataclass(frozen=True)
class _Flaw:
    """Where one reading of a CSV/TSV file breaks: the first line of the bad record, and what is wrong."""

    line: int
    reason: str


def _quoting(path: Path, table_format: _Format, requested: Quoting) -> int | None:
    """The pandas quoting constant for a CSV/TSV file, decided by a scan of the whole file; None for Parquet.

    The scan reads line by line (memory stays flat) and costs a fraction of the parse that follows.

    Raises:
        PairFileError: no reading allowed by `requested` gives every record the header's field count.
    """
    if table_format.separator is None:
        return None
    return _PANDAS_QUOTING[_decide_quoting(path, table_format, requested)]


def _decide_quoting(path: Path, table_format: _Format, requested: Quoting) -> Quoting:
    """CSV quoting when every record parses strictly that way, else quotes as text, else an error.

    CSV quoting goes first because it is the standard and the only reading of a file whose quoted
    fields hold separators or newlines; a file whose quotes are text almost never parses strictly
    as CSV with the header's field count on every record (a stray opening quote swallows lines).
    """
    candidates = (Quoting.CSV, Quoting.NONE) if requested is Quoting.AUTO else (requested,)
    flaws: dict[Quoting, _Flaw] = {}
    for quoting in candidates:
        flaw = _flaw(path, table_format.separator, quoting)
        if flaw is None:
            return quoting
        flaws[quoting] = flaw
    raise PairFileError(_unparsed(path, table_format, requested, flaws))


def _flaw(path: Path, separator: str, quoting: Quoting) -> _Flaw | None:
    return _csv_flaw(path, separator) if quoting is Quoting.CSV else _unquoted_flaw(path, separator)


def _csv_flaw(path: Path, separator: str) -> _Flaw | None:
    """The first record that strict CSV quoting cannot read, or that has other than the header's field count.

    Strict: a closing quote must end its field, so a quote that is really text (`"the witness", of`)
    is an error rather than a silently merged field.
    """
    with open(path, encoding=_ENCODING, newline="") as handle:
        reader = csv.reader(handle, delimiter=separator, strict=True)
        expected, start = 0, 1
        try:
            for record in reader:
                if record:  # a blank line: skipped, as the reader (pandas) skips it
                    expected = expected or len(record)
                    if len(record) != expected:
                        where = _record(start, reader.line_num)
                        return _Flaw(start, f"{where} has {len(record)} fields where the header has {expected}")
                start = reader.line_num + 1
        except csv.Error as error:
            return _Flaw(start, f"{_record(start, reader.line_num)}: {_csv_reason(error)}")
    return None


def _csv_reason(error: csv.Error) -> str:
    """The csv module's complaint in a reader's words (its own spells a tab as a raw tab)."""
    text = str(error)
    if "expected after" in text:
        return "a closing quote is followed by more text in the same field"
    if text == "unexpected end of data":
        return "the file ends inside a quoted field"
    return text


def _unquoted_flaw(path: Path, separator: str) -> _Flaw | None:
    """The first line with other than the header's field count, when every line is one record."""
    with open(path, encoding=_ENCODING, newline="") as handle:
        expected = 0
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text:
                fields = text.count(separator) + 1
                expected = expected or fields
                if fields != expected:
                    return _Flaw(number, f"line {number} has {fields} fields where the header has {expected}")
    return None


def _record(start: int, end: int) -> str:
    """A record as an editor finds it; one that runs over several lines is where a quote was left open."""
    if end <= start:
        return f"line {start}"
    return f"the record from line {start} to line {end} (a quote opened on line {start} runs on)"


def _unparsed(path: Path, table_format: _Format, requested: Quoting, flaws: dict[Quoting, _Flaw]) -> str:
    """Where each reading broke, and the override to try: the other quoting if it parses, else the format."""
    if requested is Quoting.AUTO:
        readings = "; ".join(f"with {_QUOTING_WORDS[quoting]}, {flaw.reason}" for quoting, flaw in flaws.items())
        first = min(flaw.line for flaw in flaws.values())
        return (
            f"{path} cannot be parsed as {table_format.name}: {readings}. Fix the file from line {first}, "
            f"or, if it is not {table_format.name}, name its format with data.format (csv, tsv or parquet)"
        )
    other = Quoting.NONE if requested is Quoting.CSV else Quoting.CSV
    other_flaw = _flaw(path, table_format.separator, other)
    advice = (
        f"it parses with {_QUOTING_WORDS[other]}: set data.quoting = {other}"
        if other_flaw is None
        else f"with {_QUOTING_WORDS[other]} too it fails ({other_flaw.reason}); fix the file, or check data.format"
    )
    return (
        f"{path} cannot be parsed as {table_format.name} with {_QUOTING_WORDS[requested]} "
        f"(data.quoting = {requested}): {flaws[requested].reason}; {advice}"
    )


# Chunks


def _text_chunks(
    path: Path, table_format: _Format, quoting: int, chunk_rows: int, columns: list[str] | None
) -> Iterator[TableChunk]:
    total = path.stat().st_size
    with open(path, "rb") as handle:
        with _read_errors(path, table_format.name):
            reader = pd.read_csv(
                handle,
                sep=table_format.separator,
                usecols=columns,
                chunksize=chunk_rows,
                quoting=quoting,
                **_TEXT_OPTIONS,
            )
        with reader:
            first_row = 0
            # One chunk is held back until the next is read: only then is it known to be the last,
            # whose progress must reach the total even when the parser stopped short of the end.
            held: tuple[pd.DataFrame, int] | None = None
            while True:
                with _read_errors(path, table_format.name):
                    frame = next(reader, None)
                if frame is None:
                    break
                if held is not None:
                    yield _chunk(held[0], first_row, held[1], total, columns)
                    first_row += len(held[0])
                held = (frame, min(handle.tell(), total)) if len(frame) else None
            if held is not None:
                yield _chunk(held[0], first_row, total, total, columns)


def _parquet_chunks(
    path: Path, table_format: _Format, chunk_rows: int, columns: list[str] | None
) -> Iterator[TableChunk]:
    with _read_errors(path, table_format.name):
        file = pq.ParquetFile(path)
    with file:
        total = file.metadata.num_rows
        columns = columns if columns is not None else _parquet_columns(file.schema_arrow)
        with _read_errors(path, table_format.name):
            batches = file.iter_batches(batch_size=chunk_rows, columns=columns)
        first_row = 0
        while True:
            with _read_errors(path, table_format.name):
                batch = next(batches, None)
                frame = batch.to_pandas() if batch is not None else None
            if frame is None:
                break
            if len(frame):
                yield _chunk(frame, first_row, first_row + len(frame), total, columns)
                first_row += len(frame)


def _chunk(frame: pd.DataFrame, first_row: int, done: int, total: int, columns: list[str] | None) -> TableChunk:
    frame = frame[columns] if columns is not None else frame
    frame = frame.set_axis(pd.RangeIndex(first_row, first_row + len(frame)), axis=0)
    return TableChunk(frame, first_row, done, total)


def _parquet_columns(schema: pa.Schema) -> list[str]:
    """The data columns: pandas may have stored its index as extra columns, which are not data."""
    index_columns = set()
    if schema.pandas_metadata is not None:
        index_columns = {name for name in schema.pandas_metadata.get("index_columns", []) if isinstance(name, str)}
    return [name for name in schema.names if name not in index_columns]
