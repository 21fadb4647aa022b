"""Pair tables on disk: CSV, TSV and Parquet read whole or in chunks, written atomically.

One place decides how a table file is read, so that training, scoring and validation see the
same cells: text stays text (a question "1" is not the number 1), an empty cell is missing, and
a file that cannot be parsed is reported with its name and the parser's reason. Rows are named
the way a user finds them: "line N" in an editor for CSV/TSV (the header is line 1), "row N"
for Parquet. Outputs are written to a temporary file and moved into place only when complete,
so an interrupted run never leaves a truncated table where a good one was.
"""

from __future__ import annotations

import contextlib
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


class PairFileError(ValueError):
    """A pair file that cannot be used; the message names the file and, where known, the column and rows."""


@dataclass(frozen=True)
class _Format:
    name: str  # as messages spell it
    separator: str | None  # None: Parquet


_FORMATS = {
    ".csv": _Format("CSV", ","),
    ".tsv": _Format("TSV", "\t"),
    ".tab": _Format("TSV", "\t"),
    ".parquet": _Format("Parquet", None),
    ".pq": _Format("Parquet", None),
}
TABLE_SUFFIXES = tuple(_FORMATS)  # the one list: read, written (AtomicTableWriter) and offered by the command line

# Spreadsheets save UTF-8 with a byte order mark; "-sig" reads files with and without one.
_ENCODING = "utf-8-sig"
# Only an empty cell is missing: "NA", "null" or "None" are text someone may have written.
_TEXT_OPTIONS = {"dtype": str, "keep_default_na": False, "na_values": [""], "encoding": _ENCODING}


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


def read_columns(path: str | Path) -> list[str]:
    """The table's column names, read from the header (CSV/TSV) or the schema (Parquet) only.

    Raises:
        PairFileError: the file is missing, has an unsupported suffix, or cannot be parsed.
    """
    path, table_format = _checked(path)
    with _read_errors(path, table_format):
        if table_format.separator is None:
            return _parquet_columns(pq.read_schema(path))
        header = pd.read_csv(path, sep=table_format.separator, nrows=0, **_TEXT_OPTIONS)
        return [str(name) for name in header.columns]


def read_table(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The whole table, indexed by data row from 0; text columns hold `str`, empty cells are missing.

    Args:
        path: a `.csv`, `.tsv`/`.tab` or `.parquet`/`.pq` file.
        columns: read only these (in this order); all columns when None.

    Raises:
        PairFileError: the file is missing, has an unsupported suffix, lacks a requested column,
            or cannot be parsed; names the file and the parser's reason.
    """
    path, table_format = _checked(path)
    columns = _requested(path, columns)
    with _read_errors(path, table_format):
        if table_format.separator is None:
            frame = pq.read_table(path, columns=columns).to_pandas()
        else:
            frame = pd.read_csv(path, sep=table_format.separator, usecols=columns, **_TEXT_OPTIONS)
    frame = frame[columns] if columns is not None else frame  # usecols keeps the file's order
    return frame.reset_index(drop=True)


def iter_table_chunks(
    path: str | Path, chunk_rows: int, columns: Sequence[str] | None = None
) -> Iterator[TableChunk]:
    """Read a table `chunk_rows` rows at a time, so memory does not grow with the file.

    Parquet chunks may be shorter than `chunk_rows` at row-group boundaries. An empty table
    yields no chunk.

    Raises (while iterating, when the bad part of the file is reached):
        PairFileError: as `read_table`.
        ValueError: `chunk_rows` is not a positive integer.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    path, table_format = _checked(path)
    columns = _requested(path, columns)
    if table_format.separator is None:
        yield from _parquet_chunks(path, table_format, chunk_rows, columns)
    else:
        yield from _text_chunks(path, table_format, chunk_rows, columns)


def row_name(path: str | Path, index: int) -> str:
    """How a user finds data row `index` (0-based): "line N" in a CSV/TSV editor, "row N" in Parquet."""
    unit, offset = _row_unit(Path(path))
    return f"{unit} {index + offset}"


def describe_rows(path: str | Path, indices: Sequence[int], limit: int = 5) -> str:
    """Name the first `limit` data rows and count the rest: "lines 4, 9, 12 and 7 more"."""
    unit, offset = _row_unit(Path(path))
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


def _format_of(path: Path) -> _Format:
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise PairFileError(
            f"{path} has an unsupported suffix {path.suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}"
        ) from None


def _checked(path: str | Path) -> tuple[Path, _Format]:
    """The path and its format, once it is known to be a readable file of a supported kind."""
    path = Path(path)
    table_format = _format_of(path)
    if not path.exists():
        raise PairFileError(f"{path} does not exist")
    if path.is_dir():
        raise PairFileError(f"{path} is a folder; give the table file itself")
    return path, table_format


def _requested(path: Path, columns: Sequence[str] | None) -> list[str] | None:
    """The columns to read, checked against the header so a typo names the file and its columns."""
    if columns is None:
        return None
    available = read_columns(path)
    missing = [column for column in columns if column not in available]
    if missing:
        raise PairFileError(
            f"{path} has no column {', '.join(map(repr, missing))}; its columns are: {', '.join(available)}"
        )
    return list(columns)


def _row_unit(path: Path) -> tuple[str, int]:
    """The word for a data row and the number of data row 0 (a CSV's header is line 1)."""
    if _format_of(path).separator is None:
        return "row", 1
    return "line", 2


@contextlib.contextmanager
def _read_errors(path: Path, table_format: _Format) -> Iterator[None]:
    """Turn a parser's failure into a PairFileError naming the file and the parser's reason."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise PairFileError(
            f"{path} cannot be read as {table_format.name}: it is not UTF-8 text ({error})"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowException, OSError) as error:
        reason = str(error).strip() or type(error).__name__
        raise PairFileError(f"{path} cannot be read as {table_format.name}: {reason}") from None


# Chunks


def _text_chunks(
    path: Path, table_format: _Format, chunk_rows: int, columns: list[str] | None
) -> Iterator[TableChunk]:
    total = path.stat().st_size
    with open(path, "rb") as handle:
        with _read_errors(path, table_format):
            reader = pd.read_csv(
                handle, sep=table_format.separator, usecols=columns, chunksize=chunk_rows, **_TEXT_OPTIONS
            )
        with reader:
            first_row = 0
            # One chunk is held back until the next is read: only then is it known to be the last,
            # whose progress must reach the total even when the parser stopped short of the end.
            held: tuple[pd.DataFrame, int] | None = None
            while True:
                with _read_errors(path, table_format):
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
    with _read_errors(path, table_format):
        file = pq.ParquetFile(path)
    with file:
        total = file.metadata.num_rows
        columns = columns if columns is not None else _parquet_columns(file.schema_arrow)
        with _read_errors(path, table_format):
            batches = file.iter_batches(batch_size=chunk_rows, columns=columns)
        first_row = 0
        while True:
            with _read_errors(path, table_format):
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
