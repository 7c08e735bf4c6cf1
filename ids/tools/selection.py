"""Does the sweep's selection agree with test? A check run once, after the study.

    python -m ids.sweep [overrides]                                 # the study first
    python -m ids.tools.selection [overrides] --top 8 --seeds 3     # same overrides

For the study `sweep.study`: the `--top` COMPLETE trials by value, each trial's logged model
scored on the test split (`ids.evaluate`, no evaluation run logged: this is a check of the
method, not a promotion), and the Spearman rank correlation between the trials' values and
their test MCC (the selection is worth trusting at >= 0.8). Then the champion's configuration
retrained with `--seeds` training seeds (the data split fixed) and scored on test: the seed
spread of the champion, and each seed's verdict against Extra-Trees. `--budgets M ...`: the
champion the study had after M minutes (the best trial complete by then) and its test MCC,
champion quality against budget. `--versus A B`: the best COMPLETE trial matching filter A
(`key=value` or `key!=value`, comma-joined: `data.window=1`) against the best matching B
(`data.window_by=host,data.window!=1`), both scored on the same test flows: the paired MCC
difference A - B, its interval and verdict (one study, one budget: which kind of model won it).
`--json FILE` writes every figure.

Test flows are read here, after the study: the sweep itself never scores them.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import numpy as np
from omegaconf import open_dict
from optuna.trial import TrialState

from ids.config import compose


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation of two equally long lists (ties share their mean rank)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) >= 2 else float("nan")


FIGURES = ("test_mcc", "verdict", "extra_trees_mcc")  # what a trial's row reports


def test_figures(cfg, model_uri: str) -> dict:
    """Test MCC of a logged model and its paired verdict against Extra-Trees (`ids.evaluate`,
    nothing logged), and its test decisions (`pred`), labels and file rows for pairing."""
    from ids.experiment.evaluate import evaluate

    ecfg = copy.deepcopy(cfg)  # DictConfig.copy() would share the caller's tracking node
    ecfg.tracking.enabled = False
    out = evaluate(ecfg, model_uri)
    return {"test_mcc": float(out["metrics"]["mcc"]), "verdict": _verdict(out["card"]),
            "extra_trees_mcc": float(out["baselines"]["extra_trees"]["mcc"]),
            "pred": out["scores"] >= out["threshold"], "y": out["y"], "rows": out["rows"]}


def matches(params: dict, spec: str) -> bool:
    """Whether a trial's `params` satisfy `spec`: `key=value` / `key!=value`, comma-joined
    (values compared as text: `data.window=1`, `data.window_by=host,data.window!=1`)."""
    for term in filter(None, (t.strip() for t in spec.split(","))):
        m = re.fullmatch(r"([^!=]+)(!?)=(.*)", term)
        if m is None:
            raise SystemExit(f"--versus {spec!r}: {term!r} is not key=value or key!=value")
        key, neq, value = m.groups()
        same = str(params.get(key.strip())) == value.strip()
        if same == bool(neq):
            return False
    return True


def versus(cfg, complete: list, spec_a: str, spec_b: str, scored) -> dict:
    """The best trial matching `spec_a` against the best matching `spec_b` on the same test
    flows: paired MCC difference (A - B), its bootstrap interval and verdict. `scored(trial)`:
    its `test_figures`."""
    from ids.evaluation.intervals import paired_difference

    picked = []
    for spec in (spec_a, spec_b):
        t = next((t for t in complete if matches(t.params, spec)), None)  # `complete`: by value
        if t is None:
            raise SystemExit(f"--versus: no COMPLETE trial with a logged model matches {spec!r}")
        picked.append((spec, t, scored(t)))
    (_, ta, a), (_, tb, b) = picked
    if not np.array_equal(a["rows"], b["rows"]):
        raise SystemExit("--versus: the two trials' test splits hold different flows (their data "
                         "settings split the file differently); compare trials of one split")
    paired = paired_difference(a["y"], a["pred"], b["pred"], seed=int(cfg.seed))
    side = {s: {"spec": spec, "trial": t.number, "value": float(t.value), "params": t.params,
                **{k: f[k] for k in FIGURES}}
            for s, (spec, t, f) in zip("ab", picked, strict=True)}
    best = complete[0].number
    return {**side, "paired": paired,
            "champion": "a" if best == ta.number else "b" if best == tb.number else None}


def _verdict(card: dict) -> str:
    """'+0.002 [-0.031, 0.035] no evidence either way' on all test flows, '-' without one."""
    p = (card.get("paired") or {}).get("all")
    return f"{p['diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}] {p['verdict']}" if p else "-"


def retrain(cfg, params: dict, seed: int) -> dict:
    """The configuration `params` trained with training seed `seed` (same data split), scored
    on test with its baselines; nothing logged."""
    from ids.experiment.train import train
    from ids.tuning.space import apply

    tcfg = apply(cfg, params)
    with open_dict(tcfg):
        tcfg.seed = seed
    tcfg.tracking.enabled = False
    tcfg.trainer.evaluate_test = True
    tcfg.quiet = True
    summary = train(tcfg)
    return {"seed": seed, "value": float(summary["value"]),
            "test_mcc": float(summary["test"]["mcc"]), "verdict": _verdict(summary["card"]),
            "extra_trees_mcc": float(summary["baselines"]["extra_trees"]["mcc"])}


def champion_at(trials: list, minutes: float):
    """The best COMPLETE trial finished within `minutes` of the study's first trial's start."""
    start = min(t.datetime_start for t in trials if t.datetime_start)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.datetime_complete
            and (t.datetime_complete - start).total_seconds() <= 60 * minutes]
    return max(done, key=lambda t: t.value) if done else None


def measure(cfg, top: int = 8, seeds: int = 3, budgets: list[float] | None = None,
            against: tuple[str, str] | None = None) -> dict:
    from ids.tuning.promote import existing_study

    study = existing_study(cfg.sweep)
    complete = sorted((t for t in study.trials if t.state == TrialState.COMPLETE
                       and t.user_attrs.get("model_uri")), key=lambda t: -t.value)
    if len(complete) < 2:
        raise SystemExit(f"study {study.study_name!r} has {len(complete)} COMPLETE trial(s) with "
                         "a logged model; run the sweep with sweep.log_artifacts=all first")
    figures: dict[int, dict] = {}

    def scored(t) -> dict:  # each trial's model is scored on test once
        if t.number not in figures:
            figures[t.number] = test_figures(cfg, t.user_attrs["model_uri"])
        return figures[t.number]

    def row(t) -> dict:
        return {"trial": t.number, "value": float(t.value),
                **{k: scored(t)[k] for k in FIGURES}}

    rows = []
    for t in complete[:top]:
        rows.append(row(t))
        print(f"  trial {t.number:3d}: value {t.value:.4f} -> test MCC {rows[-1]['test_mcc']:.4f} "
              f"({rows[-1]['verdict']})", flush=True)
    out = {"study": study.study_name, "top": rows,
           "spearman": spearman([r["value"] for r in rows], [r["test_mcc"] for r in rows])}
    best = complete[0]
    out["champion"] = {"trial": best.number, "params": best.params, "seeds": []}
    for seed in range(1, seeds):  # seed 0 is the study's own run (rows[0])
        out["champion"]["seeds"].append(retrain(cfg, best.params, int(cfg.seed) + seed))
        s = out["champion"]["seeds"][-1]
        print(f"  champion, seed {s['seed']}: test MCC {s['test_mcc']:.4f} ({s['verdict']})",
              flush=True)
    out["budgets"] = []
    for minutes in budgets or []:
        t = champion_at(study.trials, minutes)
        out["budgets"].append({"minutes": minutes, **(row(t) if t else {"trial": None})})
    if against:
        out["versus"] = versus(cfg, complete, *against, scored)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8, help="trials scored on test (by value)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="training seeds of the champion's config, its own run included")
    parser.add_argument("--budgets", type=float, nargs="*", default=[],
                        help="minutes: the champion the study had by then, scored on test")
    parser.add_argument("--versus", nargs=2, metavar=("A", "B"), default=None,
                        help="filters (key=value, key!=value, comma-joined): the best trial of "
                             "each, paired on test")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to ids.sweep")
    args = parser.parse_args(argv)
    cfg = compose(args.overrides)
    m = measure(cfg, args.top, args.seeds, args.budgets, args.versus)
    own = m["top"][0]
    spread = [own["test_mcc"]] + [s["test_mcc"] for s in m["champion"]["seeds"]]
    print(f"\nrank correlation of value and test MCC over the top {len(m['top'])} trials: "
          f"{m['spearman']:.2f} (trust the selection at >= 0.8)")
    print(f"champion (trial {m['champion']['trial']}) over {len(spread)} seeds: test MCC "
          f"{min(spread):.4f}-{max(spread):.4f}; verdicts: "
          f"{', '.join([own['verdict']] + [s['verdict'] for s in m['champion']['seeds']])}")
    for b in m["budgets"]:
        if b.get("trial") is None:
            print(f"after {b['minutes']:g} min: no complete trial yet")
        else:
            print(f"after {b['minutes']:g} min: champion trial {b['trial']} (value "
                  f"{b['value']:.4f}), test MCC {b['test_mcc']:.4f} ({b['verdict']})")
    if m.get("versus"):
        v, p = m["versus"], m["versus"]["paired"]
        for s in "ab":
            print(f"{s.upper()} = {v[s]['spec']}: trial {v[s]['trial']} (value {v[s]['value']:.4f}), "
                  f"test MCC {v[s]['test_mcc']:.4f} ({v[s]['verdict']} against Extra-Trees)")
        champion = (f"the study's champion is {v['champion'].upper()}" if v["champion"] else
                    f"the study's champion (trial {m['top'][0]['trial']}) is neither")
        print(f"A - B on the same test flows: {p['diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}] "
              f"{p['verdict']}; {champion}")
    if args.json:
        args.json.write_text(json.dumps(m, indent=1, default=str))
    return m


if __name__ == "__main__":
    main(sys.argv[1:])
