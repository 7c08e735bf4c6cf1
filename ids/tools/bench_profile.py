"""Where a training step's time goes, from MindSpore's own profiler (`mindspore.profiler`).

The step profiled is the one `ids.model.fit.fit` runs (`train_step` over `batches`), on the bench's
data and model, after a warm-up step (compilation). Every CPU kernel launch is attributed to a
phase by its full name: `Gradients/...` and `Expand/...` (the backward expanders) are the
backward pass, `.../optimizer-...` the Adam update, the rest the forward pass. Host and other =
the wall time of the profiled steps minus the kernels' time (batch gathering, Python, launch
gaps, waiting for a core on a busy machine).
"""

from __future__ import annotations

import csv
import glob
import tempfile
import time
from collections import defaultdict

from ids.tools.bench_core import load1, with_flows

PHASES = ("forward", "backward", "optimizer")


def phase_of(full_op_name: str) -> str:
    if full_op_name.startswith(("Gradients/", "Expand/")):
        return "backward"
    if "/optimizer-" in full_op_name or full_op_name.startswith("optimizer"):
        return "optimizer"
    return "forward"


def read_ops(folder: str) -> list[dict]:
    """Per-kernel rows of the profiler's CPU detail file (op_type, phase, total ms)."""
    files = glob.glob(f"{folder}/**/cpu_op_detail_info_*.csv", recursive=True)
    rows = []
    for f in files:
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append({"op_type": r["op_type"], "phase": phase_of(r["full_op_name"]),
                             "ms": float(r["op_total_time(ms)"])})
    return rows


def profile_job(overrides: list[str], n_flows: int, batch_size: int, steps: int,
                threads: int) -> dict:
    """Profile `steps` training steps; per phase and per operator type, ms per step."""
    import mindspore as ms
    from mindspore import nn
    from mindspore.profiler import ProfilerActivity, profile, tensorboard_trace_handler

    from ids.config import compose
    from ids.data.prepare import prepare
    from ids.model.feed import batches
    from ids.model.fit import train_step
    from ids.model.network import build_model
    from ids.model.runtime import setup_runtime

    cfg = compose(with_flows(overrides, n_flows) + [
        "trainer.mode=graph", f"trainer.threads={int(threads)}"])
    setup_runtime(cfg.trainer)
    prepared = prepare(cfg.data)
    T = int(cfg.data.window)
    w, y = prepared.train.windows(T), prepared.train.y.astype("float32")
    ms.set_seed(int(cfg.seed))
    model = build_model(w.shape[2], T, cfg.model)
    opt = nn.Adam(model.trainable_params(), learning_rate=float(cfg.trainer.lr))
    step = train_step(model, opt)
    step.set_train(True)
    bs = min(int(batch_size), len(w))
    import numpy as np

    order = np.random.default_rng(0).permutation(len(w))
    order = np.resize(order, (steps + 1) * bs)
    feed = list(batches(w, y, order, np.ones(len(order), np.float32), bs))
    step(*feed[0]).asnumpy()  # compile outside the profile
    with tempfile.TemporaryDirectory(prefix="ids-prof-") as tmp:
        with profile(activities=[ProfilerActivity.CPU],
                     on_trace_ready=tensorboard_trace_handler(tmp)):
            t = time.perf_counter()
            losses = [step(*b) for b in feed[1:]]
            losses[-1].asnumpy()
            wall = time.perf_counter() - t
        ops = read_ops(tmp)
    phase_ms: dict[str, float] = defaultdict(float)
    type_ms: dict[tuple[str, str], float] = defaultdict(float)
    for r in ops:
        phase_ms[r["phase"]] += r["ms"] / steps
        type_ms[(r["phase"], r["op_type"])] += r["ms"] / steps
    kernels = sum(phase_ms.values())
    wall_ms = 1000 * wall / steps
    return {"steps": steps, "batch_size": bs, "wall_ms": wall_ms, "kernels_ms": kernels,
            "phase_ms": {p: phase_ms.get(p, 0.0) for p in PHASES},
            "host_other_ms": max(0.0, wall_ms - kernels),
            "ops": sorted(([p, t, v] for (p, t), v in type_ms.items()), key=lambda r: -r[2]),
            "load": load1()}


def profile_text(r: dict, top: int = 15) -> str:
    """The breakdown as a small table: phases, then the costliest operator types."""
    wall = r["wall_ms"] or 1.0
    lines = [f"MindSpore profiler, {r['steps']} training steps at batch {r['batch_size']}: "
             f"{wall:.2f} ms per step (wall, profiler on), kernels {r['kernels_ms']:.2f} ms "
             f"(load {r['load']:.1f})", f"{'phase':<12} {'ms/step':>9} {'share':>7}"]
    for p in PHASES:
        lines.append(f"{p:<12} {r['phase_ms'][p]:>9.3f} {r['phase_ms'][p] / wall:>7.1%}")
    lines.append(f"{'host+other':<12} {r['host_other_ms']:>9.3f} {r['host_other_ms'] / wall:>7.1%}")
    lines.append(f"\n{'operator type':<24} {'phase':<10} {'ms/step':>9} {'share':>7}")
    for phase, op, ms in r["ops"][:top]:
        lines.append(f"{op:<24} {phase:<10} {ms:>9.3f} {ms / wall:>7.1%}")
    return "\n".join(lines)
