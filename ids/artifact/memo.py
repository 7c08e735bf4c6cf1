"""Scores of windows already seen, kept across the chunks of a file, the batches of a stream
and the requests of a server: NetFlow repeats itself over a whole capture (a flood is the same
flow thousands of times), not only within one chunk, so a window scored once is looked up in
every later call instead of computed again.

Exact, like `ids.data.distinct`: a 64-bit hash proposes a stored window and the stored bytes
are compared with the window's, so a hit is a window the model cannot tell from the stored
one. Bounded: at most `max_bytes` (windows, hashes, scores and the index together); the oldest
entries make room for new ones. What a call gets back does not depend on what is stored beyond
the last bit: a stored score was computed by the same network (`predict_proba`, whose scores do
not depend on the batch beyond ~6e-8, `tests/test_scoring_agreement.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from ids.config import ConfigError
from ids.data.distinct import mix

MEMO_MB = 256  # default bound of a Scorer's memo
_INDEX_BYTES = 120  # a dict entry and its two ints, per stored window


@cache
def _multipliers(f: int) -> np.ndarray:
    return np.random.default_rng(0x1D5).integers(1, 2**63, size=f, dtype=np.uint64) | np.uint64(1)


def from_config(mb) -> ScoreMemo:
    """The memo of `score_memo_mb` (ids.predict, ids.serve): MB, 0 for none."""
    if int(mb) < 0:
        raise ConfigError(f"score_memo_mb must be >= 0 (0: no memo), but got {mb}")
    return ScoreMemo(int(mb) << 20)


def window_hashes(full: np.ndarray, T: int, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of the window of T rows of `full` ending at each of `ends` (rows before 0
    are zero rows, as `ids.data.windows.windows`). A row is hashed once, however many windows
    hold it: a multiply-sum of its float32 bits, then splitmix64 over the window's T rows."""
    bits = np.ascontiguousarray(full, np.float32).view(np.uint32)
    f = bits.shape[1]
    with np.errstate(over="ignore"):
        rows = (bits.astype(np.uint64) * _multipliers(f)).sum(axis=1, dtype=np.uint64)
    zero = np.uint64(0)  # a zero row's multiply-sum
    steps = np.asarray(ends, np.int64)[:, None] + np.arange(1 - T, 1)
    return mix(np.where(steps < 0, zero, rows[np.maximum(steps, 0)]))


class ScoreMemo:
    """Scores by window, for one network's windows of one shape; not thread-safe (the Scorer
    calls it under its lock)."""

    def __init__(self, max_bytes: int = MEMO_MB << 20):
        self.max_bytes = int(max_bytes)
        self.hits = self.misses = 0
        self._slot: dict[int, int] = {}  # window hash -> slot
        self._win: np.ndarray | None = None  # (capacity, T, F) uint32 bits of stored windows
        self._hash = self._score = None
        self._next = self._size = 0  # ring: next slot to write, slots in use

    def scores(self, windows: np.ndarray, hashes: Callable[[], np.ndarray],
               compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Score of each window: stored ones looked up, the rest `compute`d (one call, in order)
        and stored. `hashes()` gives the windows' hashes (`window_hashes`), asked for only when
        the memo keeps scores."""
        n = len(windows)
        if n == 0 or not self._ready(windows.shape[1:]):
            self.misses += n
            return compute(windows)
        hashes = hashes()
        bits = np.ascontiguousarray(windows, np.float32).view(np.uint32)
        get = self._slot.get
        slots = np.fromiter((get(h, -1) for h in hashes.tolist()), np.int64, n)
        cand = np.flatnonzero(slots >= 0)
        hit = np.zeros(n, bool)
        if len(cand):
            same = (self._win[slots[cand]] == bits[cand]).reshape(len(cand), -1).all(axis=1)
            hit[cand[same]] = True
        out = np.empty(n, np.float32)
        out[hit] = self._score[slots[hit]]
        miss = np.flatnonzero(~hit)
        if len(miss):
            out[miss] = computed = np.asarray(compute(windows[miss]), np.float32)
            self._store(bits[miss], hashes[miss], computed)
        self.hits += n - len(miss)
        self.misses += len(miss)
        return out

    def _ready(self, shape: tuple[int, ...]) -> bool:
        """Allocate on first use (untouched pages cost no memory); False if the bound holds no
        window of this shape."""
        if self._win is not None:
            return self._win.shape[1:] == shape
        capacity = self.max_bytes // (4 * int(np.prod(shape)) + 12 + _INDEX_BYTES)
        if capacity < 1:
            return False
        self._win = np.empty((capacity, *shape), np.uint32)
        self._hash = np.empty(capacity, np.uint64)
        self._score = np.empty(capacity, np.float32)
        return True

    def _store(self, bits: np.ndarray, hashes: np.ndarray, scores: np.ndarray) -> None:
        cap = len(self._win)
        if len(bits) > cap:  # more new windows than fit: keep the last ones
            bits, hashes, scores = bits[-cap:], hashes[-cap:], scores[-cap:]
        slots = (self._next + np.arange(len(bits))) % cap
        old = slots[slots < self._size]  # slots in use: their entries leave the index
        for h, s in zip(self._hash[old].tolist(), old.tolist(), strict=True):
            if self._slot.get(h) == s:
                del self._slot[h]
        self._win[slots], self._hash[slots], self._score[slots] = bits, hashes, scores
        self._slot.update(zip(hashes.tolist(), slots.tolist(), strict=True))
        self._next = int(slots[-1] + 1) % cap
        self._size = min(cap, self._size + len(bits))
