"""Encoding flows into model inputs: `Preprocessor`, fitted on the training split only.

- counts, bytes, packets, durations and every other numeric v2 column (and NF-v3's
  inter-arrival statistics and, with `data.time_gap`, `HOST_GAP_MS` and `HOST_FIRST`
  (`ids.data.gaps`); never its start and end times): log1p(clip(x, 0)), then
  standardised with the train mean/std (std 0 -> 1).
- with numeric_bins = K > 0, each such column also gets K piecewise-linear bin features
  (Gorishniy et al., "On Embeddings for Numerical Features in Tabular Deep Learning", 2022):
  bin t of a value v between the train quantile edges e_t < e_t+1 is clip((v - e_t) /
  (e_t+1 - e_t), 0, 1). A dense layer can then cut a heavy-tailed count at exact values, as a
  tree does, instead of bending one standardised number; edges are fitted on train only.
- with numeric_top_k = K > 0, each such column also gets one indicator per value among its K
  most frequent train values (counted with copies): NetFlow counts are mostly a few exact
  values (a scan's 1 packet of 60 bytes, a flood's fixed sizes) that a tree isolates with two
  cuts; an indicator hands the network the same cut. Columns with fewer distinct values get
  fewer indicators (no constant features).
- PROTOCOL: one-hot of the values seen in train + "other"; L7_PROTO: one-hot of the
  `l7_top_k` most frequent train values + "other".
- TCP_FLAGS, CLIENT_TCP_FLAGS, SERVER_TCP_FLAGS: 8 bit indicators (FIN..CWR).
- identifiers (only with keep_identifiers): ports and the 4 octets of each IPv4 address,
  standardised linearly. They identify the testbed's hosts and leak the label.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ids.data.flows import (
    FEATURES,
    FLAG_BITS,
    FLAG_COLUMNS,
    GAP_COLUMNS,
    ID_COLUMNS,
    IP_COLUMNS,
    PORT_COLUMNS,
    DataError,
    _columns,
    _layout,
    _numeric,
)


def _ip_octets(s: pd.Series) -> np.ndarray:
    """(n, 4) octets; parses each distinct address once."""
    codes, uniques = pd.factorize(s.astype(str))
    parts = [u.split(".") for u in uniques]
    if not all(len(o) == 4 and all(x.isdigit() for x in o) for o in parts):
        raise DataError(f"column {s.name!r} must hold IPv4 addresses like 192.168.100.3")
    return np.array(parts, dtype=np.float64).reshape(-1, 4)[codes]


@dataclass
class Preprocessor:
    """Fitted on the training split only. Picklable (plain numpy arrays / lists only)."""

    keep_identifiers: bool = False
    l7_top_k: int = 16
    numeric_bins: int = 0
    numeric_top_k: int = 0
    layout_: str | None = None
    input_columns_: list[str] = field(default_factory=list)
    feature_names_: list[str] = field(default_factory=list)
    log_columns_: list[str] = field(default_factory=list)
    flag_columns_: list[str] = field(default_factory=list)
    log_mean_: np.ndarray | None = None
    log_std_: np.ndarray | None = None
    bin_edges_: np.ndarray | None = None  # (log columns, numeric_bins + 1), NaN-padded
    top_values_: np.ndarray | None = None  # (log columns, numeric_top_k) log values, NaN-padded
    id_mean_: np.ndarray | None = None
    id_std_: np.ndarray | None = None
    protocols_: list[float] = field(default_factory=list)
    l7_values_: list[float] = field(default_factory=list)

    def _ids(self, df: pd.DataFrame) -> np.ndarray:
        return np.hstack([_numeric(df, PORT_COLUMNS)] + [_ip_octets(df[c]) for c in IP_COLUMNS])

    def fit(self, df: pd.DataFrame) -> Preprocessor:
        """Fit on the flows of `df`."""
        return self.fit_rows(df, np.arange(len(df)))

    def fit_rows(self, rows, flows: np.ndarray, chunk_rows: int = 0) -> Preprocessor:
        """Fit on the flows `rows[flows]`, in that order, without building them: `rows` holds
        each distinct flow once (a frame, or anything whose `rows[a:b]` is one, such as the
        prepared store's table), `flows` the training flows as positions into it.

        The same values as fitting on the whole training frame, bit for bit: sums run over
        the flows in order, in chunks whose total is carried into the next chunk's first row
        (numpy adds the rows of a C-ordered (n, k >= 2) array one after the other); counts and
        quantiles use each distinct row's multiplicity. `chunk_rows`: rows per step (default
        `CHUNK_ROWS`; the result does not depend on it)."""
        chunk = int(chunk_rows) or CHUNK_ROWS
        first = rows[0:1]
        self.layout_ = _layout(first.columns, times=False)
        feats = FEATURES[self.layout_] + [c for c in GAP_COLUMNS if c in first.columns]
        self.flag_columns_ = [c for c in feats if c in FLAG_COLUMNS]
        self.log_columns_ = [c for c in feats if c not in FLAG_COLUMNS + ["PROTOCOL", "L7_PROTO"]]
        self.input_columns_ = (ID_COLUMNS if self.keep_identifiers else []) + feats
        if self.keep_identifiers:
            warnings.warn("data.keep_identifiers=true: IPs and ports identify the attacker hosts "
                          "and leak the label; scores are not comparable", UserWarning, stacklevel=2)
        _missing(first, self.input_columns_)
        flows = np.asarray(flows, np.int64)
        weight = np.bincount(flows, minlength=len(rows))  # multiplicity of each distinct row
        used = np.flatnonzero(weight)

        # Column group by column group: the log values of every used distinct row of all
        # columns at once are rows x 48 x 8 bytes (6.7 GB for 17.5M distinct training flows of
        # an NF-v3 file). Groups of >= 2 columns keep numpy's row-by-row sums: the same bits.
        means, stds, edges, tops = [], [], [], []
        for cols in _groups(self.log_columns_, LOG_GROUP):
            logv = _used(_only(rows, cols), used,  # C order: `_moments` sums row by row
                         lambda df, cols=cols: np.ascontiguousarray(_log_columns(df, cols)),
                         chunk)
            mean, std = _moments(logv, used, flows, chunk)
            means.append(mean)
            stds.append(std)
            if self.numeric_bins > 0:
                edges += [_edges(np.repeat(c, weight[used]), self.numeric_bins) for c in logv.T]
            if self.numeric_top_k > 0:
                tops += [_top_values(c, weight[used], self.numeric_top_k) for c in logv.T]
            del logv
        self.log_mean_, self.log_std_ = np.concatenate(means), np.concatenate(stds)
        names = list(self.log_columns_)
        if self.numeric_bins > 0:
            self.bin_edges_ = np.stack(edges)
            names += [f"{c}.bin{t}" for c in self.log_columns_ for t in range(self.numeric_bins)]
        if self.numeric_top_k > 0:
            self.top_values_ = np.stack(tops)
            names += [f"{c}=={np.expm1(v):g}" for c, row in zip(self.log_columns_,
                                                               self.top_values_, strict=True)
                      for v in row[np.isfinite(row)]]
        if self.keep_identifiers:
            self.id_mean_, self.id_std_ = _moments(_used(rows, used, self._ids, chunk), used,
                                                   flows, chunk)
            names += PORT_COLUMNS + [f"{c}.o{k}" for c in IP_COLUMNS for k in range(1, 5)]
        cat = _used(_only(rows, ["PROTOCOL", "L7_PROTO"]), used,
                    lambda df: _numeric(df, ["PROTOCOL", "L7_PROTO"]), chunk)
        self.protocols_ = np.unique(cat[:, 0]).tolist()
        vals, inverse = np.unique(cat[:, 1], return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=weight[used]).astype(np.int64)
        self.l7_values_ = vals[np.lexsort((vals, -counts))][: self.l7_top_k].tolist()
        names += [f"PROTOCOL={v:g}" for v in self.protocols_] + ["PROTOCOL=other"]
        names += [f"L7_PROTO={v:g}" for v in self.l7_values_] + ["L7_PROTO=other"]
        names += [f"{c}.{b}" for c in self.flag_columns_ for b in FLAG_BITS]
        self.feature_names_ = names
        return self

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """float32 (n, n_features), C-contiguous; no Label/Attack needed (new flows to score)."""
        if self.layout_ is None:
            raise DataError("the Preprocessor is not fitted: call fit() on the training split")
        _missing(df, self.input_columns_)
        out = np.empty((len(df), len(self.feature_names_)), dtype=np.float32)
        k = len(self.log_columns_)
        logv = _log_columns(df, self.log_columns_)
        for j in range(k):  # column by column: no (n, k) float64 temporaries
            out[:, j] = (logv[:, j] - self.log_mean_[j]) / self.log_std_[j]
        if self.numeric_bins > 0:
            bins = _piecewise_linear(logv, self.bin_edges_)
            out[:, k: k + bins.shape[1]] = bins
            k += bins.shape[1]
        if self.numeric_top_k > 0:
            for j, row in enumerate(self.top_values_):
                known = row[np.isfinite(row)]
                out[:, k: k + len(known)] = logv[:, j, None] == known[None, :]
                k += len(known)
        if self.keep_identifiers:
            out[:, k: k + 10] = (self._ids(df) - self.id_mean_) / self.id_std_
            k += 10
        cat = _numeric(df, ["PROTOCOL", "L7_PROTO"])
        for j, known in enumerate((self.protocols_, self.l7_values_)):
            hot = out[:, k: k + len(known) + 1]
            hot[:, :-1] = cat[:, j, None] == np.asarray(known, dtype=np.float64)[None, :]
            hot[:, -1] = hot[:, :-1].sum(axis=1) == 0
            k += len(known) + 1
        if self.flag_columns_:
            flags = _numeric(df, self.flag_columns_).astype(np.int64)
            bits = np.arange(8, dtype=np.int64)
            for j in range(len(self.flag_columns_)):
                out[:, k + 8 * j: k + 8 * j + 8] = (flags[:, j, None] >> bits) & 1
        return out


CHUNK_ROWS = 1 << 18  # rows per step of fitting and encoding
LOG_GROUP = 8  # log columns fitted at a time (memory: used distinct rows x 8 x 8 bytes)


def _log_columns(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """log1p(clip(x, 0)) of the validated `cols` as an (n, k) float64 array in column order
    (Fortran): each column converted and transformed in place, no (n, k) temporaries; the same
    values as `np.log1p(np.clip(_numeric(df, cols), 0, None))`."""
    arrays = _columns(df, cols)
    out = np.empty((len(df), len(cols)), np.float64, order="F")
    for j, c in enumerate(cols):
        v = out[:, j]
        v[...] = arrays[c]
        np.maximum(v, 0.0, out=v)
        np.log1p(v, out=v)
    return out


def _groups(cols: list[str], size: int) -> list[list[str]]:
    """`cols` in groups of `size`, a last group of one joined to the one before (a one-column
    sum is pairwise in numpy, not row by row: other bits)."""
    groups = [cols[i: i + size] for i in range(0, len(cols), size)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2] += groups.pop()
    return groups


def _only(rows, cols: list[str]):
    """`rows` reading only `cols`: the prepared store's table (`only`) or a frame."""
    return rows.only(cols) if hasattr(rows, "only") else rows[cols]


