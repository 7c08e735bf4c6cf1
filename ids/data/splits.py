"""Train/validation/test splits of flows and the prepared data that holds them.

Split first, window second: train/val/test are contiguous blocks in flow order (time order for
NF-v3 flows, `data.order`), or, with
`data.split=chunks`, fixed-size contiguous chunks dealt to the splits at random by `data.seed`,
each split the concatenation of its chunks in file order). Windows are built per split, so none
straddles two splits; with chunks a window MAY span two chunks of the same split (the flows
before a chunk start are then the end of that split's previous chunk, not zero padding).
With `data.window_by=host|pair` (`Split.grouped`) a window holds the previous flows of the
same source (and destination) within the split instead of the previous rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ids.data.distinct import Distinct, distinct_windows
from ids.data.encoding import Preprocessor
from ids.data.flows import SPLITS, DataError
from ids.data.windows import Windows, check_window, windows


class Split:
    """One split's flows in flow order: labels `y` (float32 0/1), categories `attack`, file
    `rows`, feature `hashes` (copies), encoded rows `X` (float32, scaled) and their `windows`.

    In memory, `X` is an (n, F) array and `windows(T)` a read-only strided view over one
    padded copy. From the prepared store (`Split.stored`, `ids.data.cache`) a split is the
    table of distinct encoded flows (memory-mapped) and the table row of each flow: `X`,
    `attack` and `hashes` are gathered on first use, and `windows(T)` gathers the windows of
    each batch (`ids.data.windows.Windows`), so a split larger than memory trains and scores.
    `select(positions)` keeps some flows (a training subset) whose windows still see the flows
    before them in the whole split, or only those of their segment (`starts`: cross-validation
    folds, `ids.data.folds`); `concat` joins whole splits into one flow sequence.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, attack: np.ndarray, rows: np.ndarray,
                 hashes: np.ndarray | None = None) -> None:
        self.y, self.rows = y, rows  # (n,) float32 0/1; (n,) int64 row in the file
        self._table, self._ids, self._ends = X, None, None
        self._attack, self._codes, self._categories = attack, None, None
        self._hashes, self._table_hashes = hashes, None
        self._starts = None  # (n,) first sequence position of each flow's segment, or None
        self._windows: dict = {}
        self._distinct: dict = {}

    @classmethod
    def stored(cls, table: np.ndarray, ids: np.ndarray, y: np.ndarray, codes: np.ndarray,
               categories: list[str], rows: np.ndarray, table_hashes: np.ndarray) -> Split:
        """A split of the prepared store: flow i is row `ids[i]` of `table` (k, F), its
        category `categories[codes[i]]`, its feature hash `table_hashes[ids[i]]`."""
        split = cls(table, y, None, rows)
        split._ids, split._codes, split._categories = ids, codes, list(categories)
        split._table_hashes = table_hashes
        return split

    def select(self, positions: np.ndarray, starts: np.ndarray | None = None) -> Split:
        """The flows at `positions` (ascending); their windows keep the context before them,
        back to `starts` (one per position: the first position of its segment; earlier flows
        are zero padding) when given, else as far as this split's own windows reach."""
        pos = np.asarray(positions, np.int64)
        if starts is not None and self._ends is not None:
            raise ValueError("segments (`starts`) are set on a whole split, not on a selection")
        out = Split(self._table, self.y[pos], None, self.rows[pos])
        out._ids, out._categories, out._table_hashes = self._ids, self._categories, self._table_hashes
        out._ends = pos if self._ends is None else self._ends[pos]
        if starts is not None:
            out._starts = np.asarray(starts, np.int64).reshape(-1)
            if out._starts.shape != pos.shape or (out._starts > pos).any():
                raise ValueError("`starts` needs one segment start <= its position per position")
        elif self._starts is not None:
            out._starts = self._starts[pos]
        if self._attack is not None:
            out._attack = self.attack[pos]
        if self._codes is not None:
            out._codes = self._codes[pos]
        if self._hashes is not None:
            out._hashes = self._hashes[pos]
        return out

    def grouped(self, keys: np.ndarray, start: np.ndarray | None = None) -> Split:
        """This whole split with windows over each group's own flows (`data.window_by`): the
        window of flow i holds the T-1 flows of i's group (`keys[i]`: its source, or its
        source and destination) before it in this split, ordered by `start` time (ties, and
        no times: flow order), zero-padded before the group's first flow. Flows, labels and
        their order stay as they are; the windows never reach another split or group.

        Built from what `select` already does: the split's flows re-sequenced group by group
        (a group's flows contiguous, in time order), each flow then selected at its position
        there with its group's first position as its segment start (`starts`)."""
        if self._ends is not None or self._starts is not None:
            raise ValueError("windows are grouped on a whole split")
        n = len(self.y)
        keys = np.asarray(keys).reshape(-1)
        if len(keys) != n:
            raise ValueError(f"{len(keys)} group keys for {n} flows")
        at = np.arange(n, dtype=np.int64)
        order = (np.lexsort((at, keys)) if start is None
                 else np.lexsort((at, np.asarray(start).reshape(-1), keys)))
        where = np.empty(n, np.int64)
        where[order] = at  # each flow's position in the grouped sequence
        new = np.ones(n, bool)
        new[1:] = keys[order][1:] != keys[order][:-1]
        first = np.maximum.accumulate(np.where(new, at, 0))  # its group's first position
        if self._ids is None:
            seq = Split(np.asarray(self._table)[order], self.y[order], self.attack[order],
                        self.rows[order], None if self.hashes is None else self.hashes[order])
        else:
            seq = Split.stored(self._table, np.asarray(self._ids)[order], self.y[order],
                               np.asarray(self._codes)[order], self._categories,
                               self.rows[order], self._table_hashes)
        return seq.select(where, starts=first[where])

    @classmethod
    def concat(cls, parts: list[Split]) -> Split:
        """Whole splits joined into one flow sequence, in the given order (train then val for
        cross-validation): windows run on across the joints, as within a split."""
        if any(p._ends is not None or p._starts is not None for p in parts):
            raise ValueError("only whole splits can be joined")
        y, rows = (np.concatenate([getattr(p, k) for p in parts]) for k in ("y", "rows"))
        if all(p._ids is None for p in parts):
            hashes = None if any(p._hashes is None for p in parts) else \
                np.concatenate([p._hashes for p in parts])
            return cls(np.concatenate([p._table for p in parts]), y,
                       np.concatenate([p.attack for p in parts]), rows, hashes)
        if any(p._ids is None or p._table is not parts[0]._table for p in parts):
            raise ValueError("splits of different stores (or in memory and stored) cannot be "
                             "joined")
        return cls.stored(parts[0]._table, np.concatenate([p._ids for p in parts]), y,
                          np.concatenate([p._codes for p in parts]), parts[0]._categories, rows,
                          parts[0]._table_hashes)

    @property
    def X(self) -> np.ndarray:
        """(n, F) float32 encoded flows; from the store or for a subset, gathered at each use
        (not kept: a whole validation split of NF-UQ-NIDS-v2 is 3.6 GB)."""
        if self._ids is None and self._ends is None:
            return self._table
        flows = self._ends if self._ids is None else self._flow_ids()
        return np.asarray(self._table[np.asarray(flows)])

    @property
    def attack(self) -> np.ndarray:
        """(n,) object: the Attack category of each flow."""
        if self._attack is None:
            self._attack = np.asarray(self._categories, dtype=object)[np.asarray(self._codes)]
        return self._attack

    @property
    def hashes(self) -> np.ndarray | None:
        """(n,) uint64 hash of each flow's raw features (`ids.data.copies`), or None."""
        if self._hashes is None and self._table_hashes is not None:
            self._hashes = np.asarray(self._table_hashes)[np.asarray(self._flow_ids())]
        return self._hashes

    def sequence(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(rows, ids, ends): the split's flow sequence is `rows[ids]` (`rows` itself when ids
        is None) and its flows end at positions `ends` of it (all when None), as
        `ids.data.distinct.distinct_windows` takes them (with `starts`)."""
        return self._table, self._ids, self._ends

    @property
    def starts(self) -> np.ndarray | None:
        """(n,) the first sequence position of each flow's segment (None: one segment)."""
        return self._starts

    def _flow_ids(self) -> np.ndarray:
        return self._ids if self._ends is None else self._ids[self._ends]

    def categories(self) -> tuple[np.ndarray, list[str]]:
        """(code of each flow, category names sorted): the same codes in memory and stored."""
        if self._codes is None:
            names, codes = np.unique(np.asarray(self.attack, dtype=str), return_inverse=True)
            return codes.reshape(-1), names.tolist()
        names = sorted(set(self._categories))
        rank = np.array([names.index(c) for c in self._categories], dtype=np.int64)
        return rank[np.asarray(self._codes)], names

    def windows(self, T: int) -> np.ndarray | Windows:
        """(n, T, F) windows, cached per T: a read-only strided view (one padded copy) in
        memory, gathered batch by batch otherwise."""
        T = check_window(T, {"": len(self._table if self._ids is None else self._ids)})
        if T not in self._windows:
            whole = self._ids is None and self._ends is None and self._starts is None
            self._windows[T] = (windows(self._table, T) if whole
                                else Windows(self._table, T, self._ids, self._ends, self._starts))
        return self._windows[T]

    def distinct(self, T: int, labelled: bool = False) -> Distinct:
        """The distinct windows of length T (with `labelled`, distinct (window, label) pairs),
        cached per (T, labelled): see `ids.data.distinct`."""
        key = (check_window(T, {"": len(self._table if self._ids is None else self._ids)}),
               bool(labelled))
        if key not in self._distinct:
            table, ids, ends = self.sequence()
            self._distinct[key] = distinct_windows(table, key[0], self.y if labelled else None,
                                                   ids=ids, ends=ends, starts=self._starts)
        return self._distinct[key]


