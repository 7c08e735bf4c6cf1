"""Is the sweep's landscape real? Config spread against seed noise, measured.

    python -m ids.sweep [overrides]               # the study first
    python -m ids.tools.landscape [overrides]     # same overrides: reads that study

Prints, for the study `sweep.study`: the best-minus-worst validation value of its COMPLETE
trials (how much the searched hyperparameters move the objective), the pruned trials per
epoch, and the spread (max - min) of the best trial's configuration retrained with
`--seeds` training seeds (data fixed: `data.seed` stays). The landscape is worth sweeping when
the config spread is several times the seed spread (aim: >= 5x).

The COMPLETE trials are the pruner's survivors: the configurations it stopped early, often the
ones that make the landscape (window 1 on the synthetic data), are not among them, so their
spread understates it. Hence the verdict compares every finished trial, pruned ones included,
at the same training budget: each trial's best value so far at the last epoch that every
finished trial reached (its reported values, when the study prunes on the metric itself), against
the seeds' best values so far at that same epoch.
"""

from __future__ import annotations

import argparse
import sys

from omegaconf import open_dict
from optuna.trial import TrialState

from ids.config import compose


def best_by(values: dict[int, float], epoch: int) -> float:
    """The best of a trial's per-epoch values up to `epoch` (what it had reached by then)."""
    return max(v for e, v in values.items() if e <= epoch)


def seed_values(cfg, params: dict, seeds: list[int]) -> tuple[list[float], list[dict]]:
    """Validation objective of one configuration trained with each seed (tracking off), and
    each seed's selection metric per epoch."""
    from ids.data.prepare import prepare
    from ids.experiment.train import train
    from ids.tuning.space import apply

    out, curves = [], []
    metric = f"val/{cfg.trainer.selection_metric}"
    for seed in seeds:
        tcfg = apply(cfg, params)
        with open_dict(tcfg):
            tcfg.data.seed = int(cfg.data.seed)  # same flows; only initialisation and shuffling
            tcfg.seed = seed
        tcfg.tracking.enabled = False
        tcfg.trainer.evaluate_test = False
        tcfg.trainer.baselines = False
        curve: dict[int, float] = {}
        summary = train(tcfg, prepared=prepare(tcfg.data),
                        on_epoch=lambda e, r, c=curve: c.__setitem__(e, float(r[metric])))
        out.append(float(summary["value"]))
        curves.append(curve)
        print(f"  seed {seed}: val {cfg.trainer.selection_metric} {out[-1]:.4f}", flush=True)
    return out, curves


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
    seeds, curves = seed_values(cfg, best.params, list(range(n_seeds)))
    out = {"n_complete": len(complete), "best": max(values), "worst": min(values),
           "config_spread": max(values) - min(values), "seed_values": seeds,
           "seed_spread": max(seeds) - min(seeds) if seeds else 0.0, "pruned_at": pruned_at(study),
           "best_params": best.params}
    out["ratio"] = out["config_spread"] / max(out["seed_spread"], 1e-4)
    finished = [t for t in study.trials if t.intermediate_values
                and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if str(cfg.sweep.prune_on) == "metric" and curves and all(curves):
        epoch = min([max(t.intermediate_values) for t in finished] + [max(c) for c in curves])
        at = [best_by(t.intermediate_values, epoch) for t in finished]
        seeds_at = [best_by(c, epoch) for c in curves]
        out.update(epoch=epoch, n_finished=len(finished), equal_spread=max(at) - min(at),
                   seed_spread_at_epoch=max(seeds_at) - min(seeds_at))
        out["equal_ratio"] = out["equal_spread"] / max(out["seed_spread_at_epoch"], 1e-4)
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
    print(f"ratio (complete trials, full training): {m['ratio']:.1f}x")
    if "equal_ratio" in m:
        print(f"at epoch {m['epoch']}, which all {m['n_finished']} finished trials (pruned too) "
              f"and the seeds reached: config spread {m['equal_spread']:.4f}, seed spread "
              f"{m['seed_spread_at_epoch']:.4f}, ratio {m['equal_ratio']:.1f}x")
    ratio = m.get("equal_ratio", m["ratio"])
    verdict = "a real landscape" if ratio >= 5 else "too flat to trust (aim: >= 5x)"
    print(f"ratio: {ratio:.1f}x -> {verdict}")
    return m


if __name__ == "__main__":
    main(sys.argv[1:])
