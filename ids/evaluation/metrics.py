"""Every metric and the threshold search, shared by all commands. Attack = positive = 1.

NF-BoT-IoT is ~98 % attacks: predicting "attack" for every flow already scores F1 0.998, so a
report always shows the class-balanced metrics (MCC, balanced accuracy, benign recall, false
alarm rate) and the baselines next to the paper's accuracy/precision/recall/F1.

Zero-division rule: a ratio whose denominator is 0 is 0.0 (precision with no attack predicted,
recall with no attack present, MCC when a row or column of the confusion matrix is empty, as
scikit-learn does). Balanced accuracy is the mean of recall and benign recall, each with that
rule. Nothing returned is NaN.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ids.config import InputError

PAPER_METRICS = ["accuracy", "precision", "recall", "f1"]
REPORT_METRICS = PAPER_METRICS + [
    "mcc", "balanced_accuracy", "benign_recall", "false_alarm_rate", "roc_auc", "pr_auc",
]
THRESHOLD_METRICS = ("f1", "mcc", "balanced_accuracy", "precision", "recall", "accuracy")


def _div(num, den):
    """num / den elementwise, 0.0 where den == 0 (works on scalars and arrays)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _rates(tn, fp, fn, tp) -> dict[str, np.ndarray]:
    """The confusion-matrix metrics, vectorised so threshold_curve and the scalar path agree."""
    tn, fp, fn, tp = (np.asarray(v, dtype=np.float64) for v in (tn, fp, fn, tp))
    recall, benign_recall = _div(tp, tp + fn), _div(tn, tn + fp)
    return {
        "accuracy": _div(tp + tn, tn + fp + fn + tp),
        "precision": _div(tp, tp + fp),
        "recall": recall,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "mcc": _div(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))),
        "balanced_accuracy": (recall + benign_recall) / 2,
        "benign_recall": benign_recall,
        "false_alarm_rate": _div(fp, tn + fp),
    }


class ScoreError(InputError, ValueError):
    """Scores that cannot be judged (NaN): the model's output is broken, not the labels."""


def _finite_scores(s: np.ndarray) -> np.ndarray:
    """`s` unless it holds NaN: a NaN score is neither attack nor benign, so no metric or
    threshold may silently count it as either."""
    nan = np.flatnonzero(np.isnan(s))
    if len(nan):
        raise ScoreError(f"{len(nan)} of {len(s)} scores are NaN (the first at flow {nan[0]}): "
                         "the model's output is not a number (diverged weights?); retrain it or "
                         "check the flows it scored")
    return s


def _labels(y_true, n: int | None = None) -> np.ndarray:
    y = np.asarray(y_true).reshape(-1)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (benign) or 1 (attack), got {np.unique(y)[:10]}")
    if n is not None and len(y) != n:
        raise ValueError(f"labels and predictions must have the same length, got {len(y)} and {n}")
    if len(y) == 0:
        raise ValueError("need at least one sample")
    return y.astype(bool)


def confusion(y_true, y_pred) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) of 0/1 labels and 0/1 predictions."""
    p = np.asarray(y_pred).reshape(-1).astype(bool)
    y = _labels(y_true, len(p))
    tp = int(np.count_nonzero(y & p))
    fp = int(np.count_nonzero(~y & p))
    fn = int(np.count_nonzero(y & ~p))
    return len(y) - tp - fp - fn, fp, fn, tp


def metrics_from_confusion(tn: int, fp: int, fn: int, tp: int) -> dict[str, float]:
    """accuracy, precision, recall, f1, mcc, balanced_accuracy, benign_recall, false_alarm_rate."""
    return {k: float(v) for k, v in _rates(tn, fp, fn, tp).items()}


def _ranking_auc(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC, average precision). With one class only there is no ranking to judge: ROC-AUC
    is 0.5 and PR-AUC the prevalence (1.0 or 0.0), the values of an uninformative scorer.
    Non-finite scores are ranked as the lowest (NaN, -inf) or highest (+inf) of all."""
    if y.all() or not y.any():
        return 0.5, float(y.mean())
    if not np.isfinite(scores).all():
        finite = scores[np.isfinite(scores)]
        lo, hi = (finite.min() - 1, finite.max() + 1) if finite.size else (0.0, 0.0)
        scores = np.nan_to_num(scores, nan=lo, neginf=lo, posinf=hi)
    return float(roc_auc_score(y, scores)), float(average_precision_score(y, scores))


