"""Benchmarks: data preparation, training/inference throughput and the cost of a sweep trial.

    make bench                                  # = python -m ids.bench (about 5 min on 2 cores)
    python -m ids.bench --quick                 # tiny version, a minute (tests/test_bench.py)
    python -m ids.bench --repeat 3 model.lstm_units=32 tracking.uri=sqlite:///tmp/b/mlflow.db
    python -m ids.bench --sections train --threads 1,2 --no-log

Prints one table and logs it to MLflow: experiment `bench` of `tracking.uri`, one run with the
machine's description as params (cpu model, cores, memory, python, mindspore, numpy,
ONEDNN_MAX_CPU_ISA), every figure as a metric, the table (bench.txt) and all runs (bench.json)
as artifacts. The sweep trials measured below are logged as nested runs of that run.

Options. The config schema is strict (unknown keys fail at compose time) and bench-only knobs
do not belong in it, so they are plain `--flags` parsed here with argparse (`--help` lists
them); every other argument is a Hydra override composed with `ids.config.compose`, exactly as
`ids.run` would see it (model.*, trainer.eval_batch_size, data.window, tracking.uri, ...). The
bench sets data.n_flows, trainer.batch_size/mode/threads/epochs itself per measurement.

Method.
- Every measurement runs in a fresh `spawn` process: peak RSS (ru_maxrss of that process) is
  the step's own, and the global MindSpore context (graph or PyNative mode, kernel threads, set
  once per process) cannot leak from one measurement into the next.
- data: generate (or read) and validate the flows, split/fit/transform (`ids.data.prepare`),
  window every split at data.window; then memory of the windows against the feature matrix for
  T=10 and T=100 (the windows are strided views over one zero-padded copy of X per T: the view
  itself adds 0 bytes) and a second `prepare` with only the window changed (the in-process
  cache must return the same object).
- train: `ids.train.fit` itself, 3 epochs (quick: 2) on 30,000 flows (PyNative: 6,000);
  throughput = training windows / train_seconds of epochs 2.. (per-step host work and the
  end-of-epoch sync included, compilation excluded);
  compilation = epoch 1's train_seconds minus a steady epoch. GRAPH vs PyNative, each batch
  size, and the kernel threads (`trainer.threads`, i.e. device_context.cpu.op_tuning.threads_num)
  1 vs the default (cores / workers). inference: `predict_proba` at trainer.eval_batch_size on
  the training windows after a warm-up call (whose extra time is the inference compilation).
- trial: what a sweep worker does per trial (`ids.data.prepare` then `ids.run.train` with
  evaluate_test=false, tracking on), three trials in one process: `first` (cold: data prepared,
  baselines fitted, store opened), `next` (only a model parameter changed: data and baselines
  must come from the caches) and `pruned` (raises optuna.TrialPruned after epoch 1, as the
  pruner does), 30,000 flows, 3 epochs. Each is split into data, compile, train, eval
  (validation scoring, threshold, metrics, checkpoint), baselines and tracking+other (MLflow
  run, plots, model logging), with the share of its time spent training. --quick skips the
  trials' plots and model logging.
- Other processes share the machine: each row gives the 1-minute load average at the end of
  each run (the bench's own process counts for 1 to 2 of it), `--repeat` runs per figure
  (default 2), and the value is the best run (the one least disturbed), all runs listed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

SECTIONS = ("data", "train", "trial")
# Sizes: flows of the data step, of the graph / PyNative throughput runs and of the trials;
# epochs; runs per figure; windows scored for inference; measurements at once.
FULL = {"flows": 600_000, "graph_flows": 30_000, "pynative_flows": 6_000, "epochs": 3,
        "trial_flows": 30_000, "trial_epochs": 3, "repeat": 2, "infer_windows": 40_960, "jobs": 1,
        "trial_overrides": []}
QUICK = {"flows": 20_000, "graph_flows": 4_000, "pynative_flows": 2_000, "epochs": 2,
         "trial_flows": 4_000, "trial_epochs": 2, "repeat": 1, "infer_windows": 8_192, "jobs": 2,
         "trial_overrides": ["tracking.log_plots=false", "tracking.log_model=false"]}


# ---------------------------------------------------------------------------------------------
# Figures: one row per figure, one value per run.


class Rows:
    """Figures in insertion order: name -> unit, how runs combine, the runs and their loads."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, name: str, value: float, unit: str, best: str = "max",
            load: float | None = None) -> None:
        """One run of a figure; `best` (max, min or median) picks the value from the runs."""
        row = self.rows.setdefault(name, {"unit": unit, "best": best, "runs": [], "load": []})
        row["runs"].append(float(value))
        row["load"].append(float("nan") if load is None else float(load))

    def value(self, name: str) -> float:
        row = self.rows[name]
        runs = [v for v in row["runs"] if math.isfinite(v)] or row["runs"]
        if row["best"] == "min":
            return min(runs)
        if row["best"] == "median":
            return float(statistics.median(runs))
        return max(runs)

    def values(self) -> dict[str, float]:
        return {name: self.value(name) for name in self.rows}

    def table(self, header: str = "") -> str:
        lines = [header] if header else []
        lines.append(f"{'figure':<44} {'value':>12} {'unit':<10} {'runs':<24} load (1 min)")
        for name, row in self.rows.items():
            runs = " ".join(_fmt(v) for v in row["runs"])
            load = " ".join("-" if math.isnan(x) else f"{x:.1f}" for x in row["load"])
            lines.append(
                f"{name:<44} {_fmt(self.value(name)):>12} {row['unit']:<10} {runs:<24} {load}")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e9:
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def load1() -> float:
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------------------------
# Machine


