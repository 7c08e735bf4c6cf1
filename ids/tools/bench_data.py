"""Bench section `data`: load/generate, preprocess and window the flows; memory of the windows.

Times the public functions one after the other: `load_frame` alone (the read or the
generation), then `prepare` (which loads again, then splits, fits and transforms: preprocess =
prepare - load), then the windows of every split; a second `prepare` with only the window
changed must come from the in-process cache.
"""

from __future__ import annotations

import time

from ids.tools.bench_core import Job, Rows, load1, peak_rss_mb, root_array, rss_mb, with_flows


def data_job(overrides: list[str], n_flows: int, windows: tuple[int, ...]) -> dict:
    """Load/generate, preprocess and window `n_flows` flows; time, peak RSS, view memory."""
    from ids.config import compose
    from ids.data.flows import SPLITS, load_frame
    from ids.data.prepare import prepare

    cfg = compose(with_flows(overrides, n_flows))
    base_rss = rss_mb()
    t = time.perf_counter()
    frame = load_frame(cfg.data)
    load_s = time.perf_counter() - t
    del frame
    t0 = time.perf_counter()
    prepared = prepare(cfg.data)
    t1 = time.perf_counter()
    T = int(cfg.data.window)
    built = {name: prepared.split(name).windows(T) for name in SPLITS}
    t2 = time.perf_counter()
    out = {"flows": float(prepared.info["n_flows"]), "load_seconds": load_s,
           "preprocess_seconds": max(0.0, (t1 - t0) - load_s),
           "window_seconds": t2 - t1, "total_seconds": load_s + max(0.0, t1 - t0 - load_s) + (
               t2 - t1), "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss}
    out["step_rss_mb"] = out["peak_rss_mb"] - base_rss
    # A trial that changes only the model (or the window) must reuse the prepared data.
    cfg.data.window = T + 1
    t = time.perf_counter()
    again = prepare(cfg.data)
    out["cached_prepare_seconds"] = time.perf_counter() - t
    out["cache_hit"] = float(again is prepared)
    out["windows_cached"] = float(all(again.split(n).windows(T) is w for n, w in built.items()))
    mem = {}
    for T in windows:
        feat = padded = extra = materialised = 0
        for name in SPLITS:
            split = prepared.split(name)
            if T > len(split.X):
                continue
            w = split.windows(T)
            root = root_array(w)
            feat += split.X.nbytes
            padded += root.nbytes if root is not split.X else 0
            extra += 0 if not w.flags.owndata else w.nbytes
            materialised += w.shape[0] * w.shape[1] * w.shape[2] * w.itemsize
        mem[T] = {"features_mb": feat / 2**20, "padded_base_mb": padded / 2**20,
                  "view_extra_bytes": float(extra), "materialised_mb": materialised / 2**20}
    out["memory"] = mem
    out["load"] = load1()
    return out


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
