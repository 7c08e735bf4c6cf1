"""The one reader of flow files: CSV, CSV.gz/bz2/xz/zst, zip (one CSV inside) and parquet, in
batches of at most `batch_rows` rows, so a file larger than memory can be read.

    for raw in read_batches("flows.csv.gz", 100_000, key="input"):
        ...  # a pandas frame whose index is the row number from the file's first flow

Training (`ids.data.prepare`), `ids.evaluate` and `ids.predict` all read through it; what a
batch holds is validated by the caller (`ids.data.flows.validate_frame`), whose errors name
rows by that index, so they say the same whatever the batch size.

CSV goes through pyarrow's streaming reader, which takes each column's type from the first
block. A later value that does not fit (an int64 column holding `2.5` or `lots`) restarts the
read with that column one step wider (null -> int64 -> double -> string) and skips the rows
already handed out: the column types end up those of reading the whole file at once
(`FlowFile.widened_late` says when batches already handed out had a narrower type). File-level
problems raise `DataError` with one line naming the file and the fix; `key` is the setting
that names the file in that fix (`data.path`, `input`).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import sys
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ids.data.errors import DataError

BATCH_ROWS = 262_144  # rows per batch: ~0.4 GB of working memory for the 45 columns of NF-v2
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".zip")
PARQUET_SUFFIXES = (".parquet", ".pq")
_WIDER = {pa.null(): pa.int64(), pa.bool_(): pa.string(), pa.int64(): pa.float64(),
          pa.float64(): pa.string()}
BLOCK_BYTES = 1 << 22  # bytes of CSV parsed at a time


class FlowFile:
    """A flow file, read batch by batch (`batches`); `types` holds the column types found."""

    def __init__(self, path, key: str = "data.path", block_bytes: int = BLOCK_BYTES) -> None:
        self.path, self.key = Path(str(path)).expanduser(), key
        self.block_bytes = int(block_bytes)  # bytes of CSV parsed at a time (types: the first)
        self.types: dict[str, pa.DataType] = {}
        self.widened_late = False  # a column was widened after batches were handed out
        if not self.path.is_file():
            raise DataError(f"{key}={self.path}: no such file")
        name = self.path.name.lower()
        if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
            raise DataError(f"unknown file extension of {self.path.name}: use .csv, .csv.gz, "
                            ".zip (one CSV inside) or .parquet")
        self.parquet = name.endswith(PARQUET_SUFFIXES)
        verb = "score" if key == "input" else "load"
        if self.path.stat().st_size == 0:
            raise DataError(f"{self.path} is empty: no flows to {verb}")

    def batches(self, batch_rows: int = BATCH_ROWS,
                max_rows: int | None = None) -> Iterator[pd.DataFrame]:
        """Raw frames of at most `batch_rows` rows (the first `max_rows` rows only, if given),
        indexed by their row number in the file (0 = the first flow)."""
        if int(batch_rows) < 1:
            raise DataError(f"batches of {batch_rows} rows: use >= 1")
        batch_rows, limit = int(batch_rows), None if max_rows is None else int(max_rows)
        done = 0
        while True:
            try:
                for table in _rebatch(self._tables(), batch_rows, skip=done):
                    if limit is not None and done + table.num_rows > limit:
                        table = table.slice(0, limit - done)
                    if table.num_rows:
                        frame = self._frame(table)
                        frame.index = pd.RangeIndex(done, done + len(frame))
                        done += len(frame)
                        yield frame
                    if limit is not None and done >= limit:
                        return
                return
            except pa.ArrowInvalid as exc:
                self._widen(exc, started=done > 0)

    def _tables(self) -> Iterator[pa.Table]:
        """The file as a stream of Arrow tables (any number of rows each)."""
        ragged: list = []
        try:
            if self.parquet:
                yield from self._parquet()
                return
            with ExitStack() as stack:
                reader = self._csv(stack, ragged)
                self.types = {**dict(zip(reader.schema.names, reader.schema.types,
                                         strict=True)), **self.types}
                for batch in reader:
                    yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:
            if self.parquet:
                raise self._unreadable(exc) from exc
            if str(exc).startswith("In CSV column #"):
                raise  # a value wider than its column's type: `batches` widens and restarts
            raise DataError(f"{self.path} is not a readable CSV "
                            f"({self._ragged(ragged) or _first_line(exc)})") from exc
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError,
                pa.ArrowException) as exc:
            raise self._unreadable(exc) from exc

    def _parquet(self) -> Iterator[pa.Table]:
        """A parquet file's row groups as tables; whatever its decoder raises, it is damaged."""
        import pyarrow.parquet as pq

        try:
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=1 << 16):
                yield pa.Table.from_batches([batch])
        except Exception as exc:  # noqa: BLE001 - a damaged footer, schema or page
            raise self._unreadable(exc) from exc

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        """The table as pandas; a parquet file's damaged pandas metadata makes it unreadable."""
        try:
            return table.to_pandas(split_blocks=True)
        except Exception as exc:  # noqa: BLE001 - KeyError, TypeError, ... from the metadata
            raise self._unreadable(exc) from exc

    def _csv(self, stack: ExitStack, ragged: list, threads: bool = True):
        """pyarrow's streaming CSV reader; lines with the wrong number of fields go to `ragged`."""
        _quiet_undecodable_rows()
        return pacsv.open_csv(
            self._open(stack), read_options=pacsv.ReadOptions(block_size=self.block_bytes,
                                                              use_threads=threads),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=lambda row: ragged.append(row) or "error"),
            convert_options=pacsv.ConvertOptions(column_types=self.types))

    def _ragged(self, rows: list) -> str | None:
        """'Expected 14 fields in line 5, saw 15' for the first ragged line, if that was the
        error. Parsing in threads does not know line numbers: then one more pass in one thread
        finds it (on this error only)."""
        if rows and rows[0].number is None:
            again: list = []
            try:
                with ExitStack() as stack:
                    for _ in self._csv(stack, again, threads=False):
                        pass
            except pa.ArrowInvalid:
                rows = again or rows
        if not rows:
            return None
        row = rows[0]
        return (f"Expected {row.expected_columns} fields in line {row.number}, saw "
                f"{row.actual_columns}")

    def _unreadable(self, exc: BaseException) -> DataError:
        """A decoder (gzip, zip, parquet, CSV, the OS) could not read the file: damaged,
        truncated, misnamed or unreadable; one line that names the file and what it promised."""
        detail = " ".join(_first_line(exc).split())[:300]
        return DataError(f"{self.path} cannot be read as {_kind(self.path.name.lower())} "
                         f"({type(exc).__name__}: {detail}); is the file complete, and does its "
                         "extension match its content?")

    def _open(self, stack: ExitStack):
        """The CSV bytes: the path itself, a decompressing stream, or the zip's one CSV."""
        name, p = self.path.name.lower(), self.path
        if name.endswith(".zip"):
            zf = stack.enter_context(zipfile.ZipFile(p))
            csvs = [m for m in zf.namelist() if m.lower().endswith(".csv")
                    and not m.endswith("/") and not m.startswith("__MACOSX/")]
            if len(csvs) != 1:
                raise DataError(f"{p} holds {len(csvs)} CSV files {csvs[:5]}; the zip must "
                                f"hold exactly one (unzip it and point {self.key} at one CSV)")
            return stack.enter_context(zf.open(csvs[0]))
        for suffix, opener in ((".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)):
            if name.endswith(suffix):  # Python's decompressors: their errors say what is wrong
                return stack.enter_context(opener(p, "rb"))
        if name.endswith(".zst"):
            return stack.enter_context(pa.input_stream(str(p), compression="zstd"))
        return str(p)

    def _widen(self, exc: pa.ArrowInvalid, started: bool) -> None:
        """One step wider for the column a conversion error names (then the read restarts)."""
        m = re.match(r"In CSV column #(\d+)", str(exc))
        names = list(self.types)
        if not m or int(m.group(1)) >= len(names):
            raise DataError(f"{self.path} is not a readable CSV ({_first_line(exc)})") from exc
        name = names[int(m.group(1))]
        if self.types[name] not in _WIDER:  # nothing wider to try (e.g. invalid UTF-8 text)
            raise self._unreadable(exc) from exc
        self.types[name] = _WIDER[self.types[name]]
        self.widened_late = self.widened_late or started


def _rebatch(tables: Iterator[pa.Table], rows: int, skip: int = 0) -> Iterator[pa.Table]:
    """Tables of exactly `rows` rows (the last one shorter), the first `skip` rows dropped."""
    pending: list[pa.Table] = []
    have = 0
    for table in tables:
        if skip:
            drop = min(skip, table.num_rows)
            table, skip = table.slice(drop), skip - drop
        pending.append(table)
        have += table.num_rows
        while have >= rows:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, rows)
            pending, have = [whole.slice(rows)], have - rows
    if have:
        yield pa.concat_tables(pending)


def _kind(name: str) -> str:
    """What a file's extension promises, for error messages."""
    for ext, kind in ((".gz", "gzip"), (".bz2", "bzip2"), (".xz", "xz"), (".zst", "zstd"),
                      (".zip", "a zip archive"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return kind
    return "a CSV file"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_batches(path, batch_rows: int = BATCH_ROWS, *, key: str = "data.path",
                 max_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """`FlowFile(path, key).batches(batch_rows, max_rows)`."""
    return FlowFile(path, key).batches(batch_rows, max_rows)


def _quiet_undecodable_rows() -> None:
    """pyarrow decodes a ragged line as UTF-8 before it calls `invalid_row_handler`; a line that
    is not UTF-8 fails inside that call, which Python prints as 'Exception ignored in ...' with
    a traceback on stderr (the read then stops with pyarrow's parse error, which is reported as
    the one error line). Those reports, and only those, are dropped (installed once)."""
    previous = sys.unraisablehook
    if getattr(previous, "ids_quiet_rows", False):
        return

    def hook(unraisable) -> None:
        where = getattr(unraisable.object, "__qualname__", "")
        if isinstance(unraisable.exc_value, UnicodeDecodeError) and "FlowFile._csv" in where:
            return
        previous(unraisable)

    hook.ids_quiet_rows = True
    sys.unraisablehook = hook
