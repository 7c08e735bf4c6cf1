"""Distinct windows: most NetFlow flows are copies, so compute each distinct thing once.

"Distinct" is defined on exactly what the model sees: the encoded rows of a window (the zero
rows that pad a split's first windows included), plus the label where training needs it. Ids
are exact (byte equality of the encoded float32 rows, no hashing): two windows share an id if
and only if the model cannot tell them apart.

    d = distinct_windows(split.X, T)          # scoring: one score per distinct window
    scores = d.expand(score(windows[d.first]))
    d = distinct_windows(split.X, T, split.y) # training: each distinct (window, label) once,
                                              # weighted by d.counts
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ids.data.windows import check_window


@dataclass(frozen=True)
class Distinct:
    first: np.ndarray  # (k,) int64 position of each distinct item's first occurrence, ascending
    inverse: np.ndarray  # (n,) int64 the distinct item of every position
    counts: np.ndarray  # (k,) int64 multiplicity of each distinct item

    def __len__(self) -> int:
        return len(self.first)

    @property
    def n(self) -> int:
        return len(self.inverse)

    def expand(self, values: np.ndarray) -> np.ndarray:
        """Per-distinct `values` (k, ...) back to every position (n, ...)."""
        return np.asarray(values)[self.inverse]


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, inverse, counts) of the rows of a 2-D array, by exact bytes; `first` ascending
    so that distinct items keep the order in which they first occur."""
    a = np.ascontiguousarray(a)
    rows = a.view(np.dtype((np.void, a.shape[1] * a.itemsize))).ravel()
    _, first, inverse, counts = np.unique(rows, return_index=True, return_inverse=True,
                                          return_counts=True)
    order = np.argsort(first, kind="stable")  # sorted-by-bytes -> first-occurrence order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return (first[order].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64),
            counts[order].astype(np.int64))


def row_ids(X: np.ndarray) -> tuple[np.ndarray, int]:
    """(id of every row of X, id of the all-zero padding row): equal ids <=> equal rows."""
    X = np.asarray(X)
    with_pad = np.concatenate([np.zeros((1, X.shape[1]), X.dtype), X])
    _, inverse, _ = _unique_rows(with_pad)
    return inverse[1:], int(inverse[0])


def distinct_windows(X: np.ndarray, T: int, labels: np.ndarray | None = None,
                     start: int = 0) -> Distinct:
    """The distinct windows of T consecutive rows of X (zero-padded before row 0, as
    `ids.data.windows.windows`), and with `labels` the distinct (window, label) pairs. With
    `start`, only the windows ending at rows start.. (earlier rows are their context); positions
    in the result count from `start`."""
    T = check_window(T)
    ids, pad = row_ids(X)
    if T == 1:
        keys = ids[:, None]
    else:
        padded = np.concatenate([np.full(T - 1, pad, ids.dtype), ids])
        keys = sliding_window_view(padded, T)  # (n, T) row ids
    keys = keys[int(start):]
    if labels is not None:  # one label per row of X
        labels = np.asarray(labels).astype(np.int64).reshape(-1)[int(start):]
        keys = np.column_stack([keys, labels])
    first, inverse, counts = _unique_rows(keys)
    return Distinct(first, inverse, counts)
