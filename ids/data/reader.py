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

Hostile files are bounded (`ids.data.limits`): a compressed file may expand at most
`MAX_RATIO` times (real NetFlow CSVs: 7-25 times; a decompression bomb of zeros: thousands),
a zip may hold at most `MAX_ZIP_ENTRIES` entries, a parquet file's footer and rows are bounded
by its metadata before any row group is read, and a CSV line longer than a parse block is an
error. pyarrow's reader threads read a compressed file through a Python stream (`_Source`):
whatever ends the read (an error, `max_rows`, a caller that stops), that stream is stopped and
released before the function returns, since a Python stream still read by those threads when
the interpreter exits aborts the process (SIGABRT, "terminate called without an active
exception").
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import stat
import sys
import time
import weakref
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ids.data import limits
from ids.data.errors import DataError
from ids.data.limits import size

BATCH_ROWS = 262_144  # rows per batch: ~0.4 GB of working memory for the 45 columns of NF-v2
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".zip")
PARQUET_SUFFIXES = (".parquet", ".pq")
_WIDER = {pa.null(): pa.int64(), pa.bool_(): pa.string(), pa.int64(): pa.float64(),
          pa.float64(): pa.string()}
BLOCK_BYTES = 1 << 22  # bytes of CSV parsed at a time; a longer line is an error
_DECODER_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
                   UnicodeDecodeError, NotImplementedError, RuntimeError, pa.ArrowException)


