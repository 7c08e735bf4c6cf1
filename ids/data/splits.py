"""Train/validation/test splits of flows and the prepared data that holds them.

Split first, window second: train/val/test are contiguous blocks in flow order (or, with
`data.split=chunks`, fixed-size contiguous chunks dealt to the splits at random by `data.seed`,
each split the concatenation of its chunks in file order). Windows are built per split, so none
straddles two splits; with chunks a window MAY span two chunks of the same split (the flows
before a chunk start are then the end of that split's previous chunk, not zero padding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ids.data.distinct import Distinct, distinct_windows
from ids.data.encoding import Preprocessor
from ids.data.flows import SPLITS, DataError
from ids.data.windows import check_window, windows


@dataclass
class Split:
    X: np.ndarray  # (n, F) float32, scaled, in flow order
    y: np.ndarray  # (n,) float32 0/1
    attack: np.ndarray  # (n,) object, category strings
    rows: np.ndarray  # (n,) int64 positions in the loaded frame
    hashes: np.ndarray | None = None  # (n,) uint64 hash of each flow's raw features (copies)
    _windows: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _distinct: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def windows(self, T: int) -> np.ndarray:
        """(n, T, F) read-only strided view, cached per T (one padded copy per T)."""
        T = check_window(T, {"": len(self.X)})
        if T not in self._windows:
            self._windows[T] = windows(self.X, T)
        return self._windows[T]

    def distinct(self, T: int, labelled: bool = False) -> Distinct:
        """The distinct windows of length T (with `labelled`, distinct (window, label) pairs),
        cached per (T, labelled): see `ids.data.distinct`."""
        key = (check_window(T, {"": len(self.X)}), bool(labelled))
        if key not in self._distinct:
            self._distinct[key] = distinct_windows(self.X, key[0], self.y if labelled else None)
        return self._distinct[key]


@dataclass
class Prepared:
    train: Split
    val: Split
    test: Split
    preprocessor: Preprocessor
    feature_names: list[str]
    info: dict

    def split(self, name: str) -> Split:
        return {s: getattr(self, s) for s in SPLITS}[name]

    def sizes(self) -> dict[str, int]:
        """{split: flows}, for `check_window`."""
        return {s: len(self.split(s).y) for s in SPLITS}


def split_indices(n: int, data_cfg) -> dict[str, np.ndarray]:
    """Row positions of train/val/test: contiguous blocks, or random contiguous chunks."""
    fr = np.asarray(list(data_cfg.split_fractions), dtype=np.float64)
    fr = fr / fr.sum()
    if data_cfg.split == "contiguous":
        cut = np.round(np.cumsum(fr)[:2] * n).astype(np.int64)
        return dict(zip(SPLITS, np.split(np.arange(n, dtype=np.int64), cut), strict=True))
    if data_cfg.split != "chunks":
        raise DataError(f"data.split={data_cfg.split!r} is unknown: use contiguous or chunks")
    size = max(1, int(data_cfg.chunk_size))
    n_chunks = -(-n // size)
    if n_chunks < 3:
        raise DataError(f"data.chunk_size={size} gives {n_chunks} chunks of {n} flows; "
                        "three splits need >= 3: lower data.chunk_size")
    k = np.maximum(np.floor(fr * n_chunks).astype(np.int64), 1)
    while k.sum() < n_chunks:  # hand leftover chunks to the splits furthest below their share
        k[np.argmax(fr * n_chunks - k)] += 1
    while k.sum() > n_chunks:
        k[np.argmax(np.where(k > 1, k - fr * n_chunks, -np.inf))] -= 1
    perm = np.random.default_rng(int(data_cfg.seed)).permutation(n_chunks)
    out, start = {}, 0
    for name, kk in zip(SPLITS, k, strict=True):
        chunks = np.sort(perm[start: start + kk])
        start += kk
        out[name] = np.concatenate([np.arange(c * size, min(n, (c + 1) * size)) for c in chunks])
    return out