def _used(rows, used: np.ndarray, f, chunk: int) -> np.ndarray:
    """f(frame) of the distinct rows in `used` (ascending), read `chunk` rows at a time."""
    parts = []
    for lo in range(0, len(rows), chunk):
        sel = used[(used >= lo) & (used < lo + chunk)] - lo
        if len(sel):
            parts.append(f(rows[lo: lo + chunk].iloc[sel]))
    return np.concatenate(parts)


def _moments(values: np.ndarray, used: np.ndarray, flows: np.ndarray, chunk: int) -> tuple:
    """(mean, std; std 0 -> 1) over the rows `values[slot of flows]`, the training matrix of
    the flows in order, as `x.mean(axis=0)` and `x.std(axis=0)` compute it on the whole."""
    slot = np.zeros(int(used[-1]) + 1 if len(used) else 0, np.int64)
    slot[used] = np.arange(len(used))

    def total(f) -> np.ndarray:
        carry = None
        for lo in range(0, len(flows), chunk):
            x = f(values[slot[flows[lo: lo + chunk]]])
            if carry is not None:
                x[0] += carry
            carry = x.sum(axis=0)
        return carry

    mean = total(lambda x: x) / len(flows)

    def square(x):
        x -= mean
        return np.multiply(x, x, out=x)

    std = np.sqrt(total(square) / len(flows))
    return mean, np.where(std > 0, std, 1.0)