class FlowFile:
    """A flow file, read batch by batch (`batches`); `types` holds the column types found."""

    def __init__(self, path, key: str = "data.path", block_bytes: int = BLOCK_BYTES) -> None:
        self.path, self.key = Path(str(path)).expanduser(), key
        self.block_bytes = int(block_bytes)  # bytes of CSV parsed at a time (types: the first)
        self.types: dict[str, pa.DataType] = {}
        self.widened_late = False  # a column was widened after batches were handed out
        if not self.path.is_file():
            what = not_a_file(self.path)
            raise DataError(f"{key}={self.path}{':' if what == 'no such file' else ''} {what}")
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
        state = _State()
        try:
            if self.parquet:
                yield from self._parquet()
                return
            with self._reading(ragged, state) as held:
                try:  # `held` is the only holder: emptied before `_reading` waits for it
                    schema = held[0].schema
                    self._check_columns(len(schema.names))
                    self.types = {**dict(zip(schema.names, schema.types, strict=True)),
                                  **self.types}
                    for batch in held[0]:
                        yield pa.Table.from_batches([batch])
                finally:
                    held.clear()
        except DataError:
            raise
        except pa.ArrowInvalid as exc:
            if self.parquet:
                raise self._unreadable(exc) from exc
            if state.error is not None:  # the decompressor's error, not what it cut short
                raise self._failed(state.error) from exc
            if str(exc).startswith("In CSV column #"):
                raise  # a value wider than its column's type: `batches` widens and restarts
            raise DataError(f"{self.path} is not a readable CSV "
                            f"({self._ragged(ragged) or self._long_line(exc) or _first_line(exc)})"
                            ) from exc
        except _DECODER_ERRORS as exc:
            raise self._failed(state.error or exc) from exc

    def _parquet(self) -> Iterator[pa.Table]:
        """A parquet file's row groups as tables, once its metadata says that they are
        bounded; whatever its decoder raises, it is damaged."""
        import pyarrow.parquet as pq

        try:
            self._check_footer()
            text = [f.name for f in pq.read_schema(self.path) if _text(f.type)]
            pf = pq.ParquetFile(self.path, read_dictionary=text)  # decoded after `_expanded`
            self._check_columns(pf.metadata.num_columns)
            self._check_row_groups(pf.metadata)
            for batch in pf.iter_batches(batch_size=1 << 16):
                yield self._plain(pa.Table.from_batches([batch]), text)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged footer, schema or page
            raise self._unreadable(exc) from exc

    def _check_columns(self, n: int) -> None:
        """DataError for more columns than any flow layout has (NF-v3: 55)."""
        if n > limits.MAX_COLUMNS:
            raise DataError(f"{self.path} has {n:,} columns (at most {limits.MAX_COLUMNS:,} are "
                            "read; a NetFlow layout has 14-55): is it a file of flows?")

    def _plain(self, table: pa.Table, text: list[str]) -> pa.Table:
        """The batch with its text columns decoded from dictionaries, once the text they
        expand to is bounded (a 50 MB value, stored once and referenced by every row, would
        expand to terabytes)."""
        import pyarrow.compute as pc

        expanded = 0
        for name in text:
            col = table.column(name)
            for chunk in col.chunks:
                if pa.types.is_dictionary(chunk.type):
                    lengths = pc.binary_length(chunk.dictionary)
                    expanded += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
        if expanded > limits.MAX_BATCH_BYTES:
            raise DataError(f"{self.path}: {table.num_rows:,} rows hold {size(expanded)} of text "
                            f"(at most {size(limits.MAX_BATCH_BYTES)} are read at a time; a "
                            "flow takes a few hundred bytes): damaged, or not a flow file")
        for name in text:
            i = table.schema.get_field_index(name)
            col = table.column(i)
            if pa.types.is_dictionary(col.type):
                table = table.set_column(i, name, col.cast(col.type.value_type))
        return table

    def _check_footer(self) -> None:
        """DataError when the footer (the metadata, read whole before any row) is too large."""
        with open(self.path, "rb") as fh:
            fh.seek(-8, 2)
            tail = fh.read(8)
        footer = int.from_bytes(tail[:4], "little")
        if tail[4:] == b"PAR1" and footer > limits.MAX_PARQUET_FOOTER:
            raise DataError(f"{self.path}: its parquet metadata takes {size(footer)} (at most "
                            f"{size(limits.MAX_PARQUET_FOOTER)} are read): damaged, or not a "
                            "flow file; write it again with fewer columns and larger row groups")

    def _check_row_groups(self, meta) -> None:
        """DataError for a row group that would expand beyond the bounds: more than MAX_RATIO
        times its compressed size, or rows of more than MAX_ROW_BYTES on average."""
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            expanded, rows = group.total_byte_size, max(group.num_rows, 1)
            packed = sum(group.column(j).total_compressed_size for j in range(group.num_columns))
            if _expands(expanded, packed):
                raise self._bomb(f"its row group {i}", expanded, packed)
            if expanded / rows > limits.MAX_ROW_BYTES:
                raise DataError(f"{self.path}: row group {i} holds {size(expanded)} for "
                                f"{group.num_rows:,} rows, more than "
                                f"{size(limits.MAX_ROW_BYTES)} a row (a flow takes a few hundred "
                                "bytes): damaged, or not a flow file")

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        """The table as pandas; a parquet file's damaged pandas metadata makes it unreadable."""
        try:
            return table.to_pandas(split_blocks=True)
        except Exception as exc:  # noqa: BLE001 - KeyError, TypeError, ... from the metadata
            raise self._unreadable(exc) from exc

    @contextmanager
    def _reading(self, ragged: list, state: _State, threads: bool = True):
        """[pyarrow's streaming CSV reader], a list the caller empties when it is done with the
        reader (a local name would keep it, and the `_Source` it reads, alive while this waits
        for the source's release: 10 s per compressed file); lines with the wrong number of
        fields go to `ragged`. A compressed file is read through a `_Source`, stopped and
        released on the way out."""
        _quiet_undecodable_rows()
        with ExitStack() as stack:
            source = self._open(stack, state)

            def handler(row) -> str:  # called from pyarrow's parsing threads
                ragged.append(row)
                return "error"

            # What pyarrow's threads call into: the stream and the ragged-row handler; neither
            # may be in use when the interpreter exits (SIGABRT), so both are waited for.
            watches = [weakref.ref(handler)] + ([] if isinstance(source, str)
                                                else [weakref.ref(source)])
            reader = None
            try:
                reader = pacsv.open_csv(
                    source, read_options=pacsv.ReadOptions(block_size=self.block_bytes,
                                                           use_threads=threads),
                    parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
                    convert_options=pacsv.ConvertOptions(column_types=self.types))
                source = None  # from here on, only the reader holds it
                held = [reader]
                reader = None
                yield held
            finally:
                state.stopped = True  # every further read is the end of the file
                reader = source = handler = None
                _released(watches, settle=sys.exc_info()[0] is not None)

    def _ragged(self, rows: list) -> str | None:
        """'Expected 14 fields in line 5, saw 15' for the first ragged line, if that was the
        error. Parsing in threads does not know line numbers: then one more pass in one thread
        finds it (on this error only)."""
        if rows and rows[0].number is None:
            again: list = []
            try:
                with self._reading(again, _State(), threads=False) as held:
                    try:
                        for _ in held[0]:
                            pass
                    finally:
                        held.clear()
            except (pa.ArrowInvalid, *_DECODER_ERRORS):
                rows = again or rows
        if not rows:
            return None
        row = rows[0]
        return (f"Expected {row.expected_columns} fields in line {row.number}, saw "
                f"{row.actual_columns}")

    def _long_line(self, exc: BaseException) -> str | None:
        """pyarrow's 'straddling object' error in words: a line longer than a parse block."""
        if "straddling object" not in str(exc):
            return None
        return (f"a line is longer than {size(self.block_bytes)}, a flow takes a few hundred "
                "bytes: is it a CSV file of flows?")

    def _bomb(self, what: str, expanded: int, packed: int) -> DataError:
        return DataError(f"{self.path}: {what} expands to more than {limits.MAX_RATIO} times "
                         f"its compressed size ({size(expanded)} from {size(packed)}; flow files "
                         "compress 5-30 times): a decompression bomb, or damaged. If it is a "
                         "genuine flow file, decompress it and pass the CSV")

    def _failed(self, exc: BaseException) -> DataError:
        """The DataError of the stream's own error (a bomb) or a decoder's."""
        return exc if isinstance(exc, DataError) else self._unreadable(exc)

    def _unreadable(self, exc: BaseException) -> DataError:
        """A decoder (gzip, zip, parquet, CSV, the OS) could not read the file: damaged,
        truncated, misnamed or unreadable; one line that names the file and what it promised."""
        detail = " ".join(_first_line(exc).split())[:300]
        return DataError(f"{self.path} cannot be read as {_kind(self.path.name.lower())} "
                         f"({type(exc).__name__}: {detail}); is the file complete, and does its "
                         "extension match its content?")

    def _open(self, stack: ExitStack, state: _State) -> str | _Source:
        """The CSV bytes: the path itself, or a `_Source` over a decompressing stream or the
        zip's one CSV."""
        name, p = self.path.name.lower(), self.path
        if name.endswith(".zip"):
            zf = stack.enter_context(zipfile.ZipFile(self._zip_checked(p)))
            csvs = [m for m in zf.namelist() if m.lower().endswith(".csv")
                    and not m.endswith("/") and not m.startswith("__MACOSX/")]
            if len(csvs) != 1:
                raise DataError(f"{p} holds {len(csvs)} CSV files {csvs[:5]}; the zip must "
                                f"hold exactly one (unzip it and point {self.key} at one CSV)")
            info = zf.getinfo(csvs[0])
            self._check_member(info)
            member = stack.enter_context(zf.open(info))
            return _Source(member, state, None)  # zipfile stops at the size checked above
        raw = stack.enter_context(open(p, "rb"))  # noqa: SIM115 - closed by the stack
        for suffix, opener in ((".gz", gzip.GzipFile), (".bz2", bz2.BZ2File),
                               (".xz", lzma.LZMAFile)):
            if name.endswith(suffix):  # Python's decompressors: their errors say what is wrong
                stream = stack.enter_context(opener(fileobj=raw) if suffix == ".gz"
                                             else opener(raw))
                return _Source(stream, state, lambda: self._ratio(state, raw.tell()))
        if name.endswith(".zst"):
            stream = stack.enter_context(pa.CompressedInputStream(pa.PythonFile(raw, "r"),
                                                                  "zstd"))
            return _Source(stream, state, lambda: self._ratio(state, raw.tell()))
        stack.close()
        return str(p)

    def _ratio(self, state: _State, packed: int) -> None:
        """DataError when the bytes handed out exceed MAX_RATIO times those read (a bomb)."""
        if _expands(state.expanded, packed):
            raise self._bomb("it", state.expanded, packed)

    def _zip_checked(self, p: Path) -> Path:
        """`p`, once its directory is small enough to be read (a zip of a million empty
        entries takes gigabytes to list)."""
        with open(p, "rb") as fh:
            end = zipfile._EndRecData(fh)  # noqa: SLF001 - the count, before listing them
        entries = end[zipfile._ECD_ENTRIES_TOTAL] if end else 0  # noqa: SLF001
        if entries > limits.MAX_ZIP_ENTRIES:
            raise DataError(f"{p} holds {entries:,} entries (at most {limits.MAX_ZIP_ENTRIES:,} "
                            "are listed); the zip must hold one CSV: unzip it and point "
                            f"{self.key} at the CSV")
        return p

    def _check_member(self, info: zipfile.ZipInfo) -> None:
        """DataError for a member that cannot or may not be read: encrypted, compressed with
        a method Python lacks, or declaring a size beyond MAX_RATIO times its compressed size."""
        if info.flag_bits & 0x1:
            raise DataError(f"{self.path}: {info.filename} is encrypted; decrypt it (unzip with "
                            f"the password) and point {self.key} at the CSV")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                      zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            raise DataError(f"{self.path}: {info.filename} is compressed with method "
                            f"{info.compress_type}, which Python cannot read (it reads stored, "
                            f"deflate, bzip2 and lzma); unzip it and point {self.key} at the CSV")
        if _expands(info.file_size, info.compress_size):
            raise self._bomb(info.filename, info.file_size, info.compress_size)

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


