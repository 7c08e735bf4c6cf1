"""The final report of a model on test flows: all flows and unseen flows, with intervals.

Every source (the model, all-attack, Extra-Trees) is scored on the same flows twice: on all of
them, and on the unseen ones (flows whose feature vector does not occur in the training split,
see `ids.data.copies`). The four headline metrics get a 95 % bootstrap interval (`ids.evaluation.intervals`), and a
paired bootstrap of model minus Extra-Trees MCC gives the verdict the report prints. Given
several Extra-Trees draws (one per seed), the card stands on the median one and gives the
verdict against each (`ids.evaluation.spread`); the error table (`ids.evaluation.errors`) says
which flows the model gets wrong where that forest is right, and the reverse.

MLflow keys (split = test): `test/<m>`, `test/<m>_ci_low|_ci_high`, `test_unseen/...`,
`baseline/test/<name>/...`, `baseline/test_unseen/<name>/...`,
`paired/test/mcc_minus_extra_trees[_ci_low|_ci_high]`, `paired/test_unseen/...`; with
several draws `baseline/test[_unseen]/extra_trees_seed_<s>/...`,
`baseline/test[_unseen]/extra_trees_seeds/{n,median_seed,mcc_min,mcc_max}` and
`paired/test[_unseen]/seed_<s>/mcc_minus_extra_trees...`; and
`errors/test[_unseen]/<outcome>` (the full table: `error_csv(card)`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ids.data.copies import MIN_CLASS_FLOWS, overlap_line
from ids.evaluation import errors, spread
from ids.evaluation.intervals import CI_METRICS, confusion_ci, paired_difference, with_ci
from ids.evaluation.metrics import PAPER_METRICS, REPORT_METRICS, compute_metrics, format_report

MODEL = "model"
TITLES = {"all_attack": "all-attack", "extra_trees": "extra-trees"}
PARTS = ("all", "unseen")
# Rates that need flows of that class to mean anything.
NEEDS = {"benign": {"benign_recall", "false_alarm_rate", "balanced_accuracy", "mcc", "roc_auc",
                    "precision"},
         "attack": {"recall", "f1", "balanced_accuracy", "mcc", "roc_auc", "pr_auc", "precision"}}


def _score(y, scores, threshold, attack, seed: int) -> dict:
    if len(y) == 0:
        return {}
    m = compute_metrics(y, scores, threshold, attack)
    for key, (lo, hi) in confusion_ci(m["tn"], m["fp"], m["fn"], m["tp"], seed=seed).items():
        m[f"{key}_ci_low"], m[f"{key}_ci_high"] = lo, hi
    return m


def _decisions(pred: tuple[np.ndarray, float]) -> np.ndarray:
    return np.asarray(pred[0], dtype=np.float64).reshape(-1) >= pred[1]


def build(y, attack, unseen, preds: dict, seed: int = 0, split: str = "test") -> dict:
    """Scores of every source on all and on unseen flows, their intervals, the paired verdicts
    and, with the model and Extra-Trees, the error table. `preds` maps a source (MODEL,
    all_attack, extra_trees) to (scores, threshold); extra_trees may map {seed: (scores,
    threshold)} instead (several draws): the card then stands on the median draw and
    `card["spread"]` holds every draw's figures and verdict."""
    y = np.asarray(y).reshape(-1)
    attack = np.asarray(attack, dtype=object).reshape(-1)
    unseen = np.asarray(unseen, dtype=bool).reshape(-1)
    masks = {"all": np.ones(len(y), bool), "unseen": unseen}
    card: dict = {"split": split, "counts": {}, "all": {}, "unseen": {}, "paired": {}}
    preds = dict(preds)
    if isinstance(preds.get("extra_trees"), Mapping):
        draws = preds["extra_trees"]
        model_pred = _decisions(preds[MODEL]) if MODEL in preds else None
        card["spread"] = spread.spread(y, masks, draws, model_pred, seed=seed)
        preds["extra_trees"] = draws[card["spread"]["median_seed"]]
    if MODEL in preds and "extra_trees" in preds:
        card["errors"] = errors.table(y, attack, unseen, _decisions(preds[MODEL]),
                                      _decisions(preds["extra_trees"]))
    for part, mask in masks.items():
        yy = y[mask]
        card["counts"][part] = {"n": int(mask.sum()), "benign": int((yy == 0).sum()),
                                "attack": int((yy == 1).sum())}
        for name, (scores, thr) in preds.items():
            s = np.asarray(scores, dtype=np.float64).reshape(-1)
            card[part][name] = _score(yy, s[mask], thr, attack[mask], seed)
        if MODEL in preds and "extra_trees" in preds and mask.any():
            pm, pe = _decisions(preds[MODEL])[mask], _decisions(preds["extra_trees"])[mask]
            card["paired"][part] = paired_difference(yy, pm, pe, "mcc", seed=seed)
    return card


def mlflow_metrics(card: dict) -> dict[str, float]:
    """Flat {key: value} of a card, keys as in the module docstring."""
    split, out = card["split"], {}
    for part in PARTS:
        tag = split if part == "all" else f"{split}_unseen"
        for name, m in card[part].items():
            prefix = f"{tag}/" if name == MODEL else f"baseline/{tag}/{name}/"
            out.update({prefix + k: float(v) for k, v in m.items()
                        if isinstance(v, (int, float)) and v == v})
        if part in card["paired"]:
            p = card["paired"][part]
            key = f"paired/{tag}/mcc_minus_extra_trees"
            out.update({key: p["diff"], f"{key}_ci_low": p["low"], f"{key}_ci_high": p["high"]})
    if "spread" in card:
        out.update(spread.mlflow_metrics(card["spread"], split))
    if "errors" in card:
        out.update(errors.mlflow_metrics(card["errors"], split))
    return {k.replace(" ", "_"): v for k, v in out.items()}