def _edges(v: np.ndarray, bins: int) -> np.ndarray:
    """`bins + 1` slots: the distinct train quantiles of v, NaN after them (ties merge bins)."""
    q = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)))
    return np.concatenate([q, np.full(bins + 1 - len(q), np.nan)])


def _top_values(v: np.ndarray, weight: np.ndarray, k: int) -> np.ndarray:
    """`k` slots: the k most frequent values of v (each distinct row counted `weight` times;
    ties: the smaller value first), NaN after them."""
    vals, inverse = np.unique(v, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=weight)
    top = vals[np.lexsort((vals, -counts))][:k]
    return np.concatenate([top, np.full(k - len(top), np.nan)])


def _piecewise_linear(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(n, columns * bins) piecewise-linear encoding of v (n, columns); unused bins are 0."""
    lo, hi = edges[:, :-1], edges[:, 1:]
    used = np.isfinite(lo) & np.isfinite(hi)  # a bin past the last distinct edge is unused
    width = np.where(used & (hi > lo), hi - lo, 1.0)
    enc = np.clip((v[:, :, None] - np.nan_to_num(lo)[None]) / width[None], 0.0, 1.0)
    return np.where(used[None], enc, 0.0).reshape(len(v), -1)


def _missing(df: pd.DataFrame, cols: list[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"missing columns {missing}: the flows must have the columns the "
                        f"preprocessor was fitted on ({cols})")
