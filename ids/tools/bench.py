"""Benchmarks: data preparation, training/inference throughput and the cost of a sweep trial.

    make bench                                  # = python -m ids.tools.bench (~10 min, 2 cores)
    python -m ids.tools.bench --sections serve --no-log data.window=1   # scoring at line rate
    python -m ids.tools.bench --quick           # tiny version, a minute (tests/test_bench.py)
    python -m ids.tools.bench --sections train --twin ../twin-venv/bin/python --no-log
    python -m ids.tools.bench --repeat 3 model.lstm_units=32 tracking.uri=sqlite:///tmp/b/m.db
    python -m ids.tools.bench --sections big --big-dir ../scratch --repeat 1   # 37.8M + 76M flows

Prints one table and logs it to MLflow: experiment `bench` of `tracking.uri`, one run with the
machine's description as params, every figure as a metric, the table (bench.txt), all runs
(bench.json) and the MindSpore profile of a training step (profile.txt) as artifacts; the trials
measured are nested runs of that run. `python -m ids.bench` is the same command.

Bench-only knobs are `--flags` (`--help`); every other argument is a Hydra override composed
with `ids.config.compose`, as `ids.run` sees it. Sections (one module each): data
(`bench_data`), train (`bench_train`, `bench_profile`, `bench_hw`), trial (`bench_trial`),
serve (`bench_serve`: in-process, file, stream and `make serve` under load), distinct
(`bench_distinct`: distinct windows on the real sample, windows 1 and 10); on request, big
(`bench_big`: full-size files, tens of minutes and ~40 GB of disk in --big-dir).

Method. Every measurement runs in a fresh `spawn` process (own peak RSS, own MindSpore context:
mode and kernel threads are set once per process). Other processes share the machine: each row
gives the 1-minute load average at the end of each run, `--repeat` runs per figure (default 2),
and the value is the best run (the least disturbed), all runs listed. Every speed figure that
matters is also given as a ratio measured in the same run (to the sgemm peak, to the twin, to
PyNative, 1 thread to the default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ids import outputs
from ids.tools.bench_big import FULL_BIG, QUICK_BIG, plan_big
from ids.tools.bench_core import (
    EXTRA_SECTIONS,
    FULL,
    QUICK,
    SECTIONS,
    Rows,
    load1,
    machine,
    run_jobs,
)
from ids.tools.bench_data import plan_data
from ids.tools.bench_distinct import distinct_ratios, plan_distinct
from ids.tools.bench_serve import plan_serve
from ids.tools.bench_train import plan_train, train_ratios
from ids.tools.bench_trial import plan_trial


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="python -m ids.tools.bench",
        description="Benchmarks; other arguments are Hydra overrides (e.g. model.lstm_units=32).")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one run each (the test)")
    p.add_argument("--repeat", type=int, default=None, help="runs per figure (default 2; quick 1)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="subset of data,train,trial,serve,distinct, or big (full-size files)")
    p.add_argument("--big-dir", default=None,
                   help="big: folder for the generated files and their store")
    p.add_argument("--big-flows", default=None,
                   help="big: file sizes in flows (default 37800000,76000000)")
    p.add_argument("--big-subset", type=int, default=None,
                   help="big: training flows of the trial (default 1000000; 0: no trial)")
    p.add_argument("--serve-layout", choices=("v2", "v3"), default="v2",
                   help="serve: the shared sample with a model over the previous rows (default), "
                        "or generated v3 flows with a model over each host's flows "
                        "(data=nf_v3, data.window_by=host: host state in every figure)")
    p.add_argument("--big-layout", choices=("v2", "v3"), default="v2",
                   help="big: v2 files (default) or v3 files with hosts and time "
                        "(ids.data.synthetic_v3), whose trial also trains on host windows")
    p.add_argument("--flows", type=int, default=None, help="flows of the data step (600000)")
    p.add_argument("--batch-sizes", default="256,1024", help="training batch sizes")
    p.add_argument("--threads", default=None,
                   help="kernel thread counts to compare at the first batch size in graph mode "
                        "(default: 1 and the default, cores/workers)")
    p.add_argument("--jobs", type=int, default=None,
                   help="measurements run at once (default 1: clean timings; quick 2)")
    p.add_argument("--twin", default=None, metavar="PYTHON",
                   help="also run the PyTorch twin with this interpreter (a venv with torch)")
    p.add_argument("--twin-script", default="../shared/tools/torch_twin.py",
                   help="the twin's script (default ../shared/tools/torch_twin.py)")
    p.add_argument("--distinct-data", default="../shared/data/nf-bot-iot-sample.csv.gz",
                   help="the NF file of the distinct section (default: the shared sample)")
    p.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    p.add_argument("--json", default=None, help="also write every run to this JSON file")
    args, rest = p.parse_known_args(argv)
    bad = [a for a in rest if a.startswith("-")]
    if bad:
        p.error(f"unknown options {bad}")
    if args.twin and not Path(args.twin_script).is_file():
        p.error(f"--twin-script {args.twin_script} not found; pass the path of torch_twin.py")
    if args.json:  # before the measurements: a FIFO, a folder or a missing folder is refused
        try:
            outputs.check(args.json, overwrite=True, key="--json")
        except outputs.OutputError as exc:
            p.error(str(exc))
    return args, rest


def run_bench(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns {"values", "rows", "machine", "run_id", "table", "profile"}."""
    args, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    from ids.config import compose

    sizes = dict(QUICK if args.quick else FULL) | dict(QUICK_BIG if args.quick else FULL_BIG)
    if args.big_flows:
        sizes["big_flows"] = [int(float(n)) for n in args.big_flows.split(",")]
    if args.big_subset is not None:
        sizes["big_subset"] = int(args.big_subset)
    sizes["big_layout"] = args.big_layout
    sizes["serve_layout"] = args.serve_layout
    if args.flows:
        sizes["flows"] = int(args.flows)
    if args.jobs:
        sizes["jobs"] = max(1, int(args.jobs))
    repeat = int(args.repeat or sizes["repeat"])
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS + EXTRA_SECTIONS))
    if unknown:
        print(f"error: --sections {unknown} unknown; use {','.join(SECTIONS + EXTRA_SECTIONS)}",
              file=sys.stderr)
        raise SystemExit(2)
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
        from ids.tracking import store

        cfg.tracking.experiment = "bench"
        exp_id = store.configure(cfg.tracking)
        ctx = store.start_run(exp_id, "bench-quick" if args.quick else "bench",
                                 tags={"ids.role": "bench", "bench.quick": str(args.quick)})
    extra: dict[str, Any] = {}
    twin = None
    if args.twin:
        twin = (args.twin, str(Path(args.twin_script).resolve()))
    started = time.perf_counter()
    with ctx as run:
        parent = run.info.run_id if run is not None else None
        if log:
            store.log_params({f"machine.{k}": v[:500] for k, v in info.items()})
            store.log_params({"bench.quick": args.quick, "bench.repeat": repeat,
                               "bench.sections": ",".join(sections),
                               "bench.batch_sizes": args.batch_sizes,
                               "bench.threads": ",".join(map(str, threads)),
                               "bench.overrides": " ".join(overrides)[:500],
                               **{f"bench.{k}": v for k, v in sizes.items()}})
        jobs = []
        if "data" in sections:
            jobs += plan_data(rows, overrides, sizes, repeat)
        if "train" in sections:
            jobs += plan_train(rows, extra, overrides, sizes, repeat, batch_sizes, threads,
                               default_threads, twin)
        if "serve" in sections:
            jobs += plan_serve(rows, overrides, sizes)
        if "big" in sections:
            jobs += plan_big(rows, overrides, sizes, args.big_dir)
        if "trial" in sections:
            trial_overrides = overrides if log else overrides + ["tracking.enabled=false"]
            jobs += plan_trial(rows, trial_overrides, sizes, parent)
        if "distinct" in sections:
            jobs += plan_distinct(rows, overrides, sizes, repeat, args.distinct_data)
        run_jobs(jobs, int(sizes["jobs"]))
        if "train" in sections:
            train_ratios(rows, batch_sizes, threads, default_threads)
        distinct_ratios(rows)
        rows.add("bench.seconds", time.perf_counter() - started, "s", best="min", load=load1())
        table = rows.table(header)
        print(table, flush=True)
        if extra.get("profile"):
            print("\n" + extra["profile"], flush=True)
        if extra.get("twin_version"):
            print(f"\ntwin: torch {extra['twin_version']} ({args.twin_script})", flush=True)
        if log:
            values = rows.values()
            store.log_metrics(values)
            store.log_metrics({f"load/{k}": max(r["load"]) for k, r in rows.rows.items()
                                  if not all(math.isnan(x) for x in r["load"])})
            store.log_text(table + "\n", "bench.txt")
            store.log_dict({"machine": info, "rows": rows.rows, "values": values,
                             "sizes": sizes, "overrides": overrides}, "bench.json")
            if extra.get("profile"):
                store.log_text(extra["profile"] + "\n", "profile.txt")
    if args.json:
        outputs.write_text(args.json, json.dumps({"machine": info, "rows": rows.rows,
                                                  "values": rows.values()}, indent=2),
                           key="--json")
    return {"values": rows.values(), "rows": rows.rows, "machine": info, "table": table,
            "run_id": parent, "profile": extra.get("profile", "")}


def main(argv: list[str] | None = None) -> None:
    try:
        run_bench(argv)
    except outputs.OutputError as exc:  # e.g. the disk filled up: one line, as ids.cli says it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
