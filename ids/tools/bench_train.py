"""Bench section `train`: `ids.model.fit.fit` throughput (GRAPH vs PyNative, batch sizes, kernel
threads), `predict_proba` throughput, the ratio to the machine (achieved training FLOP/s over
the numpy sgemm FLOP/s measured in the same process), the MindSpore profile of a step and,
with --twin, the PyTorch twin (`../shared/tools/torch_twin.py`) run right after, in this run.

Throughput = training windows / train_seconds of epochs 2.. (per-step host work and the
end-of-epoch sync included, compilation excluded); compilation = `fit`'s graph building and
compiling (its budget part "compile", before the first epoch). Inference: `predict_proba` at trainer.eval_batch_size after a warm-up call.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
from typing import Any

from ids.tools.bench_core import Job, Rows, load1, with_flows
from ids.tools.bench_profile import PHASES, profile_job, profile_text


def train_job(overrides: list[str], mode: str, threads: int, batch_sizes: list[int],
              n_flows: int, epochs: int, infer_windows: int) -> dict:
    """fit() at each batch size, then predict_proba throughput, in one mode and thread count."""
    import numpy as np

    from ids.config import compose
    from ids.data.prepare import prepare
    from ids.model.budget import Budget
    from ids.model.fit import fit
    from ids.model.runtime import predict_proba, setup_runtime
    from ids.tools.bench_hw import sgemm_flops, train_flops

    cfg = compose(with_flows(overrides, n_flows) + [
        f"trainer.mode={mode}", f"trainer.threads={int(threads)}", f"trainer.epochs={epochs}",
        "trainer.patience=0"])
    setup_runtime(cfg.trainer)
    prepared = prepare(cfg.data)
    T = int(cfg.data.window)
    n_train = len(prepared.train.y)
    n_features = prepared.train.windows(T).shape[2]
    out: dict[str, Any] = {"batches": {}, "train_windows": n_train, "sgemm": sgemm_flops(),
                           "flops_per_window": train_flops(n_features, T, cfg.model)}
    with tempfile.TemporaryDirectory(prefix="ids-bench-") as tmp:
        cfg.trainer.checkpoint_dir = tmp
        model = None
        for bs in batch_sizes:
            cfg.trainer.batch_size = int(bs)
            budget = Budget()
            result = fit(cfg, prepared, budget=budget)
            bs_eff = min(int(bs), n_train)
            n_win = (n_train // bs_eff) * bs_eff
            train_s = [r["train_seconds"] for r in result.history]
            steady = train_s[1:] or train_s
            out["batches"][int(bs)] = {
                "windows_per_s": [n_win / s for s in steady],
                "compile_seconds": budget.seconds.get("compile", 0.0),
            }
            model = result.model
        ebs = int(cfg.trainer.eval_batch_size)
        w = prepared.train.windows(T)
        reps = max(1, -(-int(infer_windows) // max(len(w), 1)))
        x = (w if reps == 1 else np.concatenate([w] * reps))[: int(infer_windows)]
        t = time.perf_counter()
        predict_proba(model, x[:ebs], ebs)  # warm-up: the eval graph for this shape
        first = time.perf_counter() - t
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            predict_proba(model, x, ebs)
            rates.append(len(x) / (time.perf_counter() - t))
        per_batch = min(len(x), ebs) / max(rates)
        out["infer"] = {"windows_per_s": rates, "compile_seconds": max(0.0, first - per_batch)}
    out["sgemm_after"] = sgemm_flops()
    out["load"] = load1()
    return out


def twin_job(python: str, script: str, batch_sizes: list[int]) -> dict:
    """The PyTorch twin in its own interpreter: windows/s per batch size."""
    proc = subprocess.run([python, script, *map(str, batch_sizes)], capture_output=True,
                          text=True, timeout=1800, check=True)
    rates = {int(b): float(r) for b, r in re.findall(r"B=(\d+): (\d+) windows/s", proc.stdout)}
    version = re.search(r"torch (\S+)", proc.stdout)
    return {"rates": rates, "version": version.group(1) if version else "?", "load": load1()}


def plan_train(rows: Rows, extra: dict, overrides: list[str], sizes: dict, repeat: int,
               batch_sizes: list[int], threads: list[int], default_threads: int,
               twin: tuple[str, str] | None = None) -> list[Job]:
    specs = [("graph", default_threads, batch_sizes, sizes["graph_flows"], 3.0)]
    specs += [("graph", t, batch_sizes[:1], sizes["graph_flows"], 2.0) for t in threads
              if t != default_threads]
    specs += [("pynative", default_threads, batch_sizes, sizes["pynative_flows"], 3.0)]

    def handler(mode: str, th: int):
        def handle(r: dict) -> None:
            load = r["load"]
            suffix = "" if th == default_threads else f".threads{th}"
            sgemm = max(r["sgemm"], r["sgemm_after"])
            if mode == "graph" and not suffix:
                rows.add("hw.sgemm_gflops", sgemm / 1e9, "GFLOP/s", load=load)
                rows.add("hw.train_mflop_per_window", r["flops_per_window"] / 1e6, "MFLOP",
                         load=load)
            for bs, b in r["batches"].items():
                name = f"train.{mode}.bs{bs}{suffix}"
                rate = statistics.median(b["windows_per_s"])
                rows.add(f"{name}.windows_per_s", rate, "win/s", load=load)
                rows.add(f"{name}.compile_seconds", b["compile_seconds"], "s", best="min",
                         load=load)
                if mode == "graph":
                    rows.add(f"{name}.of_sgemm_peak", rate * r["flops_per_window"] / sgemm,
                             "of peak", load=load)
                print(f"  {name}: {rate:.0f} windows/s, compile {b['compile_seconds']:.1f} s "
                      f"(load {load:.1f}, job {r['wall']:.0f} s)", flush=True)
            name = f"infer.{mode}.bs{_eval_bs(overrides)}{suffix}"
            rows.add(f"{name}.windows_per_s", max(r["infer"]["windows_per_s"]), "win/s",
                     load=load)
            rows.add(f"{name}.compile_seconds", r["infer"]["compile_seconds"], "s", best="min",
                     load=load)
        return handle

    def handle_profile(r: dict) -> None:
        load = r["load"]
        for p in PHASES:
            rows.add(f"profile.{p}_ms_per_step", r["phase_ms"][p], "ms", best="min", load=load)
        rows.add("profile.host_other_ms_per_step", r["host_other_ms"], "ms", best="min",
                 load=load)
        rows.add("profile.step_ms", r["wall_ms"], "ms", best="min", load=load)
        extra["profile"] = profile_text(r)

    def handle_twin(r: dict) -> None:
        extra["twin_version"] = r["version"]
        for bs, rate in r["rates"].items():
            rows.add(f"twin.torch.bs{bs}.windows_per_s", rate, "win/s", load=r["load"])

    jobs = []
    for _ in range(repeat):
        for mode, th, bss, flows, cost in specs:
            jobs.append(Job(train_job, (overrides, mode, th, bss, flows, sizes["epochs"],
                                        sizes["infer_windows"]), handler(mode, th), cost))
        if twin:
            jobs.append(Job(twin_job, (*twin, batch_sizes), handle_twin, 2.0))
    jobs.append(Job(profile_job, (overrides, sizes["graph_flows"], batch_sizes[0],
                                  sizes["profile_steps"], default_threads), handle_profile, 1.0))
    return jobs


def train_ratios(rows: Rows, batch_sizes: list[int], threads: list[int],
                 default_threads: int) -> None:
    for bs in batch_sizes:
        g, tw = f"train.graph.bs{bs}.windows_per_s", f"twin.torch.bs{bs}.windows_per_s"
        if g in rows.rows and tw in rows.rows:
            rows.add(f"train.vs_twin.bs{bs}", rows.value(g) / rows.value(tw), "x")
    bs0 = batch_sizes[0]
    g, p = f"train.graph.bs{bs0}.windows_per_s", f"train.pynative.bs{bs0}.windows_per_s"
    if g in rows.rows and p in rows.rows:
        rows.add(f"train.graph_vs_pynative.bs{bs0}", rows.value(g) / rows.value(p), "x")
    for t in threads:
        one = f"train.graph.bs{bs0}.threads{t}.windows_per_s"
        if t != default_threads and one in rows.rows and g in rows.rows:
            rows.add(f"train.threads{t}_vs_default.bs{bs0}", rows.value(one) / rows.value(g),
                     "x")


def _eval_bs(overrides: list[str]) -> int:
    for o in overrides:
        if o.startswith("trainer.eval_batch_size="):
            return int(o.split("=", 1)[1])
    return 4096