@dataclass
class Prepared:
    train: Split
    val: Split
    test: Split
    preprocessor: Preprocessor
    feature_names: list[str]
    info: dict
    # NF-v3 per split, one entry per flow of the whole split in flow order: "start" (int64 ms),
    # "src", "dst" (int32 address codes); empty for flows without times.
    context: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # With `data.window_by=host|pair`: each split before its windows were grouped (what the
    # cross-validation folds regroup block by block, `ids.data.folds`); empty otherwise.
    whole: dict[str, Split] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        return {s: getattr(self, s) for s in SPLITS}[name]

    def sizes(self) -> dict[str, int]:
        """{split: flows}, for `check_window`."""
        return {s: len(self.split(s).y) for s in SPLITS}


def group_keys(context: dict[str, np.ndarray], by: str) -> np.ndarray:
    """The group of each flow of `context` (one split's "src"/"dst" codes): its source
    (`host`) or its source and destination (`pair`), as int64."""
    src = np.asarray(context["src"], np.int64)
    return src if by == "host" else (src << 32) | np.asarray(context["dst"], np.int64)


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


def train_subset(split: Split, n: int, seed: int) -> Split:
    """`n` flows of `split` in flow order, stratified by Attack category (each keeps its share
    by largest remainder, and at least one flow when `n` allows) and drawn with `seed`: the
    training subset of `data.max_train_flows`. Their windows keep the flows before them."""
    codes, _ = split.categories()
    sizes = np.bincount(codes)
    share, present = n * sizes / sizes.sum(), sizes > 0
    quota = np.floor(share).astype(np.int64)
    if n >= present.sum():
        quota = np.maximum(quota, present)
    for c in np.argsort(quota - share, kind="stable"):  # the largest remainders first
        quota[c] += max(0, min(n - quota.sum(), sizes[c] - quota[c], 1))
    for c in np.argsort(-quota, kind="stable"):  # the minimum of one went over n: trim the largest
        quota[c] -= max(0, min(quota.sum() - n, quota[c] - 1))
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(codes == c), q, replace=False)
             for c, q in enumerate(quota) if q]
    return split.select(np.sort(np.concatenate(picks)))
