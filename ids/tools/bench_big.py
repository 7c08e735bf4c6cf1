"""Bench section `big` (not in the default sections): full-size files on one machine.

    python -m ids.tools.bench --sections big --big-dir ../scratch --big-flows 37800000,76000000

For each size: a v2-layout file written by `ids.data.synthetic_v2.write_flows` (or with
`--big-layout v3` a v3 file of `ids.data.synthetic_v3.write_flows`: hosts and time; its trial
also trains on host windows, row `trial.host_vs_rows`) (kept in
`--big-dir` and reused; its size and share of copies reported), then in fresh processes:
`prepare` into an empty prepared store (seconds, flows/s, peak RSS, store size, and the
seconds of it spent hashing the store's checksums), a second command opening that store
(seconds until `prepare` returns, and the whole process), a third opening a copy of it (every
file's stamp differs: each is hashed once again, as after `cp -r`), and a
training comparison at the largest size, one after the other in one process: fit() on an
in-memory preparation of a file prefix with `--big-subset` training flows (`data.max_rows`),
the same prefix from a store, `--big-subset` training flows drawn from the full store
(`data.max_train_flows`), and the in-memory prefix again; ratios are over the mean of the two
in-memory runs. Windows/s = training windows / train_seconds of epochs 2.. (of the one epoch
when `big_epochs` is 1: compilation included alike in every run); validation scoring is timed
apart (the whole val split).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ids.tools.bench_core import Job, Rows, in_fresh_process, load1, peak_rss_mb

# One epoch per trial run: validating on the whole 11.4M-flow val split of the 76M file takes
# most of a trial; windows/s then include the graph compilation (~4 s of ~100) in every run.
FULL_BIG = {"big_flows": [37_800_000, 76_000_000], "big_subset": 1_000_000, "big_epochs": 1}
QUICK_BIG = {"big_flows": [60_000], "big_subset": 8_000, "big_epochs": 1}


def _file(folder: Path, n: int, layout: str = "v2") -> Path:
    return folder / f"ids-{layout}-{n}.csv"


def _data(path: Path, *extra: str) -> list[str]:
    return ["data=nf_bot_iot", f"data.path={path}", *extra]


def generate_job(folder: str, n: int, layout: str = "v2") -> dict:
    """Write the file unless it is there (it is deterministic); its size and copies. `layout`
    v3: `ids.data.synthetic_v3` (hosts and time; its flows are not replayed copies)."""
    if layout == "v3":
        from ids.data.synthetic_v3 import write_flows
    else:
        from ids.data.synthetic_v2 import write_flows

    path = _file(Path(folder), n, layout)
    t = time.perf_counter()
    if not path.exists():
        tmp = path.with_suffix(".partial.csv")
        write_flows(tmp, n)
        os.replace(tmp, path)
    return {"seconds": time.perf_counter() - t, "bytes": path.stat().st_size, "load": load1()}


def prepare_job(folder: str, n: int, overrides: list[str], fresh: bool,
                copied: bool = False, layout: str = "v2") -> dict:
    """prepare() into the store under `folder` (emptied first when `fresh`; with `copied`, its
    checksum stamps are dropped first, as a copy of the store has none that match)."""
    t_start = time.perf_counter()
    from ids.config import compose
    from ids.data import cache
    from ids.data.prepare import prepare

    store = Path(folder) / "store"
    if fresh:
        shutil.rmtree(store, ignore_errors=True)
    for stamps in store.glob(f"*/{cache.VERIFIED}") if copied else ():
        stamps.unlink()
    cfg = compose(overrides + _data(_file(Path(folder), n, layout)))
    t, cpu = time.perf_counter(), time.process_time()
    p = prepare(cfg.data, cache_dir=store)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    table_rows = len(p.train.sequence()[0])
    out = {"seconds": seconds, "cpu_seconds": cpu, "process_seconds": time.perf_counter() - t_start,
           "flows": float(p.info["n_flows"]), "peak_rss_mb": peak_rss_mb(),
           "distinct_share": table_rows / p.info["n_flows"],
           "store_gb": sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e9,
           "hash_seconds": cache.HASHING["seconds"], "hash_gb": cache.HASHING["bytes"] / 1e9,
           "load": load1()}
    out["flows_per_s"] = out["flows"] / seconds
    return out


def _fit(cfg, prepared) -> dict:
    from ids.model.fit import fit

    with tempfile.TemporaryDirectory(prefix="ids-bench-") as tmp:
        r = fit(cfg, prepared, checkpoint_dir=tmp)
    train_s = [h["train_seconds"] for h in r.history]
    n = len(prepared.train.y) // min(int(cfg.trainer.batch_size), len(prepared.train.y)) * min(
        int(cfg.trainer.batch_size), len(prepared.train.y))
    steady = train_s[1:] or train_s
    val = [h["epoch_seconds"] - h["train_seconds"] for h in r.history]
    return {"windows_per_s": n / statistics.median(steady), "train_windows": float(n),
            "val_windows_per_s": len(prepared.val.y) / statistics.median(val[1:] or val)}


def trial_job(folder: str, n: int, overrides: list[str], subset: int, epochs: int,
              layout: str = "v2") -> dict:
    """Training windows/s, one after the other in this process: a file prefix of `subset`
    training flows in memory (today's path), the same prefix from a store, the full store with
    a `subset` training subset, the in-memory prefix again (the load may have changed); for a
    v3 file also the store's subset with host windows (`data.window_by=host`)."""
    from ids.config import compose
    from ids.data.prepare import clear_cache, prepare
    from ids.model.runtime import setup_runtime

    path = _file(Path(folder), n, layout)
    store = Path(folder) / "store"
    common = overrides + [f"trainer.epochs={epochs}", "trainer.patience=0"]
    prefix = [f"data.max_rows={int(round(subset / 0.7))}"]  # a 70 % training split of `subset`
    setup_runtime(compose(common).trainer)
    out = {}
    runs = [("memory_prefix", prefix, None), ("store_prefix", prefix, store),
            ("store_subset", [f"data.max_train_flows={subset}"], store),
            ("memory_prefix_again", prefix, None)]
    if layout == "v3":
        runs.insert(3, ("store_subset_host", [f"data.max_train_flows={subset}",
                                              "data.window_by=host"], store))
    for name, over, cache in runs:
        cfg = compose(common + _data(path, *over))
        clear_cache()
        t = time.perf_counter()
        prepared = prepare(cfg.data, cache_dir=cache)
        out[name] = {"data_seconds": time.perf_counter() - t, **_fit(cfg, prepared)}
    out["load"] = load1()
    return out


def big_job(folder: str, sizes: dict, overrides: list[str]) -> dict:
    """Every step of the section in order, each in its own fresh process (own peak RSS)."""
    out = {"sizes": {}}
    layout = sizes.get("big_layout", "v2")
    for n in sizes["big_flows"]:
        out["sizes"][n] = {"generate": in_fresh_process(generate_job, folder, n, layout),
                           "prepare": in_fresh_process(prepare_job, folder, n, overrides, True,
                                                       False, layout),
                           "reuse": in_fresh_process(prepare_job, folder, n, overrides, False,
                                                     False, layout),
                           "copied": in_fresh_process(prepare_job, folder, n, overrides, False,
                                                      True, layout)}
    if sizes["big_subset"]:  # --big-subset 0: no trial
        out["trial"] = in_fresh_process(trial_job, folder, max(sizes["big_flows"]), overrides,
                                        sizes["big_subset"], sizes["big_epochs"], layout)
    return out


def _tag(n: int) -> str:
    return f"big.{n / 1e6:g}M" if n >= 1_000_000 else f"big.{n // 1000}k"


def plan_big(rows: Rows, overrides: list[str], sizes: dict, folder: str | None) -> list[Job]:
    if not folder:
        raise SystemExit("error: --sections big needs --big-dir DIR (room for the files: "
                         "~170 bytes per flow, plus the store)")
    Path(folder).mkdir(parents=True, exist_ok=True)

    def handle(r: dict) -> None:
        for n, steps in r["sizes"].items():
            tag, g, p, u = _tag(n), steps["generate"], steps["prepare"], steps["reuse"]
            rows.add(f"{tag}.file_gb", g["bytes"] / 1e9, "GB", load=g["load"])
            rows.add(f"{tag}.generate_seconds", g["seconds"], "s", best="min", load=g["load"])
            for key, unit, best in (("seconds", "s", "min"), ("cpu_seconds", "s", "min"),
                                    ("flows_per_s", "flows/s", "max"),
                                    ("peak_rss_mb", "MB", "min"), ("store_gb", "GB", "max")):
                rows.add(f"{tag}.prepare.{key}", p[key], unit, best=best, load=p["load"])
            rows.add(f"{tag}.copies_share", 1 - p["distinct_share"], "of flows", load=p["load"])
            rows.add(f"{tag}.prepare.hash_seconds", p["hash_seconds"], "s", best="min",
                     load=p["load"])
            rows.add(f"{tag}.prepare.hash_share", p["hash_seconds"] / p["seconds"], "of prepare",
                     best="min", load=p["load"])
            rows.add(f"{tag}.reuse.seconds", u["seconds"], "s", best="min", load=u["load"])
            rows.add(f"{tag}.reuse.process_seconds", u["process_seconds"], "s", best="min",
                     load=u["load"])
            c = steps["copied"]
            rows.add(f"{tag}.copied.seconds", c["seconds"], "s", best="min", load=c["load"])
            print(f"  {tag}: prepared {p['flows']:,.0f} flows in {p['seconds']:.0f} s "
                  f"({p['flows_per_s']:,.0f} flows/s; checksums {p['hash_seconds']:.1f} s of it), "
                  f"peak RSS {p['peak_rss_mb']:,.0f} MB, reused in {u['seconds']:.3f} s, a copy "
                  f"verified in {c['seconds']:.1f} s (load {p['load']:.1f})", flush=True)
        if "trial" not in r:
            return
        t, tag = dict(r["trial"]), _tag(max(r["sizes"]))
        load = t.pop("load")
        t.pop("wall", None)
        for name, v in t.items():
            for key, unit in (("windows_per_s", "windows/s"), ("val_windows_per_s", "windows/s"),
                              ("data_seconds", "s")):
                rows.add(f"{tag}.trial.{name}.{key}", v[key], unit, load=load)
        memory = (t["memory_prefix"]["windows_per_s"] + t["memory_prefix_again"]["windows_per_s"]) / 2
        for name in ("store_subset", "store_prefix"):
            rows.add(f"{tag}.trial.{name}_vs_memory", t[name]["windows_per_s"] / memory, "x",
                     load=load)
        if "store_subset_host" in t:  # v3: host windows against the rows' windows
            rows.add(f"{tag}.trial.host_vs_rows", t["store_subset_host"]["windows_per_s"]
                     / t["store_subset"]["windows_per_s"], "x", load=load)

    return [Job(big_job, (folder, sizes, overrides), handle, 10.0)]
