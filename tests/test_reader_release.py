"""A compressed read lets go of its stream at once (`ids.data.reader._released`), whether it
ends whole or in an error: the reader waited its full 10 s for a stream that its caller's frame
(or a kept decoder error's traceback) still held, on every compressed file: seconds per read,
and hours for CI's property tests."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile

import pytest

from ids.data import reader, synthetic
from ids.data.flows import read_flows

CSV = synthetic.generate(300, 1, {"Benign": 1.0, "DoS": 3.0}).to_csv(index=False).encode()


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("flows.csv", data)
    return buf.getvalue()


CASES = {
    "whole.csv.gz": (gzip.compress(CSV), None),
    "whole.csv.bz2": (bz2.compress(CSV), None),
    "whole.csv.xz": (lzma.compress(CSV), None),
    "whole.zip": (_zip(CSV), None),
    "truncated.csv.gz": (gzip.compress(CSV)[:200], reader.DataError),  # the decoder's error
    "no-flows.csv.gz": (gzip.compress(b"a,b\n1,2\n"), reader.DataError),  # an error after opening
    "ragged.csv.xz": (lzma.compress(CSV + b"1,2\n"), reader.DataError),  # a parse error
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_compressed_read_releases_its_stream_at_once(name, tmp_path, monkeypatch):
    data, error = CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    left: list[bool] = []
    original = reader._released

    def released(watches, seconds: float = 10.0, settle: bool = False) -> None:
        original(watches, seconds, settle)
        left.append(any(w() is not None for w in watches))  # still held after the wait

    monkeypatch.setattr(reader, "_released", released)
    if error is None:
        assert len(read_flows(path)) == 300
    else:
        with pytest.raises(error):
            read_flows(path)
    assert left and not any(left), f"{name}: a stream was still held when the read ended"


def test_a_column_of_bytes_that_are_not_utf8_is_a_data_error():
    """Found by the hostile-file property test (slow budget): a binary column whose bytes are
    not UTF-8 raised UnicodeDecodeError (a traceback) instead of the one-line DataError."""
    import pandas as pd

    from ids.data.flows import _columns

    df = pd.DataFrame({"IN_BYTES": pd.Series([b"\xb8883", b"12"], dtype=object)})
    with pytest.raises(reader.DataError, match="'IN_BYTES' must be numeric.*row 0"):
        _columns(df, ["IN_BYTES"])
