"""The reference models every report compares against, scored on exactly the model's flows.

"all_attack" flags every flow: the floor any model must beat (F1 0.99 on NF-BoT-IoT).
"extra_trees" is a per-flow ExtraTreesClassifier, the bar from the stack notes. One fitted
forest is one draw: on a real file the same split scored test MCC 0.971 with one seed and
0.939 with another, so a report fits it with several seeds (`trainer.baseline_seeds`) and
`ids.evaluation.spread` says what the verdict is against.

The pieces take their flows as arguments (training flows, the flows or thresholds that set
each forest's threshold, the seeds), so a caller can fit on other splits than prepared.train
(train+val with thresholds from out-of-fold scores, say). Scores depend on the data only, so
`split_baseline_scores` computes them once per data setting, split and seed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from ids.data.folds import fold_bounds, joined
from ids.data.splits import Prepared
from ids.evaluation.metrics import best_threshold, compute_metrics

BASELINE_MAX_TRAIN_ROWS = 200_000
Draw = tuple[np.ndarray, float]  # (scores on the target flows, threshold)


def _per_flow(X) -> np.ndarray:
    """2-D features; windows (N, T, F) are reduced to their last flow, the one labelled."""
    X = np.asarray(X, dtype=np.float32)
    return X[:, -1, :] if X.ndim == 3 else X.reshape(len(X), -1)


def attack_proba(model, X) -> np.ndarray:
    """P(attack) of a fitted classifier on flows or windows (0 if it never saw an attack)."""
    classes = list(model.classes_)
    if 1 not in classes:
        return np.zeros(len(X))
    return model.predict_proba(_per_flow(X))[:, classes.index(1)]


def _distinct(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, labels, counts) of the distinct (features, label) pairs, in order of first
    occurrence. A forest fitted on them with the counts as sample weights is the forest of the
    full rows (the same splits and leaf shares: pure nodes of copies stop alike), and NF-BoT-IoT
    training flows are 87-95 % copies: 70,000 flows are 6,033 rows, a fit 10x faster."""
    rows = np.ascontiguousarray(np.column_stack([X, y.astype(np.float32)]))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return X[first[order]], y[first[order]], counts[order].astype(np.float64)


def fit_extra_trees(X_train, y_train, seed: int):
    """ExtraTreesClassifier(100 trees, `seed`) on at most BASELINE_MAX_TRAIN_ROWS flows (a
    uniform sample without replacement drawn with `seed`, so deterministic), fitted on the
    distinct ones weighted by their copies. `X_train`: flows, windows, or a split of the
    prepared store (`Split`: only the sampled flows are gathered, not 19M of them)."""
    from sklearn.ensemble import ExtraTreesClassifier

    y = np.asarray(y_train).reshape(-1).astype(np.int64)
    rows = None
    if len(y) > BASELINE_MAX_TRAIN_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(
            len(y), BASELINE_MAX_TRAIN_ROWS, replace=False))
        y = y[rows]
    X, y, weight = _distinct(_per_flow(_flows_at(X_train, rows)), y)
    model = ExtraTreesClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
    return model.fit(X, y, sample_weight=weight)


def _flows_at(X, rows: np.ndarray | None):
    """Flows (or windows) `rows` of X, all when None; of a `Split` only those are gathered."""
    if hasattr(X, "select"):
        return (X if rows is None else X.select(rows)).X
    return X if rows is None else np.asarray(X)[rows]


def extra_trees_draws(X_train, y_train, X_target, seeds: Sequence[int], *, X_threshold=None,
                      y_threshold=None, thresholds: Mapping[int, float] | None = None,
                      metric: str = "f1") -> dict[int, Draw]:
    """{seed: (scores on X_target, threshold)}: one forest per seed, fitted on the training
    flows. A seed's threshold is `thresholds[seed]` when given (e.g. tuned on out-of-fold
    scores), else the one maximising `metric` on (X_threshold, y_threshold), else 0.5."""
    out = {}
    for seed in seeds:
        model = fit_extra_trees(X_train, y_train, int(seed))
        if thresholds is not None:
            threshold = float(thresholds[seed])
        elif X_threshold is not None and y_threshold is not None:
            threshold, _ = best_threshold(y_threshold, attack_proba(model, X_threshold), metric)
        else:
            threshold = 0.5
        out[int(seed)] = (attack_proba(model, X_target), float(threshold))
    return out


def baseline_scores(X_train, y_train, X_test, seeds: Sequence[int] = (0,), X_val=None,
                    y_val=None, metric: str = "f1") -> dict:
    """The two reference models on the test flows: "all_attack" -> (scores, threshold) (score
    1, threshold 0.5) and "extra_trees" -> {seed: (scores, threshold)}, `extra_trees_draws`
    with the threshold tuned on (X_val, y_val) when given."""
    return {"all_attack": (np.ones(len(X_test)), 0.5),
            "extra_trees": extra_trees_draws(X_train, y_train, X_test, seeds, X_threshold=X_val,
                                             y_threshold=y_val, metric=metric)}


def baselines(X_train, y_train, X_test, y_test, attack_test=None, seed: int = 0,
              X_val=None, y_val=None, metric: str = "f1") -> dict[str, dict[str, float]]:
    """Metrics of all-attack and of the Extra-Trees of `seed` on the test flows."""
    scores = baseline_scores(X_train, y_train, X_test, (seed,), X_val, y_val, metric)
    one = {"all_attack": scores["all_attack"], "extra_trees": scores["extra_trees"][seed]}
    return {name: compute_metrics(y_test, s, t, attack_test) for name, (s, t) in one.items()}


