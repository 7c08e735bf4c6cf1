"""The reference models every report compares against, scored on exactly the model's flows.

"all_attack" flags every flow: the floor any model must beat (F1 0.99 on NF-BoT-IoT).
"extra_trees" is a per-flow ExtraTreesClassifier, the bar from the stack notes. Their scores
depend on the data only, so they are computed once per data setting and split.
"""

from __future__ import annotations

import json

import numpy as np

from ids.data.splits import Prepared
from ids.evaluation.metrics import best_threshold, compute_metrics

BASELINE_MAX_TRAIN_ROWS = 200_000


def _per_flow(X) -> np.ndarray:
    """2-D features; windows (N, T, F) are reduced to their last flow, the one labelled."""
    X = np.asarray(X, dtype=np.float32)
    return X[:, -1, :] if X.ndim == 3 else X.reshape(len(X), -1)


def _attack_proba(model, X) -> np.ndarray:
    classes = list(model.classes_)
    if 1 not in classes:
        return np.zeros(len(X))
    return model.predict_proba(X)[:, classes.index(1)]


def baselines(X_train, y_train, X_test, y_test, attack_test=None, seed: int = 0,
              X_val=None, y_val=None, metric: str = "f1") -> dict[str, dict[str, float]]:
    """Metrics of the two reference models of `baseline_scores` on the test flows."""
    scores = baseline_scores(X_train, y_train, X_test, seed=seed, X_val=X_val, y_val=y_val,
                             metric=metric)
    return {name: compute_metrics(y_test, s, t, attack_test) for name, (s, t) in scores.items()}


def baseline_scores(X_train, y_train, X_test, seed: int = 0, X_val=None, y_val=None,
                    metric: str = "f1") -> dict[str, tuple[np.ndarray, float]]:
    """(scores, threshold) of two reference models on the test flows.

    "all_attack" flags every flow (score 1, threshold 0.5): the floor any model must beat.
    "extra_trees" is a per-flow ExtraTreesClassifier(100 trees), the bar from the stack notes.
    It is fitted on at most BASELINE_MAX_TRAIN_ROWS training rows (a uniform sample without
    replacement drawn with `seed`, so deterministic) to stay within seconds; its threshold
    maximises `metric` on (X_val, y_val) when given, else 0.5.
    """
    from sklearn.ensemble import ExtraTreesClassifier

    X_train, X_test = _per_flow(X_train), _per_flow(X_test)
    y_train = np.asarray(y_train).reshape(-1).astype(int)
    out = {"all_attack": (np.ones(len(X_test)), 0.5)}
    if len(X_train) > BASELINE_MAX_TRAIN_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(
            len(X_train), BASELINE_MAX_TRAIN_ROWS, replace=False))
        X_train, y_train = X_train[rows], y_train[rows]
    model = ExtraTreesClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
    model.fit(X_train, y_train)
    threshold = 0.5
    if X_val is not None and y_val is not None:
        X_val = _per_flow(X_val)
        threshold, _ = best_threshold(y_val, _attack_proba(model, X_val), metric)
    out["extra_trees"] = (_attack_proba(model, X_test), float(threshold))
    return out


_BASELINES: dict[tuple, dict] = {}


def split_baseline_scores(prepared: Prepared, split: str, seed: int,
                          metric: str = "f1") -> dict[str, tuple]:
    """(scores, threshold) of all-attack and per-flow Extra-Trees on exactly the flows the model
    is scored on (cached: they depend on the data only, not on the model; the key holds the
    content hash and every data setting but the window)."""
    settings = json.dumps(prepared.info.get("settings"), sort_keys=True, default=str)
    key = (prepared.info.get("hash"), settings, split, seed, prepared.info.get("split"), metric)
    if key not in _BASELINES:
        target, tr, va = prepared.split(split), prepared.train, prepared.val
        kwargs = {"X_val": va.X, "y_val": va.y} if split == "test" else {}
        _BASELINES[key] = baseline_scores(tr.X, tr.y, target.X, seed=seed, metric=metric,
                                          **kwargs)
    return _BASELINES[key]


def split_baselines(prepared: Prepared, split: str, seed: int,
                    metric: str = "f1") -> dict[str, dict[str, float]]:
    """Metrics of `split_baseline_scores` on the split's flows."""
    target = prepared.split(split)
    return {name: compute_metrics(target.y, s, t, target.attack)
            for name, (s, t) in split_baseline_scores(prepared, split, seed, metric).items()}
