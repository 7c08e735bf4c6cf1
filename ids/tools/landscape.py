"""Is the sweep's landscape real? Config spread against seed noise, measured.

    python -m ids.sweep [overrides]               # the study first
    python -m ids.tools.landscape [overrides]     # same overrides: reads that study

Prints, for the study `sweep.study`: the best-minus-worst validation value of its COMPLETE
trials (how much the searched hyperparameters move the objective), the pruned trials per
epoch, and the spread (max - min) of the best trial's configuration retrained with
`--seeds` training seeds (data fixed: `data.seed` stays). The landscape is worth sweeping when
the config spread is several times the seed spread (aim: >= 5x).
"""

from __future__ import annotations

import argparse
import sys

from omegaconf import open_dict
from optuna.trial import TrialState

from ids.config import compose


def seed_values(cfg, params: dict, seeds: list[int]) -> list[float]:
    """Validation objective of one configuration trained with each seed (tracking off)."""
    from ids.data.prepare import prepare
    from ids.experiment.train import train
    from ids.tuning.space import apply

    out = []
    for seed in seeds:
        tcfg = apply(cfg, params)
        with open_dict(tcfg):
            tcfg.data.seed = int(cfg.data.seed)  # same flows; only initialisation and shuffling
            tcfg.seed = seed
        tcfg.tracking.enabled = False
        tcfg.trainer.evaluate_test = False
        tcfg.trainer.baselines = False
        summary = train(tcfg, prepared=prepare(tcfg.data))
        out.append(float(summary["value"]))
        print(f"  seed {seed}: val {cfg.trainer.selection_metric} {out[-1]:.4f}", flush=True)
    return out


def measure(cfg, n_seeds: int = 3, trial: int | None = None) -> dict:
    """The landscape figures of the study `cfg.sweep.study` (which must exist); the seed spread
    is that of its best trial's configuration, or of trial number `trial`."""
    from ids.tuning.promote import existing_study
    from ids.tuning.report import pruned_at
    from ids.tuning.study import champion

    study = existing_study(cfg.sweep)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise SystemExit(f"study {study.study_name!r} has {len(complete)} COMPLETE trial(s); "
                         "run the sweep first (python -m ids.sweep with the same overrides)")
    values = [t.value for t in complete]
    best = champion(study) if trial is None else study.trials[int(trial)]
    print(f"study {study.study_name}: {len(complete)} complete, "
          f"{sum(t.state == TrialState.PRUNED for t in study.trials)} pruned "
          f"(by epoch: {pruned_at(study)})")
    print(f"trial {best.number} ({best.value}): {best.params}; retraining it with {n_seeds} seeds")
    seeds = seed_values(cfg, best.params, list(range(n_seeds)))
    out = {"n_complete": len(complete), "best": max(values), "worst": min(values),
           "config_spread": max(values) - min(values), "seed_values": seeds,
           "seed_spread": max(seeds) - min(seeds) if seeds else 0.0, "pruned_at": pruned_at(study),
           "best_params": best.params}
    out["ratio"] = out["config_spread"] / max(out["seed_spread"], 1e-4)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3,
                        help="training seeds of the best config (0: only the study's figures)")
    parser.add_argument("--trial", type=int, default=None,
                        help="retrain this trial's config instead of the best one")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to ids.sweep")
    args = parser.parse_args(argv)
    cfg = compose(args.overrides)
    m = measure(cfg, args.seeds, args.trial)
    metric = cfg.trainer.selection_metric
    print(f"\nconfig spread (best - worst complete val {metric}): {m['config_spread']:.4f} "
          f"({m['worst']:.4f} .. {m['best']:.4f}, {m['n_complete']} trials)")
    print(f"seed spread of the best config ({args.seeds} seeds): {m['seed_spread']:.4f} "
          f"({', '.join(f'{v:.4f}' for v in m['seed_values'])})")
    verdict = "a real landscape" if m["ratio"] >= 5 else "too flat to trust (aim: >= 5x)"
    print(f"ratio: {m['ratio']:.1f}x -> {verdict}")
    return m


if __name__ == "__main__":
    main(sys.argv[1:])
