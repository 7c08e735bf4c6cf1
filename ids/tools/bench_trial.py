"""Bench section `trial`: what a sweep worker pays per trial (`ids.data.prepare` then
`ids.run.train` with evaluate_test=false, tracking on), four trials in one process.

`first` is cold (data prepared, baselines fitted, store opened); `next` changes only a model
parameter (data and baselines must come from the caches); `pruned` raises optuna.TrialPruned
after epoch 1, as the pruner does; `bare` is `next` without plots and model logging, so
next - bare is what plots and the logged model cost. Each trial is split into data, compile,
train, eval (validation scoring, threshold, metrics, checkpoint), baselines and tracking+other
(MLflow run, plots, model logging), from public calls only: the baselines are computed by
`ids.run.split_baselines` just before the trial (its own call is then a cache hit), the epochs'
times come from the records `fit` hands to `on_epoch`.
"""

from __future__ import annotations

import statistics
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
            records: list[dict] = []

            def on_epoch(epoch: int, record: dict, prune_at=prune_at, records=records) -> None:
                records.append(dict(record))
                if prune_at is not None and epoch >= prune_at:
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            t0 = time.perf_counter()
            prepared = prepare(cfg.data)  # as ids.sweep.Objective does
            t_data = time.perf_counter() - t0
            cached = len(prepared.train._windows)  # windows already built for this data
            t = time.perf_counter()
            if cfg.trainer.baselines:
                split_baselines(prepared, "val", int(cfg.seed),
                                        cfg.trainer.selection_metric)
            t_base = time.perf_counter() - t
            try:
                train(cfg, prepared=prepared, on_epoch=on_epoch,
                              parent_run_id=parent_run_id, tags={"ids.role": "bench-trial"})
            except optuna.TrialPruned:
                pass
            out[name] = {"total": time.perf_counter() - t0, "data": t_data, "records": records,
                         "baselines": t_base, "windows_cached_before": cached,
                         "same_data": float(prepared is prepare(cfg.data))}
    # Split each trial; one steady epoch (from the complete trials) calibrates compilation.
    steady = [r for n in ("first", "next", "bare") for r in out[n]["records"][1:]]
    steady_train = statistics.median([r["train_seconds"] for r in steady] or [
        out["next"]["records"][0]["train_seconds"]])
    steady_eval = statistics.median([r["epoch_seconds"] - r["train_seconds"] for r in steady]
                                    or [0.0])
    for t in out.values():
        recs = t.pop("records")
        train_s = sum(r["train_seconds"] for r in recs)
        eval_s = sum(r["epoch_seconds"] - r["train_seconds"] for r in recs)
        c_train = max(0.0, recs[0]["train_seconds"] - steady_train)
        c_eval = max(0.0, recs[0]["epoch_seconds"] - recs[0]["train_seconds"] - steady_eval)
        t["epochs"] = float(len(recs))
        t["compile"] = c_train + c_eval
        t["train"] = train_s - c_train
        t["eval"] = eval_s - c_eval
        t["tracking_other"] = max(0.0, t["total"] - t["data"] - train_s - eval_s - t["baselines"])
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
