"""Confidence intervals for the report metrics, and a paired verdict between two models.

For fixed predictions, a bootstrap over flows only needs the confusion cells: resampling n flows
with replacement is a multinomial draw of n over (tn, fp, fn, tp) with the observed shares, so
thousands of resamples cost milliseconds whatever n is. The paired version draws over the 8
cells of (label, prediction A, prediction B), which keeps the correlation between two models
scored on the same flows: the interval of the difference is much narrower than the two
separate intervals suggest.

What the interval does NOT cover: flows are treated as independent draws. Flows close in time
(one attack campaign, one host) are not, so the true uncertainty is larger; nor does it cover
the randomness of training (seed) or of the threshold chosen on validation.
"""

from __future__ import annotations

import numpy as np

from ids.evaluation.metrics import _rates

CI_METRICS = ("mcc", "benign_recall", "f1", "balanced_accuracy")
N_BOOT = 4000
LEVEL = 0.95


def _percentiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1 - level) / 2
    return np.quantile(values, a, axis=-1), np.quantile(values, 1 - a, axis=-1)


def confusion_ci(tn: float, fp: float, fn: float, tp: float, metrics=CI_METRICS,
                 n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
                 ) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each metric: {metric: (low, high)}."""
    cells = np.array([tn, fp, fn, tp], dtype=np.float64)
    n = int(round(cells.sum()))
    if n == 0:
        return {m: (0.0, 0.0) for m in metrics}
    draws = np.random.default_rng(seed).multinomial(n, cells / n, size=n_boot).T
    rates = _rates(*draws)
    out = {}
    for m in metrics:
        lo, hi = _percentiles(rates[m], level)
        out[m] = (float(lo), float(hi))
    return out


def paired_difference(y, pred_a, pred_b, metric: str = "mcc", n_boot: int = N_BOOT,
                      seed: int = 0, level: float = LEVEL) -> dict:
    """metric(A) - metric(B) on the same flows, its paired bootstrap interval and a verdict:
    'better' (interval above 0), 'worse' (below 0) or 'no evidence either way'."""
    y, a, b = (np.asarray(v).reshape(-1).astype(np.int64) for v in (y, pred_a, pred_b))
    cell = y * 4 + a * 2 + b  # (label, A, B) -> 0..7
    counts = np.bincount(cell, minlength=8).astype(np.float64)
    n = len(y)
    if n == 0:
        return {"diff": 0.0, "low": 0.0, "high": 0.0, "verdict": "no evidence either way"}

    def metric_of(c: np.ndarray, which: int) -> np.ndarray:
        """Confusion of model A (which=0) or B (which=1) from the 8 cell counts."""
        c = c.reshape(2, 2, 2, *c.shape[1:])  # label, A, B
        c = c.sum(axis=2) if which == 0 else c.sum(axis=1)  # label, prediction
        return _rates(c[0, 0], c[0, 1], c[1, 0], c[1, 1])[metric]

    diff = float(metric_of(counts, 0) - metric_of(counts, 1))
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_boot).T
    lo, hi = _percentiles(metric_of(draws, 0) - metric_of(draws, 1), level)
    lo, hi = float(lo), float(hi)
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "no evidence either way"
    return {"diff": diff, "low": lo, "high": hi, "verdict": verdict}


def with_ci(value: float, ci: tuple[float, float] | None) -> str:
    """'0.876 [0.851, 0.899]'."""
    return f"{value:.3f}" if ci is None else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