def machine() -> dict[str, str]:
    """CPU model, cores, memory, Python, MindSpore and the oneDNN ISA cap (no MindSpore import)."""
    import psutil

    import ids  # noqa: F401 - sets the ONEDNN_MAX_CPU_ISA default

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = {"cpu_model": cpu, "cores_logical": str(os.cpu_count()),
           "cores_physical": str(psutil.cpu_count(logical=False)),
           "memory_gb": f"{psutil.virtual_memory().total / 2**30:.1f}",
           "python": platform.python_version(), "platform": platform.platform(),
           "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "(unset)"),
           "ids_path": str(Path(ids.__file__).resolve().parent)}  # which code was measured
    for pkg in ("mindspore", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


# ---------------------------------------------------------------------------------------------
# Jobs: each runs in a fresh spawned process and returns plain data.


def in_fresh_process(fn, *args):
    """fn(*args) in a new `spawn` process (own RSS, own MindSpore context); adds "wall"."""
    t = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        out = pool.submit(fn, *args).result()
    out["wall"] = time.perf_counter() - t
    return out


class Job(NamedTuple):
    fn: Callable[..., dict]  # runs in a fresh process
    args: tuple
    handle: Callable[[dict], None]  # turns its result into rows, in plan order
    cost: float  # rough relative duration: with --jobs > 1 the long ones start first


def run_jobs(jobs: list[Job], parallel: int = 1) -> None:
    """Each job in its own fresh process; `parallel` at a time (1 = clean timings)."""
    from ids import progress

    with progress.counter(len(jobs), "bench", "job") as bar:
        if parallel <= 1:
            for job in jobs:
                job.handle(in_fresh_process(job.fn, *job.args))
                bar.update(1)
            return
        with ThreadPoolExecutor(parallel) as pool:
            order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost)
            futures = {i: pool.submit(in_fresh_process, jobs[i].fn, *jobs[i].args) for i in order}
            for i, job in enumerate(jobs):
                job.handle(futures[i].result())
                bar.update(1)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _root(a):
    """The array that owns the memory behind a view (follows .base through as_strided)."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def data_job(overrides: list[str], n_flows: int, windows: tuple[int, ...]) -> dict:
    """Load/generate, preprocess and window `n_flows` flows; time, peak RSS, view memory."""
    from ids import data as data_mod
    from ids.config import compose

    cfg = compose(_with_flows(overrides, n_flows))
    base_rss = _rss_mb()
    loaded: dict[str, float] = {}
    load_frame = data_mod.load_frame

    def timed_load(data_cfg):
        t = time.perf_counter()
        try:
            return load_frame(data_cfg)
        finally:
            loaded["seconds"] = time.perf_counter() - t

    data_mod.load_frame = timed_load
    try:
        t0 = time.perf_counter()
        prepared = data_mod.prepare(cfg.data)
        t1 = time.perf_counter()
        T = int(cfg.data.window)
        built = {name: prepared.split(name).windows(T) for name in data_mod.SPLITS}
        t2 = time.perf_counter()
    finally:
        data_mod.load_frame = load_frame
    out = {"flows": float(prepared.info["n_flows"]), "load_seconds": loaded.get("seconds", 0.0),
           "preprocess_seconds": (t1 - t0) - loaded.get("seconds", 0.0),
           "window_seconds": t2 - t1, "total_seconds": t2 - t0,
           "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base_rss}
    out["step_rss_mb"] = out["peak_rss_mb"] - base_rss
    # A trial that changes only the model (or the window) must reuse the prepared data.
    cfg.data.window = T + 1
    t = time.perf_counter()
    again = data_mod.prepare(cfg.data)
    out["cached_prepare_seconds"] = time.perf_counter() - t
    out["cache_hit"] = float(again is prepared)
    out["windows_cached"] = float(all(again.split(n).windows(T) is w for n, w in built.items()))
    mem = {}
    for T in windows:
        feat = padded = extra = materialised = 0
        for name in data_mod.SPLITS:
            split = prepared.split(name)
            if T > len(split.X):
                continue
            w = split.windows(T)
            root = _root(w)
            feat += split.X.nbytes
            padded += root.nbytes if root is not split.X else 0
            extra += 0 if not w.flags.owndata else w.nbytes
            materialised += w.shape[0] * w.shape[1] * w.shape[2] * w.itemsize
        mem[T] = {"features_mb": feat / 2**20, "padded_base_mb": padded / 2**20,
                  "view_extra_bytes": float(extra), "materialised_mb": materialised / 2**20}
    out["memory"] = mem
    out["load"] = load1()
    return out


def _with_flows(overrides: list[str], n_flows: int) -> list[str]:
    return [o for o in overrides if not o.startswith("data.n_flows=")] + [
        f"data.n_flows={int(n_flows)}"]


def train_job(overrides: list[str], mode: str, threads: int, batch_sizes: list[int],
              n_flows: int, epochs: int, infer_windows: int, profile: bool = False) -> dict:
    """fit() at each batch size, then predict_proba throughput, in one mode and thread count."""
    import numpy as np

    from ids import data as data_mod
    from ids import train as train_mod
    from ids.config import compose

    cfg = compose(_with_flows(overrides, n_flows) + [
        f"trainer.mode={mode}", f"trainer.threads={int(threads)}", f"trainer.epochs={epochs}",
        "trainer.patience=0"])
    train_mod.setup_runtime(cfg.trainer)
    prepared = data_mod.prepare(cfg.data)
    T = int(cfg.data.window)
    n_train = len(prepared.train.y)
    out: dict[str, Any] = {"batches": {}, "train_windows": n_train}
    prof_text = ""
    with tempfile.TemporaryDirectory(prefix="ids-bench-") as tmp:
        cfg.trainer.checkpoint_dir = tmp
        model = None
        for bs in batch_sizes:
            cfg.trainer.batch_size = int(bs)
            prof = _EpochProfiler() if profile and bs == batch_sizes[0] else None
            result = train_mod.fit(cfg, prepared, on_epoch=prof)
            if prof is not None:
                prof_text = prof.text()
            hist = result.history
            bs_eff = min(int(bs), n_train)
            n_win = (n_train // bs_eff) * bs_eff
            train_s = [r["train_seconds"] for r in hist]
            steady = train_s[1:] or train_s
            out["batches"][int(bs)] = {
                "windows_per_s": [n_win / s for s in steady],
                "compile_seconds": max(0.0, train_s[0] - statistics.median(steady)),
                "steps_per_epoch": n_win // bs_eff,
            }
            model = result.model
        ebs = int(cfg.trainer.eval_batch_size)
        w = prepared.train.windows(T)
        reps = max(1, -(-int(infer_windows) // max(len(w), 1)))
        x = w if reps == 1 else np.concatenate([w] * reps)
        x = x[: int(infer_windows)]
        t = time.perf_counter()
        train_mod.predict_proba(model, x[:ebs], ebs)  # warm-up: the eval graph for this shape
        first = time.perf_counter() - t
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            train_mod.predict_proba(model, x, ebs)
            rates.append(len(x) / (time.perf_counter() - t))
        per_batch = min(len(x), ebs) / max(rates)
        out["infer"] = {"windows_per_s": rates, "compile_seconds": max(0.0, first - per_batch)}
    out["profile"] = prof_text
    out["load"] = load1()
    return out


class _EpochProfiler:
    """on_epoch hook: cProfile from the end of epoch 1 to the end of epoch 2 (one steady epoch:
    its training steps, then its validation scoring)."""

    def __init__(self) -> None:
        import cProfile

        self.prof, self.on = cProfile.Profile(), False

    def __call__(self, epoch: int, record: dict) -> None:
        if epoch == 1:
            self.prof.enable()
            self.on = True
        elif self.on:
            self.prof.disable()
            self.on = False

    def text(self, top: int = 25) -> str:
        import pstats

        if self.on:
            self.prof.disable()
        buf = io.StringIO()
        st = pstats.Stats(self.prof, stream=buf)
        st.sort_stats("tottime").print_stats(top)
        st.sort_stats("cumulative").print_stats(top)
        return buf.getvalue()


def trial_job(overrides: list[str], n_flows: int, epochs: int, parent_run_id: str | None,
              variant: dict[str, str], extra_overrides: tuple[str, ...] = ()) -> dict:
    """Three sweep-like trials in one worker process: first (cold), next (a model parameter
    changed), pruned (stopped after epoch 1); each split into its costs."""
    import optuna

    from ids import data as data_mod
    from ids import run as run_mod
    from ids.config import compose

    timers: dict[str, float] = {}

    def timed(mod, name: str) -> None:
        fn = getattr(mod, name)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[name] = timers.get(name, 0.0) + time.perf_counter() - t

        setattr(mod, name, wrapper)

    timed(run_mod, "split_baselines")
    timed(run_mod, "fit")
    base = _with_flows(overrides, n_flows) + [
        f"trainer.epochs={epochs}", "trainer.patience=0", "trainer.evaluate_test=false",
        "tracking.experiment=bench", "quiet=true"] + list(extra_overrides)
    plan = [("first", [], None), ("next", [f"{k}={v}" for k, v in variant.items()], None),
            ("pruned", [f"{k}={v}" for k, v in variant.items()], 1)]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ids-bench-") as tmp:
        for name, extra, prune_at in plan:
            cfg = compose(base + extra + [f"trainer.checkpoint_dir={tmp}/{name}"])
            cfg.tracking.run_name = f"bench-trial-{name}"
            timers.clear()
            records: list[dict] = []

            def on_epoch(epoch: int, record: dict, prune_at=prune_at, records=records) -> None:
                records.append(dict(record))
                if prune_at is not None and epoch >= prune_at:
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            t0 = time.perf_counter()
            prepared = data_mod.prepare(cfg.data)  # as ids.sweep.Objective does
            t_data = time.perf_counter() - t0
            cached = len(prepared.train._windows)  # windows already built for this data
            try:
                run_mod.train(cfg, prepared=prepared, on_epoch=on_epoch,
                              parent_run_id=parent_run_id, tags={"ids.role": "bench-trial"})
            except optuna.TrialPruned:
                pass
            total = time.perf_counter() - t0
            out[name] = {"total": total, "data": t_data, "records": records,
                         "baselines": timers.get("split_baselines", 0.0),
                         "fit": timers.get("fit", 0.0), "windows_cached_before": cached,
                         "same_data": float(prepared is data_mod.prepare(cfg.data))}
    # Split each trial; one steady epoch (from the complete trials) calibrates compilation.
    steady_train = statistics.median(
        [r["train_seconds"] for n in ("first", "next") for r in out[n]["records"][1:]]
        or [out["next"]["records"][0]["train_seconds"]])
    steady_eval = statistics.median(
        [r["epoch_seconds"] - r["train_seconds"] for n in ("first", "next")
         for r in out[n]["records"][1:]] or [0.0])
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


# ---------------------------------------------------------------------------------------------
# Driver


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="python -m ids.bench",
        description="Benchmarks; other arguments are Hydra overrides (e.g. model.lstm_units=32).")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one run each (the test)")
    p.add_argument("--repeat", type=int, default=None, help="runs per figure (default 2; quick 1)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="subset of data,train,trial")
    p.add_argument("--flows", type=int, default=None, help="flows of the data step (600000)")
    p.add_argument("--batch-sizes", default="256,1024", help="training batch sizes")
    p.add_argument("--threads", default=None,
                   help="kernel thread counts to compare at the first batch size in graph mode "
                        "(default: 1 and the default, cores/workers)")
    p.add_argument("--jobs", type=int, default=None,
                   help="measurements run at once (default 1: clean timings; quick 2)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile one steady epoch (graph, first batch size) -> profile.txt")
    p.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    p.add_argument("--json", default=None, help="also write every run to this JSON file")
    args, rest = p.parse_known_args(argv)
    bad = [a for a in rest if a.startswith("-")]
    if bad:
        p.error(f"unknown options {bad}")
    return args, rest


def run_bench(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns {"values", "rows", "machine", "run_id", "table"}."""
    args, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    from ids.config import compose

    sizes = dict(QUICK if args.quick else FULL)
    if args.flows:
        sizes["flows"] = int(args.flows)
    if args.jobs:
        sizes["jobs"] = max(1, int(args.jobs))
    repeat = int(args.repeat or sizes["repeat"])
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"error: --sections {unknown} unknown; use {','.join(SECTIONS)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    cfg = compose(overrides)  # a bad override fails here, before any work
    from ids import progress

    progress.configure(cfg.quiet)
    default_threads = max(1, os.cpu_count() or 1)
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else sorted({1, default_threads}))
    info = machine()
    info["threads_default"] = str(default_threads)
    log = bool(cfg.tracking.enabled) and not args.no_log
    rows = Rows()
    header = (f"ids bench{' --quick' if args.quick else ''}: {info['cpu_model']}, "
              f"{info['cores_logical']} cores, {info['memory_gb']} GB, python {info['python']}, "
              f"mindspore {info['mindspore']}, ONEDNN_MAX_CPU_ISA={info['onednn_max_cpu_isa']}, "
              f"load {load1():.1f}")
    print(header, flush=True)
    ctx: Any = contextlib.nullcontext()
    if log:
        from ids import tracking

        cfg.tracking.experiment = "bench"
        exp_id = tracking.configure(cfg.tracking)
        ctx = tracking.start_run(exp_id, "bench-quick" if args.quick else "bench",
                                 tags={"ids.role": "bench", "bench.quick": str(args.quick)})
    extra: dict[str, Any] = {}
    started = time.perf_counter()
    with ctx as run:
        parent = run.info.run_id if run is not None else None
        if log:
            import mlflow

            mlflow.log_params({f"machine.{k}": v[:500] for k, v in info.items()})
            mlflow.log_params({"bench.quick": args.quick, "bench.repeat": repeat,
                               "bench.sections": ",".join(sections),
                               "bench.batch_sizes": args.batch_sizes,
                               "bench.threads": ",".join(map(str, threads)),
                               "bench.overrides": " ".join(overrides)[:500],
                               **{f"bench.{k}": v for k, v in sizes.items()}})
        jobs: list[Job] = []
        if "data" in sections:
            jobs += plan_data(rows, overrides, sizes, repeat)
        if "train" in sections:
            jobs += plan_train(rows, extra, overrides, sizes, repeat, batch_sizes, threads,
                               default_threads, args.profile)
        if "trial" in sections:
            trial_overrides = overrides if log else overrides + ["tracking.enabled=false"]
            jobs += plan_trial(rows, trial_overrides, sizes, parent)
        run_jobs(jobs, int(sizes["jobs"]))
        if "train" in sections:
            train_ratios(rows, batch_sizes, threads, default_threads)
        rows.add("bench.seconds", time.perf_counter() - started, "s", best="min", load=load1())
        table = rows.table(header)
        print(table, flush=True)
        if log:
            from ids import tracking

            values = rows.values()
            tracking.log_metrics(values)
            tracking.log_metrics({f"load/{k}": max(r["load"]) for k, r in rows.rows.items()
                                  if not all(math.isnan(x) for x in r["load"])})
            mlflow.log_text(table + "\n", "bench.txt")
            mlflow.log_dict({"machine": info, "rows": rows.rows, "values": values,
                             "sizes": sizes, "overrides": overrides}, "bench.json")
            if extra.get("profile"):
                mlflow.log_text(extra["profile"], "profile.txt")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows.rows,
                                               "values": rows.values()}, indent=2))
    if extra.get("profile"):
        print("\ncProfile of one steady epoch (graph mode):\n" + extra["profile"])
    return {"values": rows.values(), "rows": rows.rows, "machine": info, "table": table,
            "run_id": parent, "profile": extra.get("profile", "")}