class _State:
    """What a `_Source` shares with the code that made it (which never holds the source
    itself, so that pyarrow's threads are its last holders): stopped, the first error, the
    bytes handed out."""

    def __init__(self) -> None:
        self.stopped = False
        self.error: BaseException | None = None
        self.expanded = 0


class _Source(io.RawIOBase):
    """A decompressing stream as pyarrow reads it: every read counts the bytes handed out and
    runs `check` (the bomb bound); a decoder's error is kept in `state` (it explains the parse
    error of what it cut short); once `state.stopped`, every read is the end of the file."""

    def __init__(self, stream, state: _State, check: Callable[[], None] | None) -> None:
        super().__init__()
        self.stream, self.state, self.check = stream, state, check

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.state.stopped:
            return b""
        try:
            data = self.stream.read(n if n is not None and n >= 0 else 1 << 22)
            data = data.to_pybytes() if isinstance(data, pa.Buffer) else bytes(data)
            self.state.expanded += len(data)
            if self.check is not None:
                self.check()
        except BaseException as exc:
            self.state.error = self.state.error or exc
            del self  # the error's traceback keeps this frame, never the source (`_released`)
            raise
        return data

    def readinto(self, b) -> int:
        try:
            data = self.read(len(b))
        except BaseException:
            del self
            raise
        b[: len(data)] = data
        return len(data)


