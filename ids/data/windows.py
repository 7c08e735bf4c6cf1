"""Windows of consecutive flows, and the one check of a window length against the data.

The sample for flow i is flows i-T+1..i of the same split (T = `data.window`); the first T-1
flows of a split are zero-padded, so every flow gets exactly one prediction. A window is a
zero-copy strided view over one padded copy of the split.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ids.data.flows import DataError


def check_window(T: int, sizes: dict[str, int] | None = None) -> int:
    """T as an int; DataError if T < 1 or longer than the smallest of `sizes` ({split: flows})."""
    T = int(T)
    if T < 1:
        raise DataError(f"data.window must be >= 1, got {T}")
    if sizes:
        name = min(sizes, key=sizes.get)
        if T > sizes[name]:
            where = f"the {name} split" if name else "the split"
            raise DataError(f"data.window={T} is longer than {where} ({sizes[name]} flows): "
                            "lower data.window or use more flows")
    return T


def windows(X: np.ndarray, T: int) -> np.ndarray:
    """(n, T, F) read-only view: windows(X, T)[i] == X[i-T+1..i], zero rows before index 0."""
    T = check_window(T)
    n, f = X.shape
    padded = np.zeros((n + T - 1, f), dtype=X.dtype)
    padded[T - 1:] = X
    if len(padded) < T:  # no flows at all
        return np.zeros((0, T, f), X.dtype)
    return sliding_window_view(padded, T, axis=0).transpose(0, 2, 1)


class Windows:
    """(n, T, F) windows gathered on demand, for splits that are not one array in memory (the
    prepared store's memory maps, a training subset). Window j ends at position `ends[j]` of
    the split's flow sequence, whose flows are the rows `ids` of `table` (all positions and the
    rows themselves when None): the same windows as `windows(table[ids], T)[ends]`. Indexing
    with a slice or an index array gathers just those windows, so a split larger than memory
    trains and scores batch by batch.

    `starts[j]` (optional, one per window) is the first position of the segment window j lies
    in: positions before it are zero padding, as before position 0. Segments are what keep a
    window inside its cross-validation fold (`ids.data.folds`): a window never reads a flow
    of another segment."""

    def __init__(self, table: np.ndarray, T: int, ids: np.ndarray | None = None,
                 ends: np.ndarray | None = None, starts: np.ndarray | None = None) -> None:
        self.table, self.T, self.ids, self.ends = table, check_window(T), ids, ends
        self.starts = starts
        n = len(ends) if ends is not None else len(ids) if ids is not None else len(table)
        self.shape = (n, self.T, table.shape[1])
        self.dtype, self.ndim = table.dtype, 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        if self.ends is not None:
            pos = np.asarray(self.ends[key])
        elif isinstance(key, slice):  # scoring in order: no index array of the whole split
            pos = np.arange(*key.indices(len(self)))
        else:
            pos = np.asarray(key, np.int64)
            pos = np.where(pos < 0, pos + len(self), pos)
        steps = np.asarray(pos, np.int64)[:, None] + np.arange(1 - self.T, 1)  # (b, T)
        if self.starts is None:
            before = steps < 0  # zero padding before the split's first flow
        else:  # ... and before the first flow of the window's segment
            before = steps < np.asarray(self.starts[key], np.int64).reshape(-1, 1)
        rows = np.maximum(steps, 0)
        if self.ids is not None:
            rows = np.asarray(self.ids[rows.ravel()]).reshape(rows.shape)
        out = np.asarray(self.table[rows.ravel()]).reshape(*rows.shape, self.shape[2])
        out[before] = 0
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)