def plan_data(rows: Rows, overrides: list[str], sizes: dict, repeat: int) -> list[Job]:
    def handle(r: dict) -> None:
        load = r["load"]
        rows.add("data.flows", r["flows"], "flows", load=load)
        for key, unit, best in (("load_seconds", "s", "min"), ("preprocess_seconds", "s", "min"),
                                ("window_seconds", "s", "min"), ("total_seconds", "s", "min"),
                                ("peak_rss_mb", "MB", "max"), ("step_rss_mb", "MB", "max"),
                                ("cached_prepare_seconds", "s", "min"),
                                ("cache_hit", "bool", "min"), ("windows_cached", "bool", "min")):
            rows.add(f"data.{key}", r[key], unit, best=best, load=load)
        for T, mem in r["memory"].items():
            for key, value in mem.items():
                unit = "bytes" if key.endswith("bytes") else "MB"
                rows.add(f"data.T{T}.{key}", value, unit, best="max", load=load)
        print(f"  data: {r['total_seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(load {load:.1f}, job {r['wall']:.0f} s)", flush=True)

    return [Job(data_job, (overrides, sizes["flows"], (10, 100)), handle, 1.0)
            for _ in range(repeat)]


def plan_train(rows: Rows, extra: dict, overrides: list[str], sizes: dict, repeat: int,
               batch_sizes: list[int], threads: list[int], default_threads: int,
               profile: bool) -> list[Job]:
    specs = [("graph", default_threads, batch_sizes, sizes["graph_flows"], 3.0)]
    specs += [("graph", t, batch_sizes[:1], sizes["graph_flows"], 2.0) for t in threads
              if t != default_threads]
    specs += [("pynative", default_threads, batch_sizes, sizes["pynative_flows"], 3.0)]

    def handler(mode: str, th: int):
        def handle(r: dict) -> None:
            if r["profile"]:
                extra["profile"] = r["profile"]
            load = r["load"]
            suffix = "" if th == default_threads else f".threads{th}"
            for bs, b in r["batches"].items():
                name = f"train.{mode}.bs{bs}{suffix}"
                rate = statistics.median(b["windows_per_s"])
                rows.add(f"{name}.windows_per_s", rate, "win/s", load=load)
                rows.add(f"{name}.compile_seconds", b["compile_seconds"], "s", best="min",
                         load=load)
                print(f"  {name}: {rate:.0f} windows/s, compile {b['compile_seconds']:.1f} s "
                      f"(load {load:.1f}, job {r['wall']:.0f} s)", flush=True)
            name = f"infer.{mode}.bs{_eval_bs(overrides)}{suffix}"
            rows.add(f"{name}.windows_per_s", max(r["infer"]["windows_per_s"]), "win/s",
                     load=load)
            rows.add(f"{name}.compile_seconds", r["infer"]["compile_seconds"], "s", best="min",
                     load=load)
        return handle

    jobs = []
    for i in range(repeat):
        for mode, th, bss, flows, cost in specs:
            want_prof = profile and i == 0 and mode == "graph" and th == default_threads
            jobs.append(Job(train_job, (overrides, mode, th, bss, flows, sizes["epochs"],
                                        sizes["infer_windows"], want_prof),
                            handler(mode, th), cost))
    return jobs


