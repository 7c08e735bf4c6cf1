"""Bench section `serve`: scoring at line rate, with a model trained here for one epoch on the
shared NF-BoT-IoT sample (synthetic flows when it is absent); its layer sizes and window are the
config's (Hydra overrides: `data.window=1 model.dense_units=32`, ...), which is what speed
depends on, not its accuracy.

- in process: `Scorer.predict` of 1 and 100 flows (p50, p99 of 200 calls);
- file: `ids.predict` on the sample tiled to `serve_flows` flows (1,000,000): flows/s of the
  scoring itself (its own summary line), start-up (interpreter, imports, model) apart; then
  the same with no score memo (`score_memo_mb=0`), and the windows computed and looked up;
  then the sample itself both ways (`untiled`: nothing repeats across its blocks, the memo's
  worst case; only when `serve_flows` is larger than the sample);
- stream: flows written one at a time into `ids.predict input=- output=-`, 20 ms apart: time
  from the written line to its scored line (p50, p95; the first flow, which waits for the
  start-up, apart);
- server: `make serve` (workers sized to the machine) under `ids.tools.loadtest`: 1- and
  100-flow bodies at 1, 4 and 16 clients for `serve_seconds` each, then 16 clients with 1-flow
  bodies for `serve_long_seconds` (60): requests/s, p50/p95/p99 and errors.

With `--serve-layout v3` the model is trained on generated NF-v3 flows (`data=nf_v3`: its
windows over each source host's previous flows, `data.window_by=host`) and every figure scores
generated v3 flows with host state: the file is `serve_flows` fresh flows of another seed (not
a tiled sample: a host's flows do not repeat), the rows are named `serve.host.*`.

The in-process and server figures are measured with no score memo (`score_memo_mb=0`): they
replay the same flows, which a memo would only look up; they are the network's figures.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ids.tools.bench_core import Job, Rows, load1, with_flows
from ids.tools.loadtest import ROOT, make_serve, report_line, request_bodies, run_load

SAMPLE = ROOT.parent / "shared" / "data" / "nf-bot-iot-sample.csv.gz"
SIZES, CLIENTS = (1, 100), (1, 4, 16)


def _model(overrides: list[str], folder: Path, layout: str = "v2") -> str:
    """Train one epoch and save the model as an MLflow pyfunc folder; returns its path
    (`layout` v3: on generated v3 flows, windows over each host's flows)."""
    from ids.artifact.scorer import Scorer
    from ids.config import compose
    from ids.data.prepare import prepare
    from ids.model.fit import fit
    from ids.model.runtime import setup_runtime
    from ids.tracking.models import save_scorer_model
    from ids.tracking.store import model_config

    data = (["data=nf_v3", "data.window_by=host"] if layout == "v3" else
            ["data=nf_bot_iot", f"data.path={SAMPLE}"] if SAMPLE.exists()
            else with_flows([], 20_000))
    cfg = compose(data + ["trainer.epochs=1", "trainer.baselines=false", "cache_dir=null",
                          "trainer.evaluate_test=false", "tracking.enabled=false"] + overrides)
    setup_runtime(cfg.trainer)
    prepared = prepare(cfg.data)
    result = fit(cfg, prepared, checkpoint_dir=str(folder / "ckpt"))
    scorer = Scorer(prepared.preprocessor, dict(cfg.model), int(cfg.data.window),
                    float(result.threshold), result.checkpoint, int(cfg.trainer.eval_batch_size),
                    model_config(cfg))
    return save_scorer_model(scorer, folder / "model")


def _in_process(model: str, flows) -> dict:
    from ids.artifact.memo import ScoreMemo
    from ids.tracking.registry import load_scorer

    scorer = load_scorer(model)
    scorer.memo = ScoreMemo(0)  # the calls below come round to the same flows again
    scorer.warm_up()
    out = {}
    for n in SIZES:
        times = []
        for k in range(200):
            part = flows.iloc[(k * n) % 10_000:][:n]
            started = time.perf_counter()
            scorer.predict(part)
            times.append((time.perf_counter() - started) * 1e3)
        out[n] = {"p50_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99))}
    return out


def _predict_cmd(model: str, tmp: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ids.predict", f"model_uri={model}", "quiet=true",
            f"hydra.run.dir={tmp}/hydra", *args]


def _file(model: str, flows, n_flows: int, tmp: Path, layout: str = "v2") -> dict:
    """`n_flows` of the sample (tiled when more) scored twice: as `ids.predict` does by default,
    then with no memo (`score_memo_mb=0`: each block's distinct windows computed, as before the
    memo). Tiles repeat the sample, the memo's best case: `windows_looked_up` says how much.
    `layout` v3: `n_flows` generated v3 flows of seed 1 instead (hosts and time, no tiles)."""
    big, out = tmp / "tiled.csv", tmp / "tiled-scored.csv"
    if layout == "v3":
        from ids.data.synthetic_v3 import write_flows

        write_flows(big, n_flows, seed=1)
    else:
        for k in range(-(-n_flows // len(flows))):
            part = flows.iloc[: n_flows - k * len(flows)]
            part.to_csv(big, mode="a" if k else "w", header=k == 0, index=False)
    result = {}
    for name, extra in (("memo", []), ("no_memo", ["score_memo_mb=0"])):
        started = time.perf_counter()
        proc = subprocess.run(_predict_cmd(model, tmp, f"input={big}", f"output={out}",
                                           "overwrite=true", *extra),
                              cwd=ROOT, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - started
        m = re.search(r"scored ([\d,]+) flows .* s \(([\d,]+) flows/s\)", proc.stdout)
        w = re.search(r"windows computed: ([\d,]+); looked up, [^:]*: ([\d,]+)", proc.stdout)
        if proc.returncode or not m or not w:
            raise RuntimeError(f"ids.predict failed: {proc.stderr[-2000:]}")
        n, rate = (int(m.group(k).replace(",", "")) for k in (1, 2))  # the rate: unrounded
        seconds = n / rate
        result[name] = {"flows": n, "flows_per_s": rate, "scoring_seconds": seconds,
                        "startup_seconds": wall - seconds,
                        "windows_computed": int(w.group(1).replace(",", "")),
                        "windows_looked_up": int(w.group(2).replace(",", ""))}
    big.unlink()
    out.unlink()
    return result


def _stream(model: str, flows, n: int, tmp: Path) -> dict:
    """Write flows one at a time into `ids.predict input=- output=-` and time each scored line;
    the first flow waits for the start-up (and compiles the one-flow shape): reported apart."""
    lines = flows.iloc[: n + 1].to_csv(index=False).encode().splitlines(keepends=True)
    proc = subprocess.Popen(_predict_cmd(model, tmp, "input=-", "output=-"), cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    fd, times = proc.stdout.fileno(), []
    try:
        proc.stdin.write(lines[0])  # the header
        for k, line in enumerate(lines[1:]):
            started = time.perf_counter()
            proc.stdin.write(line)
            proc.stdin.flush()
            buf = b""
            while buf.count(b"\n") < (2 if k == 0 else 1):  # the output's header comes first
                if not select.select([fd], [], [], 300)[0]:
                    raise RuntimeError("ids.predict input=- gave no scored line in 300 s")
                buf += os.read(fd, 1 << 16)
            times.append((time.perf_counter() - started) * 1e3)
            time.sleep(0.02)
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
    return {"startup_and_first_ms": times[0], "p50_ms": float(np.median(times[1:])),
            "p95_ms": float(np.percentile(times[1:], 95))}


def _server(model: str, flows, seconds: float, long_seconds: float, tmp: Path) -> dict:
    from ids.tools.servers import free_port

    started = time.perf_counter()
    out: dict = {}
    # No score memo: the load replays 64 bodies (see the docstring).
    with make_serve(model, free_port(), tmp / "serve.log", overrides=("score_memo_mb=0",)) as url:
        out["start_seconds"] = time.perf_counter() - started
        for size in SIZES:
            bodies = request_bodies(flows, size)
            for clients in CLIENTS:
                r = run_load(url, bodies, clients, seconds)
                r["load"] = load1()
                out[f"{size}x{clients}"] = r
                print(f"  serve: {report_line(size, r)} (load {r['load']:.1f})", flush=True)
        r = run_load(url, request_bodies(flows, 1), 16, long_seconds)
        r["load"] = load1()
        out["long"] = r
        print(f"  serve, {long_seconds:.0f} s: {report_line(1, r)} (load {r['load']:.1f})",
              flush=True)
    return out


def serve_job(overrides: list[str], sizes: dict) -> dict:
    import pandas as pd

    from ids.config import compose
    from ids.data import synthetic

    layout = sizes.get("serve_layout", "v2")
    with tempfile.TemporaryDirectory(prefix="ids-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        model = _model(overrides + list(sizes["serve_overrides"]), tmp, layout)
        if layout == "v3":
            from ids.data import synthetic_v3

            flows = synthetic_v3.generate(50_000, 1)
        else:
            flows = (pd.read_csv(SAMPLE) if SAMPLE.exists() else synthetic.generate(
                50_000, 1, dict(compose([]).data.class_mix)))
        out = {"in_process": _in_process(model, flows), "load_in_process": load1(),
               "layout": layout}
        out["file"] = _file(model, flows, int(sizes["serve_flows"]), tmp, layout)
        if layout == "v2" and int(sizes["serve_flows"]) > len(flows):  # nothing repeats
            out["file"]["untiled"] = _file(model, flows, len(flows), tmp)
        out["load_file"] = load1()
        out["stream"] = _stream(model, flows, int(sizes["serve_trickle"]), tmp)
        out["load_stream"] = load1()
        out["server"] = _server(model, flows, float(sizes["serve_seconds"]),
                                float(sizes["serve_long_seconds"]), tmp)
    return out


def plan_serve(rows: Rows, overrides: list[str], sizes: dict) -> list[Job]:
    def handle(r: dict) -> None:
        # v3: host state in every figure, rows of their own (serve.host.*)
        _rows(r, _Renamed(rows, "serve.", "serve.host.") if r.get("layout") == "v3" else rows)

    return [Job(serve_job, (overrides, sizes), handle, 4.0)]


class _Renamed:
    """`Rows` whose names start `new` instead of `old`."""

    def __init__(self, rows: Rows, old: str, new: str) -> None:
        self.rows, self.old, self.new = rows, old, new

    def add(self, name: str, *args, **kwargs) -> None:
        self.rows.add(self.new + name.removeprefix(self.old), *args, **kwargs)


def _rows(r: dict, rows) -> None:
    """The bench rows of one serve job's result (`rows.add`)."""
    load = r["load_in_process"]
    for n, v in r["in_process"].items():
        for k, x in v.items():
            rows.add(f"serve.predict.{n}flow.{k}", x, "ms", best="min", load=load)
    f, load = r["file"], r["load_file"]
    rows.add("serve.file.flows_per_s", f["memo"]["flows_per_s"], "flows/s", load=load)
    rows.add("serve.file.flows", f["memo"]["flows"], "flows", load=load)
    rows.add("serve.file.startup_seconds", f["memo"]["startup_seconds"], "s", best="min",
             load=load)
    for k in ("windows_computed", "windows_looked_up"):
        rows.add(f"serve.file.{k}", f["memo"][k], "windows", load=load)
    rows.add("serve.file.no_memo.flows_per_s", f["no_memo"]["flows_per_s"], "flows/s",
             load=load)
    rows.add("serve.file.memo_vs_none", f["memo"]["flows_per_s"]
             / f["no_memo"]["flows_per_s"], "x", load=load)
    if "untiled" in f:
        u = f["untiled"]
        for k in ("memo", "no_memo"):
            rows.add(f"serve.file.untiled.{k}.flows_per_s", u[k]["flows_per_s"], "flows/s",
                     load=load)
        rows.add("serve.file.untiled.memo_vs_none", u["memo"]["flows_per_s"]
                 / u["no_memo"]["flows_per_s"], "x", load=load)
    for k, x in r["stream"].items():
        rows.add(f"serve.stream.{k}", x, "ms", best="min", load=r["load_stream"])
    srv = r["server"]
    rows.add("serve.http.start_seconds", srv["start_seconds"], "s", best="min")
    for key, v in srv.items():
        if key == "start_seconds":
            continue
        name = "serve.http.long16" if key == "long" else f"serve.http.{key.replace('x', 'flow.c')}"
        for k, unit, best in (("rps", "req/s", "max"), ("p50_ms", "ms", "min"),
                              ("p95_ms", "ms", "min"), ("p99_ms", "ms", "min"),
                              ("errors", "errors", "max")):
            rows.add(f"{name}.{k}", v[k], unit, best=best, load=v["load"])
