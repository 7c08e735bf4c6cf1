"""Prepared data: load (file or synthetic), dedup, split, encode, cache.

`prepare(data_cfg)` is what every command trains and scores on. `data.dedup=exact` first drops
every flow identical to an earlier one (raw features, Label and Attack; identifiers only when
kept): the splits and windows then run over the remaining flows, so a window's "previous" flows
skip the dropped ones. `Split.rows` still index the file.

Encoding (`ids.data.encoding.Preprocessor`) is fitted on the training split only; zero rows pad
the first T-1 windows of a split: zero is the train mean of every scaled column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ids.data import cache, copies
from ids.data.encoding import Preprocessor
from ids.data.flows import ATTACK, LABEL, DataError, load_frame
from ids.data.splits import Prepared, Split, split_indices
from ids.data.windows import check_window

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
    with the same data settings (sweep workers, promote, evaluate) load it (`ids.data.cache`)."""
    check_window(data_cfg.window)
    key = _cache_key(data_cfg)
    if key not in _CACHE:
        _CACHE[key] = _prepare_or_load(data_cfg, key, cache_dir)
    check_window(data_cfg.window, _CACHE[key].sizes())
    return _CACHE[key]


def _prepare_or_load(data_cfg, key: str, cache_dir) -> Prepared:
    if not cache_dir:
        return _prepare(data_cfg)
    folder = Path(cache_dir) / cache.key(key)
    prepared = cache.load(folder)
    if prepared is None:
        prepared = _prepare(data_cfg)
        cache.save(prepared, folder)
    return prepared


def _dedup(df: pd.DataFrame, hashes: np.ndarray, data_cfg) -> np.ndarray:
    """Positions of the flows used: all (data.dedup=none), or all but exact duplicates of an
    earlier flow (data.dedup=exact: same features, Label and Attack; the first one is kept)."""
    mode = str(getattr(data_cfg, "dedup", "none"))
    if mode == "none":
        return np.arange(len(df), dtype=np.int64)
    if mode != "exact":
        raise DataError(f"data.dedup={mode!r} is unknown: use none or exact")
    return np.flatnonzero(~copies.duplicate_mask(hashes, df[LABEL].to_numpy(), df[ATTACK]))


def _prepare(data_cfg) -> Prepared:
    df = load_frame(data_cfg)
    hashes = copies.row_hashes(df, copies.feature_columns(df, bool(data_cfg.keep_identifiers)))
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
    seen = copies.TrainIndex(tr.hashes, tr.y)
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