def verdict_tags(card: dict) -> dict[str, str]:
    """The verdict against the forest the card stands on, and against each draw."""
    out = {f"verdict.{card['split']}{'' if part == 'all' else '_unseen'}.vs_extra_trees":
           p["verdict"] for part, p in card["paired"].items()}
    if "spread" in card:
        out.update(spread.verdict_tags(card["spread"], card["split"]))
    return out


def error_csv(card: dict) -> str | None:
    """The error table as CSV text (errors.csv), or None when the card has none."""
    return errors.to_csv(card["errors"]) if "errors" in card else None


def _cells(m: dict, rows, too_few: dict[str, int]) -> dict[str, object]:
    """Report cells of one column: value, 'value [low, high]', or why no rate is shown."""
    out: dict[str, object] = {}
    for row in rows:
        if row is None or row not in m:
            continue
        short = [f"{n} {cls}" for cls, n in too_few.items() if row in NEEDS[cls]]
        if short:
            out[row] = f"n/a ({', '.join(short)})"
        elif row in CI_METRICS and f"{row}_ci_low" in m:
            out[row] = with_ci(m[row], (m[f"{row}_ci_low"], m[f"{row}_ci_high"]))
        else:
            out[row] = m[row]
    return out


def _too_few(c: dict) -> str | None:
    """'16 benign' when a class has fewer than MIN_CLASS_FLOWS flows: no MCC then."""
    short = [f"{c[cls]} {cls}" for cls in ("benign", "attack") if c[cls] < MIN_CLASS_FLOWS]
    return ", ".join(short) or None


def _against_the_forest(card: dict) -> list[str]:
    """The Extra-Trees seed spread, the paired verdicts (against the median draw and each
    draw) and where the model and that forest differ."""
    split, sp, lines = card["split"], card.get("spread"), []
    if sp and len(sp["seeds"]) > 1:
        lines += ["", *(spread.line(sp, part, split,
                                    _too_few(card["counts"][part]) if part == "unseen" else None)
                        for part in PARTS if part in sp),
                  f"  the extra-trees columns, the verdicts and the error table use seed "
                  f"{sp['median_seed']}'s forest, the median draw"]
    elif sp:
        lines += ["", f"extra-trees: one forest (seed {sp['median_seed']}); with "
                  "trainer.baseline_seeds > 1 the report shows how much other seeds' differ"]
    if card["paired"]:
        lines.append("")
    for part, p in card["paired"].items():
        head = f"model vs extra-trees, MCC difference on {part} {split} flows"
        c = card["counts"][part]
        if part == "unseen" and _too_few(c):
            lines.append(f"{head}: n/a ({c['benign']} benign, {c['attack']} attack: fewer "
                         f"than {MIN_CLASS_FLOWS} of a class)")
            continue
        lines.append(f"{head} (paired bootstrap): "
                     f"{with_ci(p['diff'], (p['low'], p['high']))}: {p['verdict']}")
        if sp and len(sp["seeds"]) > 1 and part in sp:
            lines.append(spread.verdicts_line(sp, part))
    if card.get("errors"):
        forest = f"extra-trees (seed {sp['median_seed']})" if sp else "extra-trees"
        lines += ["", *errors.summary(card["errors"], split, forest)]
    return lines


def default_rows() -> list[str | None]:
    rest = [m for m in REPORT_METRICS if m not in PAPER_METRICS]
    return [*PAPER_METRICS, None, *rest]


def text(card: dict, label: str, *, paper: dict | None = None, rows=None,
         overlap: dict | None = None, title: str | None = None) -> str:
    """Two tables (all flows with the paper's claims, unseen flows), the copy shares, the
    paired verdict and what the intervals mean."""
    rows = rows or default_rows()
    split, c_all, c_un = card["split"], card["counts"]["all"], card["counts"]["unseen"]
    lines = [title] if title else []
    if overlap:
        lines.append(overlap_line(f"{split} flows", overlap))
    cols: dict[str, dict] = {}
    if paper:
        cols["paper (claimed)"] = dict(paper)
    for name, m in card["all"].items():
        cols[label if name == MODEL else TITLES.get(name, name)] = _cells(m, rows, {})
    lines += ["", f"all {c_all['n']:,} {split} flows ({c_all['benign']:,} benign, "
              f"{c_all['attack']:,} attack), 95 % intervals in brackets:",
              format_report(cols, rows)]
    if c_un["n"]:
        too_few = {cls: c_un[cls] for cls in ("benign", "attack") if c_un[cls] < MIN_CLASS_FLOWS}
        ucols = {f"{label if name == MODEL else TITLES.get(name, name)} unseen":
                 _cells(m, default_rows(), too_few) for name, m in card["unseen"].items()}
        lines += ["", f"unseen: {c_un['n']:,} {split} flows whose features are not in the "
                  f"training split ({c_un['benign']:,} benign, {c_un['attack']:,} attack):",
                  format_report(ucols, default_rows())]
        if too_few:
            lines.append("n/a: fewer than " f"{MIN_CLASS_FLOWS} unseen flows of that class; "
                         "no rate that needs them is shown")
    else:
        lines += ["", f"unseen: none: every {split} flow is a copy of a training flow"]
    lines += _against_the_forest(card)
    lines.append("intervals: 95 % bootstrap over flows, predictions fixed; flows close in time "
                 "are not independent, so the true uncertainty is larger")
    return "\n".join(lines)