def compute_metrics(y_true, scores, threshold: float, attack=None) -> dict[str, float]:
    """All report metrics when "attack" is predicted for score >= threshold.

    Adds tn/fp/fn/tp/n and threshold (as floats, for loggers), and with `attack` (the category
    of each flow) "detection_rate/<Category>": the fraction of that category's flows predicted
    attack. For "detection_rate/Benign" that fraction is the false alarm rate.
    """
    s = _finite_scores(np.asarray(scores, dtype=np.float64).reshape(-1))
    y = _labels(y_true, len(s))
    pred = s >= threshold
    tn, fp, fn, tp = confusion(y, pred)
    out = metrics_from_confusion(tn, fp, fn, tp)
    out["roc_auc"], out["pr_auc"] = _ranking_auc(y, s)
    out.update(tn=float(tn), fp=float(fp), fn=float(fn), tp=float(tp), n=float(len(y)))
    out["threshold"] = float(threshold)
    if attack is not None:
        cats = np.asarray(attack).reshape(-1).astype(str)
        if len(cats) != len(y):
            raise ValueError(f"attack has {len(cats)} entries for {len(y)} samples")
        for cat in np.unique(cats):
            out[f"detection_rate/{cat}"] = float(pred[cats == cat].mean())
    return out


def threshold_curve(y_true, scores, metric: str = "f1") -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, values): each unique score, ascending, and `metric` when predicting attack
    for score >= threshold. One sort and two cumulative sums: O(n log n)."""
    if metric not in THRESHOLD_METRICS:
        raise ValueError(f"metric must be one of {', '.join(THRESHOLD_METRICS)}, got {metric!r}")
    s = _finite_scores(np.asarray(scores, dtype=np.float64).reshape(-1))
    y = _labels(y_true, len(s))
    order = np.argsort(-s, kind="stable")  # descending scores
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # end of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    pos = tp[-1]
    values = _rates(len(s) - pos - fp, fp, pos - tp, tp)[metric]
    return s[last][::-1].copy(), values[::-1].copy()


def best_threshold(y_true, scores, metric: str = "f1") -> tuple[float, float]:
    """(threshold, value) maximising `metric`. Ties go to the lowest threshold reaching the
    maximum: flag more flows rather than fewer, since a missed attack costs most here."""
    thresholds, values = threshold_curve(y_true, scores, metric)
    i = int(np.argmax(values))  # first maximum = lowest threshold (ascending order)
    return float(thresholds[i]), float(values[i])


def format_report(columns: dict[str, dict[str, float]], metrics: list[str] | None = None,
                  title: str | None = None) -> str:
    """Plain-text table, one row per metric and one column per source (run, paper, baseline).

    Default rows: the paper's metrics, a blank line, then the rest of REPORT_METRICS. Missing
    values (or None) show as "-", numbers with 4 decimals.
    """
    if metrics is None:
        rest = [m for m in REPORT_METRICS if m not in PAPER_METRICS]
        rows: list[str | None] = [*PAPER_METRICS, None, *rest]
    else:
        rows = list(metrics)

    def cell(value) -> str:
        if value is None:
            return "-"
        return f"{value:.4f}" if isinstance(value, (int, float, np.number)) else str(value)

    names = list(columns)
    table = [["metric", *names]]
    table += [[""] * (len(names) + 1) if row is None
              else [row, *(cell(columns[c].get(row)) for c in names)] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [f"{r[0]:<{widths[0]}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(r[1:], widths[1:], strict=True))
             for r in table]
    lines.insert(1, "-" * len(lines[0]))
    if title:
        lines.insert(0, title)
    return "\n".join(line.rstrip() for line in lines)
