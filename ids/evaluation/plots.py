"""Diagnostic figures. Each function returns a matplotlib Figure; the caller saves or logs it
(`fig.savefig(path)`, `mlflow.log_figure(fig, "name.png")`).

Figures are built with `matplotlib.figure.Figure` on the Agg canvas, not pyplot: no display is
needed and no global figure registry keeps them alive in long sweeps.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from ids.evaluation.metrics import threshold_curve


def _figure(width: float = 5.0, height: float = 4.0) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_confusion(tn: float, fp: float, fn: float, tp: float) -> Figure:
    """Confusion matrix with counts and row percentages (rows = true class)."""
    fig, ax = _figure(4.5, 4.0)
    counts = np.array([[tn, fp], [fn, tp]], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), c in np.ndenumerate(counts):
        ax.text(j, i, f"{int(c):,}\n{share[i, j]:.2%}", ha="center", va="center",
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks([0, 1], ["benign", "attack"])
    ax.set_yticks([0, 1], ["benign", "attack"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    return fig


def plot_pr_curve(y_true, scores) -> Figure:
    """Precision-recall curve with the all-attack precision (prevalence) as reference."""
    y = np.asarray(y_true).reshape(-1)
    precision, recall, _ = precision_recall_curve(y, np.asarray(scores).reshape(-1))
    fig, ax = _figure()
    ax.plot(recall, precision, label="model")
    ax.axhline(float(y.mean()), color="grey", linestyle="--", label="all attack")
    ax.set_xlabel("recall (attack)")
    ax.set_ylabel("precision (attack)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left")
    return fig


def plot_threshold_curve(y_true, scores, metric: str = "f1",
                         chosen_threshold: float | None = None) -> Figure:
    """`metric` against the decision threshold, with the chosen threshold marked."""
    thresholds, values = threshold_curve(y_true, scores, metric)
    fig, ax = _figure()
    ax.plot(thresholds, values)
    if chosen_threshold is not None:
        ax.axvline(chosen_threshold, color="red", linestyle="--",
                   label=f"chosen {chosen_threshold:.4g}")
        ax.legend(loc="lower left")
    ax.set_xlabel("threshold (attack if score >= threshold)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by threshold")
    return fig


def plot_history(history: list[dict], keys: Iterable[str]) -> Figure:
    """One line per key over epochs (entries without the key are skipped)."""
    fig, ax = _figure(6.0, 4.0)
    for key in keys:
        points = [(h.get("epoch", i + 1), h[key]) for i, h in enumerate(history) if key in h]
        if points:
            epochs, values = zip(*points, strict=True)
            ax.plot(epochs, values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_title("Training history")
    ax.legend()
    return fig