_DRAWS: dict[tuple, Draw] = {}


def split_baseline_scores(prepared: Prepared, split: str, seeds: Sequence[int],
                          metric: str = "f1") -> dict:
    """`baseline_scores` on exactly the flows the model is scored on: the forests fitted on
    the train split, their threshold tuned on val when the target is test. Each seed's draw
    is cached: it depends on the data only, not on the model (the key holds the content hash
    and every data setting but the window)."""
    settings = json.dumps(prepared.info.get("settings"), sort_keys=True, default=str)
    key = (prepared.info.get("hash"), settings, split, prepared.info.get("split"), metric)
    missing = [int(s) for s in seeds if (*key, int(s)) not in _DRAWS]
    if missing:
        target, tr, va = prepared.split(split), prepared.train, prepared.val
        kwargs = {"X_threshold": va.X, "y_threshold": va.y} if split == "test" else {}
        for seed, draw in extra_trees_draws(tr, tr.y, target.X, missing, metric=metric,
                                            **kwargs).items():
            _DRAWS[(*key, seed)] = draw
    n = len(prepared.split(split).y)
    return {"all_attack": (np.ones(n), 0.5),
            "extra_trees": {int(s): _DRAWS[(*key, int(s))] for s in seeds}}


def split_baselines(prepared: Prepared, split: str, seed: int,
                    metric: str = "f1") -> dict[str, dict[str, float]]:
    """Metrics of all-attack and of the Extra-Trees of `seed` on the split's flows (one draw:
    what a sweep trial compares its validation figures with)."""
    target = prepared.split(split)
    scores = split_baseline_scores(prepared, split, (seed,), metric)
    one = {"all_attack": scores["all_attack"], "extra_trees": scores["extra_trees"][int(seed)]}
    return {name: compute_metrics(target.y, s, t, target.attack) for name, (s, t) in one.items()}


def oof_draws(prepared: Prepared, k: int, seeds: Sequence[int], metric: str) -> dict:
    """{seed: (out-of-fold scores of train+val, threshold maximising `metric` on them)}: per
    seed, one forest per fold of `ids.data.folds` (fitted on the other blocks, scoring the held
    one), the comparison a cross-validated run's out-of-fold figures get. Cached like
    `split_baseline_scores`."""
    settings = json.dumps(prepared.info.get("settings"), sort_keys=True, default=str)
    key = (prepared.info.get("hash"), settings, f"oof{k}", prepared.info.get("split"), metric)
    missing = [int(s) for s in seeds if (*key, int(s)) not in _DRAWS]
    if missing:
        seq = joined(prepared)
        X, y = seq.X, seq.y
        for seed in missing:
            oof = np.empty(len(y))
            for a, b in fold_bounds(len(y), k):
                rest = np.r_[0:a, b:len(y)]
                oof[a:b] = attack_proba(fit_extra_trees(X[rest], y[rest], seed), X[a:b])
            _DRAWS[(*key, seed)] = (oof, best_threshold(y, oof, metric)[0])
    return {int(s): _DRAWS[(*key, int(s))] for s in seeds}


def cv_baseline_scores(prepared: Prepared, k: int, split: str, seeds: Sequence[int],
                       metric: str = "f1") -> dict:
    """The baselines of a run cross-validated over `k` folds (`trainer.cv_folds`), on what its
    model learnt from: split "val" -> the out-of-fold scores of train+val (`oof_draws`);
    "test" -> `oof_baseline_scores` on the test flows."""
    if split != "val":
        return oof_baseline_scores(prepared, k, prepared.split(split).X, seeds, metric)
    oof = oof_draws(prepared, k, seeds, metric)
    n = len(next(iter(oof.values()))[0])
    return {"all_attack": (np.ones(n), 0.5), "extra_trees": oof}


def cv_baselines(prepared: Prepared, k: int, seed: int,
                 metric: str = "f1") -> dict[str, dict[str, float]]:
    """Metrics of all-attack and of the Extra-Trees of `seed` on the out-of-fold scores of
    train+val (`split_baselines` of a run cross-validated over `k` folds)."""
    seq = joined(prepared)
    scores = cv_baseline_scores(prepared, k, "val", (seed,), metric)
    one = {"all_attack": scores["all_attack"], "extra_trees": scores["extra_trees"][int(seed)]}
    return {name: compute_metrics(seq.y, s, t, seq.attack) for name, (s, t) in one.items()}


def oof_baseline_scores(prepared: Prepared, k: int, X_target, seeds: Sequence[int],
                        metric: str = "f1") -> dict:
    """Forests fitted on train+val (as a `k`-fold bag's members together were), each seed's
    threshold from its own out-of-fold scores (as the bag's), scored on `X_target`."""
    oof, seq = oof_draws(prepared, k, seeds, metric), joined(prepared)
    draws = extra_trees_draws(seq, seq.y, X_target, seeds, metric=metric,
                              thresholds={s: t for s, (_, t) in oof.items()})
    return {"all_attack": (np.ones(len(X_target)), 0.5), "extra_trees": draws}


def learnt_baseline_scores(prepared: Prepared, folds: int, split: str, seeds: Sequence[int],
                           metric: str = "f1") -> dict:
    """The baselines' scores on `split`, fitted on what the model learnt from: the train split
    (`split_baseline_scores`), or train+val for a bag cross-validated over `folds` folds."""
    if folds:
        return cv_baseline_scores(prepared, folds, split, seeds, metric)
    return split_baseline_scores(prepared, split, seeds, metric)
