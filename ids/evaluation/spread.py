"""Extra-Trees is a draw: one forest per seed, the one the report stands on, and the others.

On one real file the same test split gave the forest MCC 0.971 with one seed and 0.939 with
another: a verdict against one draw says less than it seems. So the report fits the forest
with `trainer.baseline_seeds` seeds and

- its Extra-Trees columns, the headline verdict (today's MLflow keys) and the error table use
  the **median draw**: the seed whose forest has the median MCC on all the scored flows (for
  an even count the lower of the two middle ones, ties by seed). One forest, not an average
  of scores: its predictions are real decisions of one model, which is what a paired bootstrap
  and an error table need; and the median is neither the forest's best nor its worst luck.
- the paired verdict is also given against **each** draw, so a reader sees at once whether the
  verdict depends on which forest was drawn (`worse` against 2 of 3 is not `worse`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ids.evaluation.intervals import paired_difference
from ids.evaluation.metrics import compute_metrics

PER_SEED = ("mcc", "benign_recall", "f1", "balanced_accuracy", "threshold", "tn", "fp", "fn",
            "tp")


def median_seed(y, draws: Mapping[int, tuple[np.ndarray, float]]) -> int:
    """The seed of the median draw by MCC on the flows `y` (lower middle, ties by seed)."""
    ranked = sorted((compute_metrics(y, s, t)["mcc"], seed) for seed, (s, t) in draws.items())
    return ranked[(len(ranked) - 1) // 2][1]


def spread(y, masks: Mapping[str, np.ndarray], draws: Mapping[int, tuple[np.ndarray, float]],
           model_pred: np.ndarray | None = None, seed: int = 0) -> dict:
    """{"seeds", "median_seed", part: {seed: metrics (+ "paired" vs the model)}} for every
    part ("all", "unseen") with flows; `model_pred` the model's 0/1 decisions on all flows."""
    y = np.asarray(y).reshape(-1)
    out: dict = {"seeds": sorted(int(s) for s in draws), "median_seed": median_seed(y, draws)}
    for part, mask in masks.items():
        if not mask.any():
            continue
        out[part] = {}
        for s in out["seeds"]:
            scores, threshold = draws[s]
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)[mask]
            m = compute_metrics(y[mask], scores, threshold)
            row = {k: m[k] for k in PER_SEED}
            if model_pred is not None:
                row["paired"] = paired_difference(y[mask], model_pred[mask], scores >= threshold,
                                                  "mcc", seed=seed)
            out[part][s] = row
    return out


def mlflow_metrics(sp: dict, split: str = "test") -> dict[str, float]:
    """Each draw as a baseline of its own, `baseline/<tag>/extra_trees_seed_<s>/<m>`; the
    count, the median seed and MCC's range, `baseline/<tag>/extra_trees_seeds/{n,
    median_seed,mcc_min,mcc_max}`; `paired/<tag>/seed_<s>/mcc_minus_extra_trees[_ci_low|
    _ci_high]`. The median draw keeps today's `baseline/<tag>/extra_trees/<m>` (the card's)."""
    out: dict[str, float] = {}
    for part in ("all", "unseen"):
        if part not in sp:
            continue
        tag = split if part == "all" else f"{split}_unseen"
        base = f"baseline/{tag}/extra_trees"
        mccs = [row["mcc"] for row in sp[part].values()]
        out.update({f"{base}_seeds/n": float(len(sp["seeds"])),
                    f"{base}_seeds/median_seed": float(sp["median_seed"]),
                    f"{base}_seeds/mcc_min": float(min(mccs)),
                    f"{base}_seeds/mcc_max": float(max(mccs))})
        for s, row in sp[part].items():
            out.update({f"{base}_seed_{s}/{k}": float(row[k]) for k in PER_SEED})
            if "paired" in row:
                key, p = f"paired/{tag}/seed_{s}/mcc_minus_extra_trees", row["paired"]
                out.update({key: p["diff"], f"{key}_ci_low": p["low"], f"{key}_ci_high": p["high"]})
    return out


def verdict_tags(sp: dict, split: str = "test") -> dict[str, str]:
    """`verdict.<split>[_unseen].vs_extra_trees.seed_<s>`: the verdict against each draw."""
    out = {}
    for part in ("all", "unseen"):
        for s, row in sp.get(part, {}).items():
            if "paired" in row:
                tag = split if part == "all" else f"{split}_unseen"
                out[f"verdict.{tag}.vs_extra_trees.seed_{s}"] = row["paired"]["verdict"]
    return out


def line(sp: dict, part: str, split: str = "test", too_few: str | None = None) -> str:
    """'extra-trees over 3 seeds, MCC on all test flows: median 0.970 (seed 1), 0.956-0.985
    (seed 0: 0.956, 1: 0.970, 2: 0.985)'; `too_few` ('16 benign'): n/a instead."""
    rows = sp[part]
    head = f"extra-trees over {len(rows)} seeds, MCC on {part} {split} flows"
    if too_few:
        return f"{head}: n/a ({too_few})"
    mccs = {s: row["mcc"] for s, row in rows.items()}
    med = sp["median_seed"]
    each = ", ".join(f"{s}: {v:.3f}" for s, v in mccs.items())
    return (f"{head}: median "
            f"{mccs[med]:.3f} (seed {med}), {min(mccs.values()):.3f}-{max(mccs.values()):.3f} "
            f"(seed {each})")


def verdicts_line(sp: dict, part: str) -> str:
    """'  against each seed's forest: seed 0 -0.190 worse, seed 1 ...: worse against all 3'."""
    rows = sp[part]
    verdicts = [row["paired"]["verdict"] for row in rows.values()]
    each = ", ".join(f"seed {s} {row['paired']['diff']:+.3f} {row['paired']['verdict']}"
                     for s, row in rows.items())
    if len(set(verdicts)) == 1:
        return f"  against each seed's forest: {each}: {verdicts[0]} against all {len(rows)}"
    return f"  against each seed's forest: {each}: the verdict depends on the draw"
