"""Bench plumbing: the figures table, the machine's description, measurements run in fresh
processes (own peak RSS, own MindSpore context) and the sizes of the full and quick runs."""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

SECTIONS = ("data", "train", "trial", "serve", "distinct")  # the default run
EXTRA_SECTIONS = ("big",)  # on request: full-size files (`ids.tools.bench_big`)
# Sizes: flows of the data step, of the graph / PyNative throughput runs and of the trials;
# epochs; runs per figure; windows scored for inference; measurements at once; the serve
# section's file size, trickled flows, load-test seconds (per run, and the long run) and extra
# overrides of its model (quick: fewer flows to train on, fewer batch shapes to compile); the
# distinct section's epochs and extra overrides.
FULL = {"flows": 600_000, "graph_flows": 30_000, "pynative_flows": 6_000, "epochs": 3,
        "trial_flows": 30_000, "trial_epochs": 3, "repeat": 2, "infer_windows": 40_960, "jobs": 1,
        "trial_overrides": [], "profile_steps": 50, "serve_flows": 1_000_000, "serve_trickle": 100,
        "serve_seconds": 10, "serve_long_seconds": 60, "serve_overrides": [], "distinct_epochs": 5,
        "distinct_one_process": False,
        "distinct_overrides": []}
QUICK = {"flows": 20_000, "graph_flows": 4_000, "pynative_flows": 2_000, "epochs": 2,
         "trial_flows": 4_000, "trial_epochs": 2, "repeat": 1, "infer_windows": 8_192, "jobs": 2,
         "trial_overrides": ["tracking.log_plots=false", "tracking.log_model=false"],
         "profile_steps": 5, "serve_flows": 20_000, "serve_trickle": 10, "serve_seconds": 1,
         "serve_long_seconds": 2, "serve_overrides": ["data.max_rows=6000",
                                                      "trainer.eval_batch_size=256"],
         "distinct_epochs": 1, "distinct_one_process": True,
         "distinct_overrides": ["data.max_rows=6000", "model.filters=8", "model.lstm_units=8"]}


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
            futures = {i: pool.submit(in_fresh_process, jobs[i].fn, *jobs[i].args)
                       for i in order}
            for i, job in enumerate(jobs):
                job.handle(futures[i].result())
                bar.update(1)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def root_array(a):
    """The array that owns the memory behind a view (follows .base through as_strided)."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def with_flows(overrides: list[str], n_flows: int) -> list[str]:
    return [o for o in overrides if not o.startswith("data.n_flows=")] + [
        f"data.n_flows={int(n_flows)}"]
