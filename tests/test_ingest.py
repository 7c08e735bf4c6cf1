"""The one reader of flow files (ids.data.reader) in tiny batches against one batch for the whole
file: the same frames, the same column types, and for every file case of the bad-input
table (docs/guide/bad-input.md) the same one-line error with the same row numbers."""

from __future__ import annotations

import gzip
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from test_bad_input import CASES

from ids.data import synthetic
from ids.data.flows import DataError, read_flows, validate_frame
from ids.data.reader import FlowFile

WHOLE = 10**9  # rows per batch: the whole file at once


def _flows(n: int = 400, seed: int = 3) -> pd.DataFrame:
    return synthetic.generate(n, seed, {"Benign": 1, "DoS": 1, "Reconnaissance": 2})


def _error(fn) -> str | None:
    """The error's line; how many rows share the problem is counted in the batch holding the
    first one (the whole file for one batch), so that number is left out."""
    try:
        fn()
    except DataError as exc:
        return re.sub(r"\(\d+ such rows\)|in \d+ rows", "N rows", str(exc))
    return None


def _read(path, batch_rows: int, require_label: bool = False, block_bytes: int = 1 << 22):
    """What ids.predict (training: `require_label`) does with a file: every batch validated,
    errors prefixed by the file."""
    file = FlowFile(path, "data.path" if require_label else "input", block_bytes)
    out = []
    for raw in file.batches(batch_rows):
        try:
            out.append(validate_frame(raw, require_label))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from exc
    return out


FILE_CASES = [name for name, case in CASES.items()  # the cases about the input file's content
              if case.module == "ids.predict" and not case.limits and not name.startswith(
                  ("model", "output", "password", "NaN model", "score memo", "input", "partial",
                   "unknown model", "zip of a 60 MB line", "unreachable tracking",
                   "store lock file", "server port"))]  # "zip": its error names the block size


@pytest.mark.parametrize("name", FILE_CASES)
@pytest.mark.parametrize("require_label", [False, True], ids=["predict", "training"])
def test_each_bad_input_case_says_the_same_in_tiny_batches(name, require_label, tmp_path):
    path = CASES[name].make(tmp_path)
    tiny = _error(lambda: _read(path, 7, require_label, block_bytes=1 << 12))
    whole = _error(lambda: _read(path, WHOLE, require_label))
    assert tiny == whole
    if name == "header only":  # no batch at all: the caller says there are no flows
        assert tiny is None and "no flows" in _error(lambda: read_flows(path, batch_rows=7))
    elif CASES[name].code == 2 or (require_label and name == "empty Label column"):
        assert tiny is not None and all(f in tiny for f in CASES[name].expect
                                        if "scored" not in f), tiny
    if require_label and name != "header only":  # training reads them alike (`read_flows`)
        assert _error(lambda: read_flows(path, batch_rows=7)) == tiny


def _same(a: list[pd.DataFrame], b: list[pd.DataFrame]) -> None:
    pd.testing.assert_frame_equal(pd.concat(a, ignore_index=True), pd.concat(b, ignore_index=True))


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip", ".parquet", ".csv.bz2", ".csv.xz"])
def test_every_format_reads_the_same_in_tiny_batches(suffix, tmp_path):
    df = _flows()
    path = tmp_path / f"flows{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("flows/", "")
            zf.writestr("flows/flows.csv", df.to_csv(index=False))
    elif suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    tiny = _read(path, 7)
    assert [len(f) for f in tiny[:-1]] == [7] * (len(tiny) - 1)
    _same(tiny, _read(path, WHOLE))
    pd.testing.assert_frame_equal(read_flows(path, batch_rows=7), validate_frame(df))
    assert len(read_flows(path, max_rows=50, batch_rows=7)) == 50


def test_rows_are_counted_from_the_file_start(tmp_path):
    path = tmp_path / "flows.csv"
    _flows().to_csv(path, index=False)
    starts = [int(f.index[0]) for f in FlowFile(path).batches(64)]
    assert starts == list(range(0, 400, 64))


def _late(tmp_path, value, row: int = 3000, column: str = "FLOW_DURATION_MILLISECONDS"):
    """A file whose `column` is whole numbers for its first blocks and `value` at `row`."""
    df = _flows(4000).astype({column: object})
    df.loc[row, column] = value
    path = tmp_path / "late.csv"
    df.to_csv(path, index=False)
    return path, df


def test_a_column_wider_after_the_first_block_gets_the_whole_files_type(tmp_path):
    path, df = _late(tmp_path, 12.5)
    file = FlowFile(path, block_bytes=1 << 12)  # ~40 rows per block: types from the first
    parts = [validate_frame(f) for f in file.batches(100)]
    assert file.widened_late and str(file.types["FLOW_DURATION_MILLISECONDS"]) == "double"
    whole = read_flows(path)  # one batch: the dtypes of reading the file at once
    assert whole["FLOW_DURATION_MILLISECONDS"].dtype == np.float64
    assert whole.loc[3000, "FLOW_DURATION_MILLISECONDS"] == 12.5
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


@pytest.mark.parametrize("value,fragment", [("lots", "holds 'lots'"), ("inf", "1 infinite")])
def test_a_bad_value_after_the_first_block_names_its_row(tmp_path, value, fragment):
    path, _ = _late(tmp_path, value, column="IN_BYTES")
    tiny = _error(lambda: _read(path, 100, block_bytes=1 << 12))
    assert tiny == _error(lambda: _read(path, WHOLE)) and fragment in tiny
    assert "row 3000 " in tiny and "line 3002" in tiny if value == "lots" else "row 3000 " in tiny


def test_a_ragged_line_late_in_the_file_is_named_by_its_line(tmp_path):
    path = tmp_path / "ragged.csv.gz"
    lines = _flows(4000).to_csv(index=False).splitlines()
    lines[3001] += ",extra"  # line 3002
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    for batch, block in ((7, 1 << 12), (WHOLE, 1 << 22)):
        msg = _error(lambda b=batch, k=block: _read(path, b, block_bytes=k))
        assert "is not a readable CSV (Expected 14 fields in line 3002, saw 15)" in msg, msg
