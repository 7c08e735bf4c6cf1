"""Scores of windows already seen, kept across the chunks of a file, the batches of a stream
and the requests of a server: NetFlow repeats itself over a whole capture (a flood is the same
flow thousands of times), not only within one chunk, so a window scored once is looked up in
every later call instead of computed again.

Exact, like `ids.data.distinct`: every row is known by an id that only byte-equal rows share (a
64-bit hash proposes a known row, its bytes are compared), and a window by the ids of its T rows
(a hash of them proposes a stored window, the ids are compared), so a hit is a window the model
cannot tell from the stored one. Bounded: at most `max_bytes` (rows, windows, scores and their
indexes together); the oldest windows make room for new ones. What a call gets back does not
depend on what is stored beyond the last bit: a stored score was computed by the same network
(`predict_proba`, whose scores do not depend on the batch beyond ~6e-8,
`tests/test_scoring_agreement.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from ids.config import ConfigError, memory_budget
from ids.data.distinct import mix

MEMO_MB = 256  # default bound of a Scorer's memo
_INDEX_BYTES = 120  # a dict entry and its two ints, per stored window


@cache
def _multipliers(f: int) -> np.ndarray:
    return np.random.default_rng(0x1D5).integers(1, 2**63, size=f, dtype=np.uint64) | np.uint64(1)


def from_config(mb) -> ScoreMemo:
    """The memo of `score_memo_mb` (ids.predict, ids.serve): MB, 0 for none; at most half the
    memory available here (its tables are allocated whole on first use)."""
    if int(mb) < 0:
        raise ConfigError(f"score_memo_mb must be >= 0 (0: no memo), but got {mb}")
    have = memory_budget()
    if int(mb) << 20 > have // 2:
        raise ConfigError(f"score_memo_mb={mb} asks for more than half the "
                          f"{have / 2**20:,.0f} MB of memory available here; use at most "
                          f"{have // 2 >> 20:,} (0: no memo)")
    return ScoreMemo(int(mb) << 20)


def _row_hashes(bits: np.ndarray) -> np.ndarray:
    """A 64-bit multiply-sum of each row's float32 bits (a zero row hashes to 0)."""
    with np.errstate(over="ignore"):
        return (bits.astype(np.uint64) * _multipliers(bits.shape[1])).sum(axis=1, dtype=np.uint64)


