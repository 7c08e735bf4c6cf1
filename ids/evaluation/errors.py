"""Why a model loses to Extra-Trees (or wins): the flows one gets wrong and the other right.

Each flow falls in one of four outcomes: both right, the model wrong where Extra-Trees is right
(`model_only`), the reverse (`extra_trees_only`), both wrong. The table counts them per attack
category, class and part (`copies` of training flows, `unseen` ones: `ids.data.copies`), so a
report can say "19 of the model's 23 extra errors are false alarms on unseen benign flows".

The counts add up to both confusion matrices: on benign rows a wrong flow is a false alarm
(fp) and a right one a tn; on attack rows wrong is a missed attack (fn), right a tp. So
`confusions(rows)` gives back each model's (tn, fp, fn, tp), the check every test makes.
"""

from __future__ import annotations

import csv
import io

import numpy as np

OUTCOMES = ("both_right", "model_only", "extra_trees_only", "both_wrong")
COLUMNS = ("category", "label", "part", "n", *OUTCOMES)
PARTS = ("copies", "unseen")
CLASSES = ("benign", "attack")
SHORT = {"model_only": "model wrong, extra-trees right",
         "extra_trees_only": "extra-trees wrong, model right",
         "both_wrong": "both wrong"}


def table(y, attack, unseen, model_pred, forest_pred) -> list[dict]:
    """One row per (category, class, part) present: n and the count of each outcome. Rows go
    benign first, then by category and part; `model_pred`/`forest_pred` are 0/1 decisions."""
    y = np.asarray(y).reshape(-1).astype(np.int64)
    cats, cat_codes = np.unique(np.asarray(attack).reshape(-1).astype(str), return_inverse=True)
    unseen = np.asarray(unseen, dtype=bool).reshape(-1).astype(np.int64)
    model_pred, forest_pred = (np.asarray(p).reshape(-1).astype(np.int64)
                               for p in (model_pred, forest_pred))
    if not len(y) == len(cat_codes) == len(unseen) == len(model_pred) == len(forest_pred):
        raise ValueError("labels, categories, unseen mask and both predictions must have the "
                         f"same length, got {len(y)}, {len(cat_codes)}, {len(unseen)}, "
                         f"{len(model_pred)} and {len(forest_pred)}")
    wrong_m, wrong_e = model_pred != y, forest_pred != y
    outcome = wrong_m * 1 + wrong_e * 2  # 0 both right, 1 model only, 2 forest only, 3 both
    cell = ((cat_codes.reshape(-1) * 2 + y) * 2 + unseen) * 4 + outcome
    counts = np.bincount(cell, minlength=len(cats) * 16).reshape(len(cats), 2, 2, 4)
    order = {"both_right": 0, "model_only": 1, "extra_trees_only": 2, "both_wrong": 3}
    rows = []
    for label in (0, 1):
        for c, cat in enumerate(cats):
            for p, part in enumerate(PARTS):
                cell_counts = counts[c, label, p]
                if cell_counts.sum():
                    rows.append({"category": str(cat), "label": CLASSES[label], "part": part,
                                 "n": int(cell_counts.sum()),
                                 **{k: int(cell_counts[i]) for k, i in order.items()}})
    return rows


def confusions(rows: list[dict], part: str | None = None) -> dict[str, tuple[int, int, int, int]]:
    """(tn, fp, fn, tp) of the model and of Extra-Trees from the rows (of one part if given)."""
    out = {}
    for who, own, other in (("model", "model_only", "extra_trees_only"),
                            ("extra_trees", "extra_trees_only", "model_only")):
        c = dict.fromkeys(("tn", "fp", "fn", "tp"), 0)
        for r in rows:
            if part is not None and r["part"] != part:
                continue
            wrong, right = r[own] + r["both_wrong"], r[other] + r["both_right"]
            if r["label"] == "benign":
                c["fp"], c["tn"] = c["fp"] + wrong, c["tn"] + right
            else:
                c["fn"], c["tp"] = c["fn"] + wrong, c["tp"] + right
        out[who] = (c["tn"], c["fp"], c["fn"], c["tp"])
    return out


def totals(rows: list[dict], part: str | None = None) -> dict[str, int]:
    """n and the count of each outcome over all rows (of one part if given)."""
    keep = [r for r in rows if part is None or r["part"] == part]
    return {k: sum(r[k] for r in keep) for k in ("n", *OUTCOMES)}


def mlflow_metrics(rows: list[dict], split: str = "test") -> dict[str, float]:
    """`errors/<split>[_unseen]/<outcome>`, and the same split into false alarms and misses."""
    out = {}
    for part, tag in ((None, split), ("unseen", f"{split}_unseen")):
        keep = [r for r in rows if part is None or r["part"] == part]
        for k in ("n", *OUTCOMES):
            out[f"errors/{tag}/{k}"] = float(sum(r[k] for r in keep))
        for k in SHORT:
            out[f"errors/{tag}/{k}_benign"] = float(sum(r[k] for r in keep
                                                        if r["label"] == "benign"))
            out[f"errors/{tag}/{k}_attack"] = float(sum(r[k] for r in keep
                                                        if r["label"] == "attack"))
    return out


def to_csv(rows: list[dict]) -> str:
    """The full table as CSV text (the run's errors.csv)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _breakdown(rows: list[dict], key: str) -> str:
    """'19 Benign (false alarms), 4 DoS (missed)': a category's flows of one outcome."""
    by: dict[tuple[str, str], int] = {}
    for r in rows:
        if r[key]:
            by[(r["category"], r["label"])] = by.get((r["category"], r["label"]), 0) + r[key]
    parts = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n:,} {cat} ({'false alarm' if label == 'benign' else 'missed'}"
                     f"{'s' if label == 'benign' and n > 1 else ''})"
                     for (cat, label), n in parts)


def summary(rows: list[dict], split: str = "test", forest: str = "extra-trees") -> list[str]:
    """A few lines for the report: where the two disagree, by category and copies / unseen."""
    all_, unseen = totals(rows), totals(rows, "unseen")
    lines = [f"where the model and {forest} differ on the {all_['n']:,} {split} flows "
             f"(both right on {all_['both_right']:,}; per category and copies / unseen: "
             "errors.csv):"]
    for key, what in SHORT.items():
        n = all_[key]
        if not n:
            lines.append(f"  {what}: none")
            continue
        lines.append(f"  {what}: {n:,} flow{'s' if n > 1 else ''}: {_breakdown(rows, key)}; "
                     f"{unseen[key]:,} of them unseen")
    return lines
