"""What file and stream scoring share: the flows carried across reads, the columns passed on.

A flow's window holds the `window - 1` flows before it, so the last transformed rows of one
read are the context of the next; the output keeps the flow's position, its identifiers and
its ground truth when the input has them.
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd

from ids.data.flows import ATTACK, ID_COLUMNS, LABEL


def carry(context: np.ndarray | None, X: np.ndarray, rows: int) -> np.ndarray | None:
    """The last `rows` transformed flows seen so far (the context of the next block)."""
    if rows == 0:
        return None
    seen = X if context is None else np.concatenate([context, X])
    return seen[-rows:].copy()


def passthrough(raw: pd.DataFrame, start: int, **extra) -> pd.DataFrame:
    """The output's leading columns: the flow's position from `start`, then the identifiers and
    ground truth `raw` has (names trimmed, values as read), then `extra` (the scores). One
    frame built from column arrays: a streamed flow pays for this on every line."""
    names = {str(c).strip(): c for c in raw.columns}  # unique: validate_frame checked them
    cols: dict = {"flow": np.arange(start, start + len(raw), dtype=np.int64)}
    cols.update({c: raw[names[c]].array for c in ID_COLUMNS + [LABEL, ATTACK] if c in names})
    cols.update(extra)
    return pd.DataFrame(cols, copy=False)


def write_csv(part: pd.DataFrame, fh, header: bool) -> None:
    """`part` as CSV lines on `fh`. A text cell holding a carriage return (an identifier read
    from parquet can hold anything) would split its line for every CSV reader, and pandas
    quotes only the delimiter, quote and newline: such a part has every text cell quoted."""
    text = part.select_dtypes(include="object")
    cr = any("\r" in "".join(map(str, text[c].to_numpy())) for c in text.columns)  # one C scan
    part.to_csv(fh, header=header, index=False,
                quoting=csv.QUOTE_NONNUMERIC if cr else csv.QUOTE_MINIMAL)