class ScoreMemo:
    """Scores by window, for one network's windows of one shape; not thread-safe (the Scorer
    calls it under its lock).

    Compact, because flows repeat more than windows do: every distinct row (flow) seen is kept
    once in a row table, and a window is stored as the T ids of its rows (T int32) with its
    score, so a stored window costs ~170 bytes whatever the number of features. A quarter of
    `max_bytes` holds rows, the rest windows; when the row table is full, all is forgotten."""

    def __init__(self, max_bytes: int = MEMO_MB << 20):
        self.max_bytes = int(max_bytes)
        self.hits = self.misses = 0
        self._shape: tuple[int, int] | None = None  # (T, F) of the windows
        self._forget()

    def scores(self, full: np.ndarray, ends: np.ndarray, T: int,
               compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Score of the window of T rows of `full` ending at each of `ends` (rows before 0 are
        zero rows, as `ids.data.windows.windows`): stored ones looked up, the others computed
        by `compute(their ends)` (one call, in order) and stored."""
        ends = np.asarray(ends, np.int64)
        n = len(ends)
        keys = self._keys(full, ends, T) if n and self._ready(T, full.shape[1]) else None
        if keys is None:  # no memo, or no exact row ids for this call (a hash collision)
            self.misses += n
            return np.asarray(compute(ends), np.float32)
        hashes = mix(keys)
        get = self._slot.get
        slots = np.fromiter((get(h, -1) for h in hashes.tolist()), np.int64, n)
        cand = np.flatnonzero(slots >= 0)
        hit = np.zeros(n, bool)
        hit[cand[(self._key[slots[cand]] == keys[cand]).all(axis=1)]] = True
        out = np.empty(n, np.float32)
        out[hit] = self._score[slots[hit]]
        miss = np.flatnonzero(~hit)
        if len(miss):
            out[miss] = computed = np.asarray(compute(ends[miss]), np.float32)
            self._store(keys[miss], hashes[miss], computed)
        self.hits += n - len(miss)
        self.misses += len(miss)
        return out

    def _forget(self) -> None:
        self._row_id: dict[int, int] = {}  # row hash -> row id (0: the zero row)
        self._slot: dict[int, int] = {}  # window hash -> slot
        self._rows = self._key = self._hash = self._score = None
        self._n_rows = self._next = self._size = 0  # rows known; window ring: next slot, used

    def _ready(self, T: int, f: int) -> bool:
        """Allocate on first use (untouched pages cost no memory); False if the bound holds no
        window of this shape."""
        if self._shape is not None and self._rows is not None:
            return self._shape == (T, f)
        rows = self.max_bytes // 4 // (4 * f + _INDEX_BYTES)
        windows = (self.max_bytes - self.max_bytes // 4) // (4 * T + 12 + _INDEX_BYTES)
        if rows < 2 or windows < 1:
            return False
        self._shape = (T, f)
        self._rows = np.empty((rows, f), np.uint32)
        self._rows[0] = 0
        self._row_id[0] = 0
        self._n_rows = 1
        self._key = np.empty((windows, T), np.int32)
        self._hash = np.empty(windows, np.uint64)
        self._score = np.empty(windows, np.float32)
        return True

    def _keys(self, full: np.ndarray, ends: np.ndarray, T: int) -> np.ndarray | None:
        """(n, T) row ids of each window, exact; None when a hash stands for two rows."""
        ids = self._row_ids(np.ascontiguousarray(full, np.float32).view(np.uint32))
        if ids is None:
            return None
        steps = ends[:, None] + np.arange(1 - T, 1)
        return np.where(steps < 0, 0, ids[np.maximum(steps, 0)]).astype(np.int32)

    def _row_ids(self, bits: np.ndarray) -> np.ndarray | None:
        hashes, first, inverse = np.unique(_row_hashes(bits), return_index=True,
                                           return_inverse=True)
        inverse = inverse.reshape(-1)
        if not np.array_equal(bits, bits[first[inverse]]):  # two rows of this call, one hash
            return None
        get = self._row_id.get
        ids = np.fromiter((get(h, -1) for h in hashes.tolist()), np.int64, len(hashes))
        known = np.flatnonzero(ids >= 0)
        if not np.array_equal(self._rows[ids[known]], bits[first[known]]):  # a stored row
            return None
        new = np.flatnonzero(ids < 0)
        if self._n_rows + len(new) > len(self._rows):  # the row table is full: start again
            if len(hashes) + 1 > len(self._rows):
                return None  # this call alone has more distinct rows than the table holds
            self._forget()
            self._ready(*self._shape)
            return self._row_ids(bits)
        ids[new] = self._n_rows + np.arange(len(new))
        self._rows[ids[new]] = bits[first[new]]
        self._row_id.update(zip(hashes[new].tolist(), ids[new].tolist(), strict=True))
        self._n_rows += len(new)
        return ids[inverse]

    def _store(self, keys: np.ndarray, hashes: np.ndarray, scores: np.ndarray) -> None:
        cap = len(self._key)
        if len(keys) > cap:  # more new windows than fit: keep the last ones
            keys, hashes, scores = keys[-cap:], hashes[-cap:], scores[-cap:]
        slots = (self._next + np.arange(len(keys))) % cap
        old = slots[slots < self._size]  # slots in use: their entries leave the index
        for h, s in zip(self._hash[old].tolist(), old.tolist(), strict=True):
            if self._slot.get(h) == s:
                del self._slot[h]
        self._key[slots], self._hash[slots], self._score[slots] = keys, hashes, scores
        self._slot.update(zip(hashes.tolist(), slots.tolist(), strict=True))
        self._next = int(slots[-1] + 1) % cap
        self._size = min(cap, self._size + len(keys))
