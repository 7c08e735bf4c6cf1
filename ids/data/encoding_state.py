"""A fitted `Preprocessor` as data, and back: what model files and the prepared store keep
(JSON-able settings and lists, numpy arrays; never a pickle), every field checked on the way
back in (names, types, array shapes), so a damaged or foreign file is an error, not a model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ids.data.encoding import Preprocessor
from ids.data.flows import FEATURES

_JSON_TYPES = {"keep_identifiers": bool, "l7_top_k": int, "numeric_bins": int,
               "numeric_top_k": int, "layout_": str,
               "input_columns_": list, "feature_names_": list, "log_columns_": list,
               "flag_columns_": list, "protocols_": list, "l7_values_": list}


def state(pre: Preprocessor) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON-able settings and lists, arrays) of a fitted Preprocessor: what model files and
    the prepared-data cache store (data, never a pickle)."""
    meta, arrays = {}, {}
    for f in dataclasses.fields(pre):
        value = getattr(pre, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif value is not None:
            meta[f.name] = value.tolist() if hasattr(value, "tolist") else value
    return meta, arrays


def from_state(meta: dict, arrays: dict[str, np.ndarray]) -> Preprocessor:
    """A Preprocessor from its state, every field checked: names, types and array shapes
    (ValueError naming the field otherwise)."""
    fields = {f.name for f in dataclasses.fields(Preprocessor)}
    unknown = sorted((set(meta) | set(arrays)) - fields)
    _state_check(not unknown, f"unknown preprocessor fields {unknown}")
    for key, kind in _JSON_TYPES.items():
        if key in meta:
            _state_check(isinstance(meta[key], kind) and not (kind is int and isinstance(meta[key], bool)),
                     f"preprocessor field {key!r} must be a {kind.__name__}")
    for key in ("input_columns_", "feature_names_", "log_columns_", "flag_columns_"):
        _state_check(all(isinstance(v, str) for v in meta.get(key, [])), f"{key} must hold strings")
    for key in ("protocols_", "l7_values_"):
        _state_check(all(isinstance(v, (int, float)) and not isinstance(v, bool)
                     for v in meta.get(key, [])), f"{key} must hold numbers")
    _state_check(meta.get("layout_") in FEATURES, "preprocessor layout_ must be v1, v2 or v3")
    pre = Preprocessor(**{k: v for k, v in meta.items() if k in fields},
                       **{k: np.asarray(v, np.float64) for k, v in arrays.items()})
    k = len(pre.log_columns_)
    for name in ("log_mean_", "log_std_"):
        a = getattr(pre, name)
        _state_check(a is not None and a.shape == (k,), f"{name} must have shape ({k},)")
    if pre.keep_identifiers:
        for name in ("id_mean_", "id_std_"):
            a = getattr(pre, name)
            _state_check(a is not None and a.shape == (10,), f"{name} must have shape (10,)")
    if pre.numeric_bins > 0:
        a = pre.bin_edges_
        _state_check(a is not None and a.shape == (k, pre.numeric_bins + 1),
                 f"bin_edges_ must have shape ({k}, {pre.numeric_bins + 1})")
    n_top = 0
    if pre.numeric_top_k > 0:
        a = pre.top_values_
        _state_check(a is not None and a.shape == (k, pre.numeric_top_k),
                     f"top_values_ must have shape ({k}, {pre.numeric_top_k})")
        n_top = int(np.isfinite(a).sum())
    n = (k * (1 + pre.numeric_bins) + n_top + 10 * pre.keep_identifiers + len(pre.protocols_)
         + len(pre.l7_values_) + 2 + 8 * len(pre.flag_columns_))
    _state_check(len(pre.feature_names_) == n, f"{len(pre.feature_names_)} feature names for {n} "
             "features")
    return pre


def _state_check(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)
