"""Distinct windows: most NetFlow flows are copies, so compute each distinct thing once.

"Distinct" is defined on exactly what the model sees: the encoded rows of a window (the zero
rows that pad a split's first windows included), plus the label where training needs it. Ids
are exact (byte equality of the encoded float32 rows; a hash only proposes, every window is
checked): two windows share an id if and only if the model cannot tell them apart.

    d = distinct_windows(split.X, T)          # scoring: one score per distinct window
    scores = d.expand(score(windows[d.first]))
    d = distinct_windows(split.X, T, split.y) # training: each distinct (window, label) once,
                                              # weighted by d.counts
    rows, ids, ends = split.sequence()        # a split of the prepared store (76M flows):
    d = distinct_windows(rows, T, split.y, ids=ids, ends=ends)  # memory O(flows), not O(X)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def _first_order(first, inverse, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique's (first, inverse, counts), sorted by key, renumbered in first-occurrence order
    (`first` ascending), so distinct items keep the order in which they first occur."""
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return (first[order].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64),
            counts[order].astype(np.int64))


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, inverse, counts) of the rows of a 2-D array, by exact bytes."""
    a = np.ascontiguousarray(a)
    rows = a.view(np.dtype((np.void, a.shape[1] * a.itemsize))).ravel()
    return _first_order(*np.unique(rows, return_index=True, return_inverse=True,
                                   return_counts=True)[1:])


def row_ids(X: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(id of every row of X, id of the all-zero padding row): equal ids <=> equal rows (their
    bytes). With `ids`, X is a table (the prepared store's distinct flows, memory-mapped) and
    the rows are X[ids]: only the table rows they name are read.

    Memory grows with the rows, never with X: rows are read a chunk at a time, hashed to 64
    bits, and every row is checked against the first row with its hash (a collision falls back
    to sorting the rows' bytes). A copy of a 24.75M-row table (7.5 GB) sorted whole took 24 GB."""
    X = np.asarray(X)
    used = np.arange(len(X), dtype=np.int64) if ids is None else np.unique(np.asarray(ids))
    pos = np.concatenate([np.full(1, -1, np.int64), used])  # -1: the padding row
    h = np.empty(len(pos), np.uint64)
    for lo in range(0, len(pos), _CHUNK):
        h[lo: lo + _CHUNK] = _row_hash(_rows(X, pos[lo: lo + _CHUNK]))
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    rep = first[inverse]  # the first row with each row's hash
    other = np.flatnonzero(rep != np.arange(len(pos)))
    for lo in range(0, len(other), _CHUNK):
        sel = other[lo: lo + _CHUNK]
        if not np.array_equal(_rows(X, pos[sel]).view(np.uint8),
                              _rows(X, pos[rep[sel]]).view(np.uint8)):
            return _exact_row_ids(X, ids)  # a collision: the exact path
    pad, mine = int(inverse[0]), inverse[1:]
    return (mine if ids is None else mine[np.searchsorted(used, np.asarray(ids))]), pad


def _rows(X: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Rows `pos` of X (ascending reads), a zero row where pos is -1; C-contiguous."""
    out = np.zeros((len(pos), X.shape[1]), X.dtype)
    real = pos >= 0
    out[real] = X[pos[real]]
    return out


def _row_hash(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes (a multiply-add over its 8-byte words, then
    splitmix64's finaliser)."""
    b = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), -1)
    if b.shape[1] % 8:
        b = np.pad(b, ((0, 0), (0, 8 - b.shape[1] % 8)))
    words = np.ascontiguousarray(np.ascontiguousarray(b).view(np.uint64).T)
    h = np.full(len(rows), 0x243F6A8885A308D3, np.uint64)
    with np.errstate(over="ignore"):
        for w in words:
            h = (h ^ w) * np.uint64(0x100000001B3) + np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def _exact_row_ids(X: np.ndarray, ids: np.ndarray | None) -> tuple[np.ndarray, int]:
    """`row_ids` by sorting every row's bytes (a copy of X): only after a hash collision."""
    with_pad = np.concatenate([np.zeros((1, X.shape[1]), X.dtype), X])
    _, inverse, _ = _unique_rows(with_pad)
    table_ids, pad = inverse[1:], int(inverse[0])
    return (table_ids if ids is None else table_ids[np.asarray(ids)]), pad