def _text(t: pa.DataType) -> bool:
    """Whether a parquet column holds text (or bytes), plain or as a dictionary."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    return any(check(t) for check in (pa.types.is_string, pa.types.is_large_string,
                                      pa.types.is_binary, pa.types.is_large_binary))


def not_a_file(path: Path) -> str:
    """Why `path` cannot be read as a file: 'no such file', or what it is instead."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "no such file"
    kinds = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO (named pipe)",
             stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
             stat.S_IFSOCK: "a socket"}
    return (f"is {kinds.get(stat.S_IFMT(mode), 'not a regular file')}, not a file of flows (a "
            "stream is read with input=-)")


def _expands(expanded: int, packed: int) -> bool:
    """Whether `expanded` bytes from `packed` compressed ones break the bomb bound."""
    return expanded > limits.RATIO_FLOOR and expanded > limits.MAX_RATIO * max(packed, 1)


SETTLE_SECONDS = 0.2  # after a read cut short, for pyarrow's threads to drop what they read


def _released(watches: list[weakref.ref], seconds: float = 10.0, settle: bool = False) -> None:
    """Wait until pyarrow's threads have let go of a stopped `_Source` and of the row handler
    (a few ms), so that none is left calling into Python when the interpreter exits. A read
    cut short by an error leaves them blocks read ahead, whose release needs the interpreter
    too (SIGABRT at exit, about 1 run in 20 on a busy host): then `settle` waits a little more."""
    deadline = time.monotonic() + seconds
    while any(w() is not None for w in watches) and time.monotonic() < deadline:
        time.sleep(0.002)
    if settle and watches[1:]:  # a compressed read (a `_Source`) that ended in an error
        time.sleep(SETTLE_SECONDS)


def _rebatch(tables: Iterator[pa.Table], rows: int, skip: int = 0) -> Iterator[pa.Table]:
    """Tables of `rows` rows (the last one shorter), the first `skip` rows dropped; a table is
    handed out early once it holds MAX_BATCH_BYTES (rows of megabytes each: memory stays
    bounded, and no caller's result depends on where batches end)."""
    pending: list[pa.Table] = []
    have = size_ = 0
    for table in tables:
        if skip:
            drop = min(skip, table.num_rows)
            table, skip = table.slice(drop), skip - drop
        pending.append(table)
        have += table.num_rows
        size_ += table.nbytes
        while have >= rows or (have and size_ >= limits.MAX_BATCH_BYTES):
            whole = pa.concat_tables(pending)
            fit = int(limits.MAX_BATCH_BYTES * have / max(size_, 1))  # rows of that many bytes
            take = max(1, min(rows, have, fit))
            yield whole.slice(0, take)
            pending, have = [whole.slice(take)], have - take
            size_ = pending[0].nbytes if have else 0
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
        if isinstance(unraisable.exc_value, UnicodeDecodeError) and "FlowFile._reading" in where:
            return
        previous(unraisable)

    hook.ids_quiet_rows = True
    sys.unraisablehook = hook
