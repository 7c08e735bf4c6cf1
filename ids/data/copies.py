"""Copies of training flows: which val/test flows the model may simply have memorised.

NF-BoT-IoT is full of identical flows. A test flow whose feature vector (exactly the columns the
model sees, before encoding: identifiers only with `data.keep_identifiers`, never Label/Attack)
also occurs in the training split is a look-up, not a generalisation. Rows are hashed once
(`pandas.util.hash_pandas_object`, 64 bits: a collision among 10^6 flows has odds ~1e-8), and
membership is a hash-set test, so 600k flows take a fraction of a second, never a pairwise scan.

A window model classifies the flow at the end of its window: that flow decides whether the
window counts as a copy ("unseen" = the classified flow is not a copy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ids.data.flows import ATTACK, ID_COLUMNS, LABEL, TIME_COLUMNS

MIN_CLASS_FLOWS = 30  # below this many flows of a class, a rate on the unseen part is not shown


def feature_columns(df: pd.DataFrame, keep_identifiers: bool) -> list[str]:
    """The raw columns the model reads: every validated column but Label/Attack and the times
    (NF-v3), and the identifiers only when they are kept as features."""
    return [c for c in df.columns if c not in (LABEL, ATTACK, *TIME_COLUMNS)
            and (keep_identifiers or c not in ID_COLUMNS)]


def row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """uint64 hash per row of `columns` (equal rows <-> equal hashes, up to collisions).
    Numbers are hashed as float64 (+0.0, so -0.0 == 0.0): an int column of one file and a
    float column of another hash alike."""
    sub = pd.DataFrame({c: df[c].to_numpy(np.float64) + 0.0
                        if pd.api.types.is_numeric_dtype(df[c]) else df[c].to_numpy()
                        for c in columns}, copy=False)  # one array per column: no block copies
    return pd.util.hash_pandas_object(sub, index=False).to_numpy(np.uint64)


class KeyIndex:
    """Distinct uint64 keys, numbered 0, 1, 2, ... in the order they are first seen, grown
    batch by batch: pass one over a file numbers its distinct flows by feature hash and finds
    exact duplicates (`data.dedup=exact`) with it, in memory that grows with the distinct keys
    only (sorted arrays; each batch is merged in with one `np.insert` pass)."""

    def __init__(self) -> None:
        self.keys = np.empty(0, np.uint64)
        self.numbers = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the number of every key, the positions in `keys` of the keys never seen before,
        ascending: one position per new key, its first occurrence)."""
        uniq, first, inverse = np.unique(np.asarray(keys, np.uint64), return_index=True,
                                         return_inverse=True)
        pos = np.searchsorted(self.keys, uniq)
        seen = pos < len(self.keys)
        seen[seen] = self.keys[pos[seen]] == uniq[seen]
        numbers = np.empty(len(uniq), np.int64)
        numbers[seen] = self.numbers[pos[seen]]
        new = np.flatnonzero(~seen)
        by_first = new[np.argsort(first[new], kind="stable")]
        numbers[by_first] = np.arange(len(self.keys), len(self.keys) + len(new))
        self.keys = np.insert(self.keys, pos[new], uniq[new])
        self.numbers = np.insert(self.numbers, pos[new], numbers[new])
        return numbers[inverse.reshape(-1)], first[by_first]


def dedup_keys(flow_numbers: np.ndarray, labels, attack_codes) -> np.ndarray:
    """Exact-duplicate keys (`data.dedup=exact`): equal for flows with the same features (their
    `KeyIndex` number), Label and Attack category code (< 2**15)."""
    return ((np.asarray(flow_numbers).astype(np.uint64) << np.uint64(16))
            | (np.asarray(attack_codes).astype(np.uint64) << np.uint64(1))
            | np.asarray(labels).astype(np.uint64))


class TrainIndex:
    """The distinct feature hashes of a training split and which labels each one carries: built
    once (one hash-table pass), then every membership test is a look-up."""

    def __init__(self, train_hashes: np.ndarray, train_y=None) -> None:
        codes, uniques = pd.factorize(np.asarray(train_hashes, dtype=np.uint64))
        self.index = pd.Index(uniques)
        self.has = {}
        if train_y is not None:
            y = np.asarray(train_y).astype(bool)
            for label, rows in ((1, y), (0, ~y)):
                flag = np.zeros(len(uniques) + 1, dtype=bool)  # last slot: "not in train"
                flag[codes[rows]] = True
                self.has[label] = flag

    def positions(self, hashes: np.ndarray) -> np.ndarray:
        return self.index.get_indexer(np.asarray(hashes, dtype=np.uint64))

    def copies(self, hashes: np.ndarray) -> np.ndarray:
        """True where a flow's feature vector occurs in the training split."""
        return self.positions(hashes) >= 0

    def stats(self, hashes: np.ndarray, y) -> dict:
        """Share of flows that are copies of a training flow, overall and per class, and the
        number of conflicting copies (same features in train with the other label)."""
        y = np.asarray(y).astype(bool)
        pos = self.positions(hashes)
        copies = pos >= 0
        conflicting = (copies & ~y & self.has[1][pos]) | (copies & y & self.has[0][pos])
        n_b, n_a = int((~y).sum()), int(y.sum())

        def share(num, den: int) -> float:
            return float(num / den) if den else 0.0

        return {"n": len(y), "copies": int(copies.sum()),
                "copy_share": share(copies.sum(), len(y)),
                "benign": n_b, "benign_copies": int(copies[~y].sum()),
                "copy_share_benign": share(copies[~y].sum(), n_b),
                "attack": n_a, "attack_copies": int(copies[y].sum()),
                "copy_share_attack": share(copies[y].sum(), n_a),
                "conflicting": int(conflicting.sum()),
                "unseen": int((~copies).sum()), "unseen_benign": int((~copies & ~y).sum()),
                "unseen_attack": int((~copies & y).sum())}


def copy_mask(train_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """True where a flow's feature vector occurs in the training split."""
    return TrainIndex(train_hashes).copies(hashes)


def overlap_stats(train_hashes: np.ndarray, train_y, hashes: np.ndarray, y) -> dict:
    """`TrainIndex.stats` for one split."""
    return TrainIndex(train_hashes, train_y).stats(hashes, y)


def overlap_line(name: str, s: dict) -> str:
    """One sentence for the report."""
    return (f"{name}: {s['copies']:,} of {s['n']:,} flows ({100 * s['copy_share']:.1f} %) are "
            f"copies of a training flow (benign {s['benign_copies']:,}/{s['benign']:,} = "
            f"{100 * s['copy_share_benign']:.1f} %, attack {s['attack_copies']:,}/{s['attack']:,}"
            f" = {100 * s['copy_share_attack']:.1f} %), {s['conflicting']:,} of them with the "
            f"other label; unseen: {s['unseen']:,} ({s['unseen_benign']:,} benign)")


def unseen_mask(train, target) -> np.ndarray:
    """True for the flows of split `target` whose features do not occur in split `train`
    (`ids.data.splits.Split`s carrying `hashes`); all True when hashes are missing."""
    if train.hashes is None or target.hashes is None:
        return np.ones(len(target.y), dtype=bool)
    return ~copy_mask(train.hashes, target.hashes)