_CHUNK = 1 << 20  # windows per step of building and checking keys


def distinct_windows(X: np.ndarray, T: int, labels: np.ndarray | None = None, *,
                     ids: np.ndarray | None = None, ends: np.ndarray | None = None,
                     start: int = 0, starts: np.ndarray | None = None) -> Distinct:
    """The distinct windows of T consecutive rows of X (zero-padded before row 0, as
    `ids.data.windows.windows`), and with `labels` the distinct (window, label) pairs. With
    `ids` the rows are X[ids] (`row_ids`); with `ends` only the windows ending at those
    positions count (a training subset; `labels` then has one label per end); `starts` (one
    per window, as `ids.data.windows.Windows` takes it) pads what lies before a window's
    segment.

    Memory grows with the number of windows, not with T x features: a window is its T row ids
    (plus the label), hashed to 64 bits; every window is then checked against the first one
    with its hash, so the ids stay exact (a hash collision falls back to comparing the keys)."""
    T = check_window(T)
    if ids is not None and ends is not None and len(ends) * T < len(ids):
        # a subset's windows read few of the sequence's rows: identify only those
        need = np.unique(np.maximum(np.asarray(ends, np.int64)[:, None] + np.arange(1 - T, 1),
                                    0))
        rid = np.zeros(len(ids), np.int64)
        rid[need], pad = row_ids(X, np.asarray(ids)[need])
    else:
        rid, pad = row_ids(X, ids)
    pos = np.arange(len(rid), dtype=np.int64) if ends is None else np.asarray(ends, np.int64)
    lab = None if labels is None else np.asarray(labels).astype(np.int64).reshape(-1)
    seg = None if starts is None else np.asarray(starts, np.int64)
    if start:
        pos, lab = pos[int(start):], None if lab is None else lab[int(start):]
        seg = None if seg is None else seg[int(start):]

    if len(pos) == 1:  # one window (a streamed flow, a one-flow request): distinct already
        one = np.zeros(1, np.int64)
        return Distinct(one, one.copy(), np.ones(1, np.int64))

    def keys(sel: np.ndarray) -> np.ndarray:  # (b, T [+ 1]) row ids [and label] of windows
        steps = pos[sel][:, None] + np.arange(1 - T, 1)
        first = 0 if seg is None else seg[sel][:, None]
        k = np.where(steps < first, pad, rid[np.maximum(steps, 0)])
        return k if lab is None else np.column_stack([k, lab[sel]])

    if T == 1 and lab is None:  # a window is one row: its id is the key
        return Distinct(*_first_order(*np.unique(rid[pos], return_index=True,
                                                 return_inverse=True, return_counts=True)[1:]))
    h = np.empty(len(pos), np.uint64)
    for lo in range(0, len(pos), _CHUNK):
        h[lo: lo + _CHUNK] = mix(keys(np.arange(lo, min(lo + _CHUNK, len(pos)))))
    first, inverse, counts = _first_order(*np.unique(h, return_index=True, return_inverse=True,
                                                     return_counts=True)[1:])
    del h
    for lo in range(0, len(pos), _CHUNK):
        sel = np.arange(lo, min(lo + _CHUNK, len(pos)))
        if not np.array_equal(keys(sel), keys(first[inverse[sel]])):  # a collision: exact path
            return Distinct(*_unique_rows(keys(np.arange(len(pos)))))
    return Distinct(first, inverse, counts)


def mix(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of an int64 matrix (splitmix64 steps over its columns)."""
    h = np.full(len(keys), 0x243F6A8885A308D3, np.uint64)
    with np.errstate(over="ignore"):
        for col in keys.T.astype(np.uint64):
            h = (h ^ col) * np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
    return h
