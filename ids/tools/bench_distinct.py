"""Bench section `distinct`: what distinct windows save, per epoch and per trial, on real flows.

On the shared NF-BoT-IoT sample (`--distinct-data`, default ../shared/data/nf-bot-iot-sample.csv.gz;
the section is skipped with a line saying so when the file is absent), for windows 1 and 10
and each `trainer.distinct` mode (off: every flow; auto, the default: each distinct validation
window scored once where a fifth or more are copies; on: also each distinct (window, label) pair
trained once, weighted by its copies), interleaved in one run: `fit` with the nf_bot_iot start
point's model for `distinct_epochs` epochs, patience off, one fresh process per measurement
(`--quick`: one process for all of them, whose figures are only checked to be there).

Rows `distinct.w<T>.<mode>.`: `epoch_seconds` (training + validation, median over epochs),
`train_seconds` / `val_seconds` per epoch, `trial_seconds` (the whole fit: graphs compiled,
every epoch, the best checkpoint reloaded), `steps_per_epoch`, `val_mcc` and `val_loss` of the
kept epoch (what the faster epoch buys); `distinct.w<T>.<mode>_vs_off.epoch` and `.trial`: off
over that mode, so above 1 is a speed-up.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ids.tools.bench_core import Job, Rows, load1

MODES = ("off", "auto", "on")
WINDOWS = (1, 10)
# The nf_bot_iot preset's first start point (conf/sweep/nf_bot_iot.yaml), without its window.
START = ["data=nf_bot_iot", "trainer.lr=0.0017", "model.kernel_size=3", "model.lstm_units=64",
         "model.dropout=0.2", "model.filters=64", "model.conv_layers=2", "model.dense_units=0",
         "trainer.batch_size=256", "trainer.patience=0", "trainer.baselines=false"]


def distinct_job(overrides: list[str], path: str, window: int, mode: str, epochs: int) -> dict:
    from ids.config import compose
    from ids.data.prepare import prepare
    from ids.model.budget import Budget
    from ids.model.fit import fit
    from ids.model.runtime import setup_runtime

    cfg = compose(START + list(overrides) + [
        f"data.path={path}", f"data.window={window}", f"trainer.distinct={mode}",
        f"trainer.epochs={epochs}"])
    setup_runtime(cfg.trainer)
    prepared = prepare(cfg.data)
    steps: list[int] = []
    budget = Budget()
    t0 = time.perf_counter()
    result = fit(cfg, prepared, budget=budget, on_batch=lambda done, n: steps.append(n))
    trial = time.perf_counter() - t0
    h = result.history
    kept = h[result.best_epoch - 1]
    return {"trial": trial, "steps": float(steps[-1]),
            "train": [r["train_seconds"] for r in h],
            "val": [r["epoch_seconds"] - r["train_seconds"] for r in h],
            "epoch": [r["epoch_seconds"] for r in h],
            "val_mcc": kept["val/mcc"], "val_loss": kept["val/loss"], "load": load1()}


def plan_distinct(rows: Rows, overrides: list[str], sizes: dict, repeat: int,
                  path: str) -> list[Job]:
    if not Path(path).is_file():
        print(f"  distinct: skipped, {path} is absent (--distinct-data names the NF file)",
              flush=True)
        return []

    def handler(window: int, mode: str):
        def handle(r: dict) -> None:
            name, load = f"distinct.w{window}.{mode}", r["load"]
            for key in ("epoch", "train", "val"):
                rows.add(f"{name}.{key}_seconds", statistics.median(r[key]), "s", best="min",
                         load=load)
            rows.add(f"{name}.trial_seconds", r["trial"], "s", best="min", load=load)
            rows.add(f"{name}.steps_per_epoch", r["steps"], "steps", best="min", load=load)
            rows.add(f"{name}.val_mcc", r["val_mcc"], "MCC", best="median", load=load)
            rows.add(f"{name}.val_loss", r["val_loss"], "BCE", best="median", load=load)
            print(f"  {name}: epoch {statistics.median(r['epoch']):.2f} s, trial "
                  f"{r['trial']:.1f} s, val MCC {r['val_mcc']:.3f} (load {load:.1f}, "
                  f"job {r['wall']:.0f} s)", flush=True)
        return handle

    epochs = int(sizes["distinct_epochs"])
    extra = list(sizes.get("distinct_overrides", [])) + list(overrides)
    cases = [(w, m) for _ in range(repeat) for w in WINDOWS for m in MODES]
    if sizes.get("distinct_one_process"):  # --quick: the figures are checked, not compared
        def handle_all(r: dict) -> None:
            for (w, m), one in zip(cases, r["runs"], strict=True):
                handler(w, m)(one | {"wall": r["wall"]})
        return [Job(distinct_jobs, (extra, path, cases, epochs), handle_all, 2.0 * len(cases))]
    return [Job(distinct_job, (extra, path, w, m, epochs), handler(w, m), 2.0) for w, m in cases]


def distinct_jobs(overrides: list[str], path: str, cases: list, epochs: int) -> dict:
    """Every (window, mode) of `cases` in this one process, in order."""
    return {"runs": [distinct_job(overrides, path, w, m, epochs) for w, m in cases]}


def distinct_ratios(rows: Rows) -> None:
    for w in WINDOWS:
        for mode in MODES[1:]:
            for key in ("epoch", "trial"):
                a, b = (f"distinct.w{w}.off.{key}_seconds", f"distinct.w{w}.{mode}.{key}_seconds")
                if a in rows.rows and b in rows.rows:
                    rows.add(f"distinct.w{w}.{mode}_vs_off.{key}", rows.value(a) / rows.value(b),
                             "x")
