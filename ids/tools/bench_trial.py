"""Bench section `trial`: what a sweep worker pays per trial (`ids.data.prepare` then
`ids.experiment.train.train` with evaluate_test=false, tracking on), four trials in one process.

`first` is cold (data prepared, baselines fitted, store opened); `next` changes only a model
parameter (data and baselines must come from the caches); `pruned` raises optuna.TrialPruned
after epoch 1, as the pruner does; `bare` is `next` without plots and model logging, so
next - bare is what plots and the logged model cost. Each trial is split by the budget the
sweep keeps (`ids.model.budget`): data, compile (building and compiling the graphs), train,
eval (validation scoring, threshold, metrics, checkpoint), baselines and tracking+other (MLflow
run, plots, model logging: the rest of the trial's wall time).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from ids.tools.bench_core import Job, Rows, load1, with_flows

KEYS = ("total", "data", "compile", "train", "eval", "baselines", "tracking_other")
TRIALS = ("first", "next", "pruned", "bare")


def trial_job(overrides: list[str], n_flows: int, epochs: int, parent_run_id: str | None,
              variant: dict[str, str], extra_overrides: tuple[str, ...] = ()) -> dict:
    import optuna

    from ids.config import compose
    from ids.data.prepare import prepare
    from ids.evaluation.baselines import split_baselines
    from ids.experiment.train import train
    from ids.model.budget import Budget

    base = with_flows(overrides, n_flows) + [
        f"trainer.epochs={epochs}", "trainer.patience=0", "trainer.evaluate_test=false",
        "tracking.experiment=bench", "quiet=true"] + list(extra_overrides)
    changed = [f"{k}={v}" for k, v in variant.items()]
    plan = [("first", [], None), ("next", changed, None), ("pruned", changed, 1),
            ("bare", changed + ["tracking.log_plots=false", "tracking.log_model=false"], None)]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ids-bench-") as tmp:
        for name, extra, prune_at in plan:
            cfg = compose(base + extra + [f"trainer.checkpoint_dir={tmp}/{name}"])
            cfg.tracking.run_name = f"bench-trial-{name}"
            epochs_run: list[int] = []

            def on_epoch(epoch: int, record: dict, prune_at=prune_at, seen=epochs_run) -> None:
                seen.append(epoch)
                if prune_at is not None and epoch >= prune_at:
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            budget = Budget()
            t0 = time.perf_counter()
            with budget.part("data"):
                prepared = prepare(cfg.data)  # as ids.tuning.objective.Objective does
            cached = len(prepared.train._windows)  # windows already built for this data
            with budget.part("baselines"):
                if cfg.trainer.baselines:
                    split_baselines(prepared, "val", int(cfg.seed), cfg.trainer.selection_metric)
            try:
                train(cfg, prepared=prepared, on_epoch=on_epoch, parent_run_id=parent_run_id,
                      tags={"ids.role": "bench-trial"}, budget=budget)
            except optuna.TrialPruned:
                pass
            total = time.perf_counter() - t0
            sec = budget.seconds
            t = {"total": total, "epochs": float(len(epochs_run)),
                 "windows_cached_before": cached, "same_data": float(prepared is prepare(cfg.data))}
            for key, part in (("data", "data"), ("compile", "compile"), ("train", "train"),
                              ("eval", "val"), ("baselines", "baselines")):
                t[key] = sec.get(part, 0.0)
            t["tracking_other"] = total - sum(t[k] for k in KEYS[1:-1])
            out[name] = t
    out["load"] = load1()
    return out


def plan_trial(rows: Rows, overrides: list[str], sizes: dict, parent: str | None) -> list[Job]:
    from ids.config import compose

    dropout = float(compose(overrides).model.dropout)
    variant = {"model.dropout": f"{round(dropout / 2, 4)}"}  # a model-only change

    def handle(r: dict) -> None:
        load, wall = r.pop("load"), r.pop("wall")
        for name, t in r.items():
            for key in KEYS:
                rows.add(f"trial.{name}.{key}_seconds", t[key], "s", best="min", load=load)
            rows.add(f"trial.{name}.epochs", t["epochs"], "epochs", load=load)
            rows.add(f"trial.{name}.training_share", t["train"] / t["total"], "of total",
                     load=load)
        rows.add("trial.next.data_reused", r["next"]["same_data"] * float(
            r["next"]["windows_cached_before"] > 0), "bool", best="min", load=load)
        rows.add("trial.pruned_vs_complete", r["pruned"]["total"] / r["next"]["total"], "x",
                 best="min", load=load)
        plots_model = max(0.0, r["next"]["tracking_other"] - r["bare"]["tracking_other"])
        rows.add("trial.plots_model_seconds", plots_model, "s", best="min", load=load)
        rows.add("trial.plots_model_share", plots_model / r["next"]["total"], "of total",
                 best="min", load=load)
        print(f"  trials: first {r['first']['total']:.1f} s, next {r['next']['total']:.1f} s, "
              f"pruned {r['pruned']['total']:.1f} s, bare {r['bare']['total']:.1f} s "
              f"(load {load:.1f}, job {wall:.0f} s)", flush=True)

    return [Job(trial_job, (overrides, sizes["trial_flows"], sizes["trial_epochs"], parent,
                            variant, tuple(sizes["trial_overrides"])), handle, 4.0)]
