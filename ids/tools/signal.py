"""Which validation signal tells configurations apart, and from which epoch? Measured.

    python -m ids.tools.signal data=nf_bot_iot data.path=../shared/data/nf-bot-iot-sample.csv.gz \
        sweep=nf_bot_iot --configs 8 --seeds 3 --epochs 8 --json /tmp/signal.json

Trains `--configs` random points of `sweep.params` (seeded; `trainer.epochs` and
`trainer.patience` are fixed to `--epochs` and 0), each with `--seeds` training seeds, tracking
off, and records every epoch's validation figures. Then, per candidate signal (MCC at the tuned
threshold, val loss, class-balanced val loss, ROC-AUC, PR-AUC; losses negated so that higher
is better):

- swing: the median change between neighbouring epochs (second half of training), and the
  seed spread: the median over configurations of max - min over seeds of the trial's value
  (best epoch's), both as a share of the config spread (max - min over configurations of the
  seed-mean value): what is luck, next to what the configuration decides;
- seeds agree: the mean rank correlation (Spearman) between two seeds' values over the
  configurations: would a rerun rank the configurations the same way;
- rung k: the rank correlation between the signal's best-so-far value after epoch k and the
  trial's value in the sweep (val MCC of its best epoch): how early a pruner that compares this
  signal ranks trials as the sweep will;
- MCC of its epoch: the same figures for the MCC of the epoch the signal selects (what the
  trial would report if the signal chose its epoch).

`--from-json` analyses a saved run again without training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SIGNALS = {"mcc": 1.0, "loss": -1.0, "balanced_loss": -1.0, "roc_auc": 1.0, "pr_auc": 1.0}


def sample_points(cfg, n: int, seed: int) -> list[dict]:
    """`n` random points of `sweep.params` (epochs and patience left to the tool)."""
    import optuna

    from ids.tuning.space import suggest

    params = {k: v for k, v in cfg.sweep.params.items()
              if k not in ("trainer.epochs", "trainer.patience")}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for _ in range(n):
        trial = study.ask()
        points.append(suggest(trial, params))
        study.tell(trial, 0.0)
    return points


def record_runs(cfg, points: list[dict], seeds: int, epochs: int,
                save: Path | None = None) -> list[dict]:
    """Every epoch's validation figures of each point and seed (tracking off); written to
    `save` after every run, so a long measurement that stops keeps what it measured."""
    from omegaconf import open_dict

    from ids.data.prepare import prepare
    from ids.experiment.train import train
    from ids.tuning.space import apply

    runs = []
    for i, point in enumerate(points):
        for seed in range(seeds):
            tcfg = apply(cfg, point)
            with open_dict(tcfg):
                tcfg.seed = seed
                tcfg.data.seed = int(cfg.data.seed)  # same flows, other initialisation/shuffle
            tcfg.trainer.epochs, tcfg.trainer.patience = epochs, 0
            tcfg.tracking.enabled, tcfg.trainer.evaluate_test = False, False
            tcfg.trainer.baselines, tcfg.quiet = False, True
            history: list[dict] = []
            train(tcfg, prepared=prepare(tcfg.data, cache_dir=tcfg.cache_dir),
                  on_epoch=lambda e, r, h=history: h.append(
                      {k: float(v) for k, v in r.items() if isinstance(v, (int, float))}))
            runs.append({"config": i, "seed": seed, "point": point, "history": history})
            if save is not None:
                save.write_text(json.dumps(runs))
            print(f"  config {i} seed {seed}: val mcc "
                  + " ".join(f"{h['val/mcc']:.3f}" for h in history), flush=True)
    return runs


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def analyse(runs: list[dict]) -> dict[str, dict]:
    """The figures of the module docstring, per signal (and for the MCC each one selects)."""
    configs = sorted({r["config"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    out = {}
    for name, sign in SIGNALS.items():
        curves = {(r["config"], r["seed"]): sign * np.array([h[f"val/{name}"] for h in r["history"]])
                  for r in runs}
        mccs = {(r["config"], r["seed"]): np.array([h["val/mcc"] for h in r["history"]])
                for r in runs}
        best = {k: int(np.argmax(c)) for k, c in curves.items()}  # first best epoch
        for label, source in ((name, curves), (f"mcc@{name}", mccs)):
            if label == "mcc@mcc":
                continue
            table = np.array([[source[c, s][best[c, s]] for s in seeds] for c in configs])
            config_spread = float(np.ptp(table.mean(axis=1)))
            seed_spread = float(np.median(np.ptp(table, axis=1)))
            agree = [_spearman(table[:, i], table[:, j]) for i in range(len(seeds))
                     for j in range(i + 1, len(seeds))]
            row = {"config_spread": config_spread, "seed_spread": seed_spread,
                   "seed_share": seed_spread / config_spread if config_spread else float("nan"),
                   "seeds_agree": float(np.nanmean(agree)) if agree else float("nan")}
            if label == name:
                half = [np.abs(np.diff(c[len(c) // 2 - 1:])) for c in curves.values()]
                swing = float(np.median(np.concatenate(half))) if half else float("nan")
                row["swing_share"] = swing / config_spread if config_spread else float("nan")
                n_epochs = min(len(c) for c in curves.values())
                value = np.array([np.max(mccs[k]) for k in sorted(curves)])  # the trial's value
                row["rung"] = [_spearman([np.max(curves[k][: e]) for k in sorted(curves)], value)
                               for e in range(1, n_epochs + 1)]
            out[label] = row
    return out


def print_table(result: dict[str, dict]) -> None:
    print(f"\n{'signal':<22} {'config spread':>13} {'seed/config':>11} {'swing/config':>12} "
          f"{'seeds agree':>11}  rank vs the trial's value after epoch 1, 2, ...")
    for label, r in result.items():
        rung = " ".join(f"{v:.2f}" for v in r.get("rung", []))
        swing = f"{r['swing_share']:.2f}" if "swing_share" in r else "-"
        print(f"{label:<22} {r['config_spread']:>13.4f} {r['seed_share']:>11.2f} {swing:>12} "
              f"{r['seeds_agree']:>11.2f}  {rung}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the random points")
    parser.add_argument("--json", default=None, help="write the recorded runs here")
    parser.add_argument("--from-json", default=None, help="analyse these recorded runs")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to ids.sweep")
    args = parser.parse_args(argv)
    if args.from_json:
        runs = json.loads(Path(args.from_json).read_text())
    else:
        from ids.config import compose

        cfg = compose(args.overrides)
        points = sample_points(cfg, args.configs, args.sample_seed)
        runs = record_runs(cfg, points, args.seeds, args.epochs,
                           Path(args.json) if args.json else None)
    result = analyse(runs)
    print_table(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