def train_ratios(rows: Rows, batch_sizes: list[int], threads: list[int],
                 default_threads: int) -> None:
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


def plan_trial(rows: Rows, overrides: list[str], sizes: dict, parent: str | None) -> list[Job]:
    from ids.config import compose

    dropout = float(compose(overrides).model.dropout)
    variant = {"model.dropout": f"{round(dropout / 2, 4)}"}  # a model-only change

    def handle(r: dict) -> None:
        load, wall = r.pop("load"), r.pop("wall")
        for name, t in r.items():
            for key in ("total", "data", "compile", "train", "eval", "baselines",
                        "tracking_other"):
                rows.add(f"trial.{name}.{key}_seconds", t[key], "s", best="min", load=load)
            rows.add(f"trial.{name}.epochs", t["epochs"], "epochs", load=load)
            rows.add(f"trial.{name}.training_share", t["train"] / t["total"], "of total",
                     load=load)
        rows.add("trial.next.data_reused", r["next"]["same_data"] * float(
            r["next"]["windows_cached_before"] > 0), "bool", best="min", load=load)
        rows.add("trial.pruned_vs_complete", r["pruned"]["total"] / r["next"]["total"], "x",
                 best="min", load=load)
        print(f"  trials: first {r['first']['total']:.1f} s, next {r['next']['total']:.1f} s, "
              f"pruned {r['pruned']['total']:.1f} s (load {load:.1f}, job {wall:.0f} s)",
              flush=True)

    return [Job(trial_job, (overrides, sizes["trial_flows"], sizes["trial_epochs"], parent,
                            variant, tuple(sizes["trial_overrides"])), handle, 4.0)]


def main(argv: list[str] | None = None) -> None:
    run_bench(argv)


if __name__ == "__main__":
    # Run the functions from the importable module so spawned workers find them by name.
    from ids.bench import main as _main

    _main()
