"""NetFlow data: load (file or synthetic), validate, split, encode, and window flows.

`data.dedup=exact` first drops every flow identical to an earlier one (raw features, Label and
Attack; identifiers only when kept): the splits and windows then run over the remaining flows,
so a window's "previous" flows skip the dropped ones. `Split.rows` still index the file.

Split first, window second: train/val/test are contiguous blocks in flow order (or, with
`data.split=chunks`, fixed-size contiguous chunks dealt to the splits at random by `data.seed`,
each split the concatenation of its chunks in file order). Windows are built per split, so none
straddles two splits; with chunks a window MAY span two chunks of the same split (the flows
before a chunk start are then the end of that split's previous chunk, not zero padding).

Encoding (`Preprocessor`, fitted on the training split only):
- counts, bytes, packets, durations and every other numeric v2 column: log1p(clip(x, 0)), then
  standardised with the train mean/std (std 0 -> 1). Signed or huge v2 values (e.g. the bytes
  per second columns, DNS_TTL_ANSWER) get the same treatment: negatives clip to 0, log1p tames
  the range.
- PROTOCOL: one-hot of the values seen in train + "other"; L7_PROTO: one-hot of the
  `l7_top_k` most frequent train values + "other".
- TCP_FLAGS, CLIENT_TCP_FLAGS, SERVER_TCP_FLAGS: 8 bit indicators (FIN..CWR), bits above 7 ignored.
- identifiers (only with keep_identifiers): ports and the 4 octets of each IPv4 address,
  standardised linearly. They identify the testbed's hosts and leak the label.
Zero rows pad the first T-1 windows of a split: zero is the train mean of every scaled column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ids.encoding import Preprocessor  # noqa: F401 - the encoder of prepared data
from ids.flows import (  # noqa: F401 - the schema and reading, re-exported for callers
    ATTACK,
    FLAG_BITS,
    FLAG_COLUMNS,
    ID_COLUMNS,
    LABEL,
    PUBLISHED,
    SPLITS,
    V1_FEATURES,
    V2_FEATURES,
    DataError,
    load_frame,
    read_flows,
    validate_frame,
)


def windows(X: np.ndarray, T: int) -> np.ndarray:
    """(n, T, F) read-only view: windows(X, T)[i] == X[i-T+1..i], zero rows before index 0."""
    if T < 1:
        raise DataError(f"data.window must be >= 1, got {T}")
    n, f = X.shape
    padded = np.zeros((n + T - 1, f), dtype=X.dtype)
    padded[T - 1:] = X
    if len(padded) < T:  # no flows at all
        return np.zeros((0, T, f), X.dtype)
    return sliding_window_view(padded, T, axis=0).transpose(0, 2, 1)


@dataclass
class Split:
    X: np.ndarray  # (n, F) float32, scaled, in flow order
    y: np.ndarray  # (n,) float32 0/1
    attack: np.ndarray  # (n,) object, category strings
    rows: np.ndarray  # (n,) int64 positions in the loaded frame
    hashes: np.ndarray | None = None  # (n,) uint64 hash of each flow's raw features (ids.overlap)
    _windows: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def windows(self, T: int) -> np.ndarray:
        """(n, T, F) read-only strided view, cached per T (one padded copy per T)."""
        T = int(T)
        if T > len(self.X):
            raise DataError(f"data.window={T} is longer than the split ({len(self.X)} flows)")
        if T not in self._windows:
            self._windows[T] = windows(self.X, T)
        return self._windows[T]


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


def check_window(T: int, prepared: Prepared) -> None:
    """DataError if T < 1 or T is longer than the smallest split."""
    if int(T) < 1:
        raise DataError(f"data.window must be >= 1, got {T}")
    name = min(SPLITS, key=lambda s: len(prepared.split(s).y))
    size = len(prepared.split(name).y)
    if int(T) > size:
        raise DataError(f"data.window={T} is longer than the {name} split ({size} flows): lower "
                        "data.window or use more flows")


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


_CACHE: dict[str, Prepared] = {}


def clear_cache() -> None:
    _CACHE.clear()


def _settings(data_cfg) -> dict:
    """Every data setting but the window (windows are views over the same prepared flows)."""
    if dataclasses.is_dataclass(data_cfg):
        d = dataclasses.asdict(data_cfg)
    else:
        from omegaconf import OmegaConf
        d = OmegaConf.to_container(data_cfg, resolve=True)
    d.pop("window", None)
    return d


def _cache_key(data_cfg) -> str:
    d = _settings(data_cfg)
    if d.get("source") != "synthetic" and d.get("path") and os.path.exists(d["path"]):
        st = os.stat(d["path"])  # a rewritten file is read again
        d["_file"] = [os.path.abspath(d["path"]), st.st_size, st.st_mtime_ns]
    return json.dumps(d, sort_keys=True, default=str)


def prepare(data_cfg, cache_dir: str | os.PathLike | None = None) -> Prepared:
    """Load, split, fit on train, transform all; cached in-process by the config minus window,
    and on disk under `cache_dir` (the top-level `cache_dir` key) when given: other processes
    with the same data settings (sweep workers, promote, evaluate) load it (`ids.datacache`)."""
    if int(data_cfg.window) < 1:
        raise DataError(f"data.window must be >= 1, got {data_cfg.window}")
    key = _cache_key(data_cfg)
    if key not in _CACHE:
        _CACHE[key] = _prepare_or_load(data_cfg, key, cache_dir)
    check_window(int(data_cfg.window), _CACHE[key])
    return _CACHE[key]


def _prepare_or_load(data_cfg, key: str, cache_dir) -> Prepared:
    if not cache_dir:
        return _prepare(data_cfg)
    from ids import datacache

    folder = Path(cache_dir) / datacache.key(key)
    prepared = datacache.load(folder)
    if prepared is None:
        prepared = _prepare(data_cfg)
        datacache.save(prepared, folder)
    return prepared


def _dedup(df: pd.DataFrame, hashes: np.ndarray, data_cfg) -> np.ndarray:
    """Positions of the flows used: all (data.dedup=none), or all but exact duplicates of an
    earlier flow (data.dedup=exact: same features, Label and Attack; the first one is kept)."""
    from ids import overlap

    mode = str(getattr(data_cfg, "dedup", "none"))
    if mode == "none":
        return np.arange(len(df), dtype=np.int64)
    if mode != "exact":
        raise DataError(f"data.dedup={mode!r} is unknown: use none or exact")
    return np.flatnonzero(~overlap.duplicate_mask(hashes, df[LABEL].to_numpy(), df[ATTACK]))


def _prepare(data_cfg) -> Prepared:
    from ids import overlap

    df = load_frame(data_cfg)
    hashes = overlap.row_hashes(df, overlap.feature_columns(df, bool(data_cfg.keep_identifiers)))
    kept = _dedup(df, hashes, data_cfg)
    idx = {name: kept[pos] for name, pos in split_indices(len(kept), data_cfg).items()}
    y_all = df[LABEL].to_numpy(np.float32)
    counts = {}
    for name, rows in idx.items():
        attack = int(y_all[rows].sum())
        counts[name] = {"benign": len(rows) - attack, "attack": attack}
        if attack in (0, len(rows)):
            kind = "attack" if attack == 0 else "benign"
            raise DataError(f"the {name} split ({len(rows)} flows) has no {kind} flows: use "
                            "data.split=chunks, another data.seed or more flows")
    pre = Preprocessor(bool(data_cfg.keep_identifiers), int(data_cfg.l7_top_k),
                       int(getattr(data_cfg, "numeric_bins", 0)))
    pre.fit(df.iloc[idx["train"]])
    X_all, att = pre.transform(df), df[ATTACK].to_numpy(object)
    splits = {name: Split(_take(X_all, rows), y_all[rows], att[rows], rows, hashes[rows])
              for name, rows in idx.items()}
    tr = splits["train"]
    seen = overlap.TrainIndex(tr.hashes, tr.y)
    digest = hashlib.sha1(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    info = {"source": data_cfg.source,
            "path": None if data_cfg.source == "synthetic" else str(data_cfg.path),
            "layout": "synthetic" if data_cfg.source == "synthetic" else pre.layout_,
            "n_flows": len(df), "n_features": len(pre.feature_names_), "counts": counts,
            "attack_counts": {str(k): int(v) for k, v in df[ATTACK].value_counts().items()},
            "hash": digest.hexdigest(), "split": data_cfg.split,
            "keep_identifiers": pre.keep_identifiers,
            "dedup": {"mode": str(getattr(data_cfg, "dedup", "none")),
                      "dropped": len(df) - len(kept), "kept": len(kept)},
            "overlap": {name: seen.stats(splits[name].hashes, splits[name].y)
                        for name in ("val", "test")},
            "settings": _settings(data_cfg)}
    return Prepared(preprocessor=pre, feature_names=list(pre.feature_names_), info=info, **splits)


def _take(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of X: a view when they are one contiguous block (no copy), else a copy."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and (np.diff(rows) == 1).all():
        return X[rows[0]: rows[-1] + 1]
    return X[rows]
