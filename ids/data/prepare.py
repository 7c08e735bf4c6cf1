"""Prepared data: read in batches, dedup, split, encode, store; then the training subset.

`prepare(data_cfg)` is what every command trains and scores on. The flows (a file, or the
generator's output) are read batch by batch (`ids.data.ingest`): each distinct flow is kept
once, and per flow only its distinct number, label, category and file row, so memory grows with
the distinct flows, not with the file. `data.dedup=exact` first drops every flow identical to
an earlier one (raw features, Label and Attack; identifiers only when kept): the splits and
windows then run over the remaining flows, so a window's "previous" flows skip the dropped
ones. `Split.rows` still index the file.

Encoding (`ids.data.encoding.Preprocessor`) is fitted on the training split only (the same
values as fitting on the whole split frame) and applied to the distinct flows only; zero rows
pad the first T-1 windows of a split: zero is the train mean of every scaled column.

With `cache_dir` the result is the prepared store (`ids.data.cache`), built once and
memory-mapped by every later process; without it, the same arrays in memory.
`data.order` (NF-v3): flows with start times are put in time order (stable on ties) before the
split, so the contiguous 70/15/15 split is a split in time (`info["time_range"]`).
`data.window_by=host|pair` then groups each split's windows by source (and destination):
the same store serves every `window_by`, as every window length.
`data.max_train_flows` then keeps a stratified, seeded subset of the training split (val and
test stay whole), taken from the same store.
`data.time_gap` (NF-v3) adds `HOST_GAP_MS` and `HOST_FIRST` to every flow in pass one, in
file order (`ids.data.gaps`): features like the others, so they are part of the store's key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ids.data import cache, copies, synthetic_v3  # noqa: F401 - registers source synthetic_v3
from ids.data.encoding import CHUNK_ROWS, Preprocessor
from ids.data.flows import SPLITS, DataError, flow_file, load_frame, validated
from ids.data.gaps import FileGaps
from ids.data.ingest import Ingested, ingest
from ids.data.prefetch import prefetch
from ids.data.reader import BATCH_ROWS
from ids.data.splits import Prepared, group_keys, split_indices, train_subset
from ids.data.windows import check_window

_CACHE: dict[str, Prepared] = {}


def clear_cache() -> None:
    _CACHE.clear()


def _settings(data_cfg) -> dict:
    """Every data setting but the window (windows are views over the same prepared flows)."""
    if dataclasses.is_dataclass(data_cfg):
        d = dataclasses.asdict(data_cfg)
    else:
        from omegaconf import OmegaConf
        d = OmegaConf.to_container(data_cfg, resolve=True)
    d.pop("window", None)
    return d


def _cache_key(data_cfg, store: bool = False) -> str:
    """The settings and the file's identity; for the store (`store`) without the training
    subset, which is drawn from the same prepared flows."""
    d = _settings(data_cfg)
    if store:  # both are views of the same prepared flows
        d.pop("max_train_flows", None)
        d.pop("window_by", None)
    if d.get("source") == "nf_bot_iot" and d.get("path") and os.path.exists(d["path"]):
        st = os.stat(d["path"])  # a rewritten file is read again
        d["_file"] = [os.path.abspath(d["path"]), st.st_size, st.st_mtime_ns]
    return json.dumps(d, sort_keys=True, default=str)


def prepare(data_cfg, cache_dir: str | os.PathLike | None = None,
            batch_rows: int = BATCH_ROWS) -> Prepared:
    """Read, split, fit on train, encode; cached in-process by the config minus window, and
    on disk under `cache_dir` (the top-level `cache_dir` key) when given: other processes
    with the same data settings (sweep workers, promote, evaluate) open it (`ids.data.cache`).
    `batch_rows`: rows read at a time (the result does not depend on it)."""
    check_window(data_cfg.window)
    key = _cache_key(data_cfg)
    if key not in _CACHE:
        _CACHE[key] = _subset(_grouped(_prepare_or_load(data_cfg, cache_dir, int(batch_rows)),
                                       data_cfg), data_cfg)
    check_window(data_cfg.window, _CACHE[key].sizes())
    return _CACHE[key]


def _prepare_or_load(data_cfg, cache_dir, batch_rows: int) -> Prepared:
    if not cache_dir:
        with tempfile.TemporaryDirectory(prefix="ids-prepare-") as tmp:
            _build(data_cfg, Path(tmp), batch_rows)
            return cache.load(Path(tmp), in_memory=True, verify=False)
    folder = Path(cache_dir) / cache.key(_cache_key(data_cfg, store=True))
    try:
        prepared = cache.load(folder)
    except cache.Changed as exc:  # never used: prepared again from the data
        print(f"note: {exc}; preparing it again", file=sys.stderr)
        prepared = None
    if prepared is None:
        shutil.rmtree(folder, ignore_errors=True)  # absent, or damaged: never trusted
        cache.build(folder, lambda tmp: _build(data_cfg, tmp, batch_rows))
        prepared = cache.load(folder, record=False)
    if prepared is None:
        raise DataError(f"the prepared data in {folder} cannot be read back; remove the folder "
                        "and run again")
    return prepared


def _ingest(data_cfg, folder: Path, batch_rows: int) -> Ingested:
    """Pass one over the configured flows (`ids.data.ingest`)."""
    mode = str(getattr(data_cfg, "dedup", "none"))
    if mode not in ("none", "exact"):
        raise DataError(f"data.dedup={mode!r} is unknown: use none or exact")
    args = (folder, bool(data_cfg.keep_identifiers), mode == "exact")
    time_gap = bool(getattr(data_cfg, "time_gap", False))
    if data_cfg.source != "nf_bot_iot" or not data_cfg.path:
        df = load_frame(data_cfg)  # the generator, or load_frame's error naming the setting
        try:
            return ingest((df.iloc[lo: lo + batch_rows] for lo in range(0, len(df), batch_rows)),
                          *args, FileGaps() if time_gap else None)
        except DataError as e:
            if not time_gap:
                raise
            raise DataError(f"data.source={data_cfg.source}: {e}") from e
    file = flow_file(data_cfg.path)

    def batches():
        # The next batch is parsed and validated in a thread while this one is hashed: pass one
        # 1.3x faster on a 5M-flow file (2 cores); up to three batches alive instead of one.
        return prefetch(validated(file, True, data_cfg.max_rows, batch_rows), 2)

    def once() -> Ingested:
        gaps = FileGaps() if time_gap else None  # data.time_gap: the file's own message below
        try:
            return ingest(batches(), *args, gaps)
        except DataError as e:
            if gaps is None or str(e).startswith(str(file.path)):
                raise
            raise DataError(f"{file.path}: {e}") from e

    ing = once()
    if file.widened_late:  # batches read before a column's type was widened: again, all alike
        shutil.rmtree(folder)
        file.widened_late = False
        ing = once()
    if ing is None:
        raise DataError(f"{file.path}: the data has no flows (empty file or only a header)")
    return ing


def _build(data_cfg, folder: Path, batch_rows: int) -> None:
    """Write the prepared store of `data_cfg` into `folder` (`ids.data.cache` lists its files)."""
    ing = _ingest(data_cfg, folder / "spool", batch_rows)
    if ing.renamed:
        print("note: NF-v3 attack names read as "
              + ", ".join(f"{a} -> {b}" for a, b in sorted(ing.renamed.items())), file=sys.stderr)
    back = (ing.gaps_out_of_order or {}).get("flows")
    if back:
        print(f"note: {back:,} flows start before the flow above them in the file (the first at "
              f"row {ing.gaps_out_of_order['first_row']}, 0-based): time gaps are measured in "
              "file order, as a scorer measures them (0 where a host's flow starts before its "
              "previous one); sort the file by FLOW_START_MILLISECONDS for gaps in time order",
              file=sys.stderr)
    ing, order = _ordered(ing, data_cfg)
    pos = split_indices(len(ing.ids), data_cfg)
    counts = {}
    for name, p in pos.items():
        attack = int(_take(ing.y, p).sum())
        counts[name] = {"benign": len(p) - attack, "attack": attack}
        if attack in (0, len(p)):
            kind = "attack" if attack == 0 else "benign"
            raise DataError(f"the {name} split ({len(p)} flows) has no {kind} flows: use "
                            "data.split=chunks, another data.seed or more flows")
    pre = Preprocessor(bool(data_cfg.keep_identifiers), int(data_cfg.l7_top_k),
                       int(getattr(data_cfg, "numeric_bins", 0)),
                       int(getattr(data_cfg, "numeric_top_k", 0)))
    pre.fit_rows(ing.table, _take(ing.ids, pos["train"]))
    table = cache.NpyWriter(folder / "table.npy", np.float32,
                            (len(ing.table), len(pre.feature_names_)))
    try:  # the next chunk read and encoded in a thread while this one is written and hashed
        for X in prefetch((pre.transform(ing.table[lo: lo + CHUNK_ROWS])
                           for lo in range(0, len(ing.table), CHUNK_ROWS)), 2):
            table.write(X)
    finally:
        table.close()
    cache.write_array(folder / "hashes.npy", ing.hashes, np.uint64)
    id_type = np.int32 if len(ing.table) < 2**31 else np.int64
    for name, p in pos.items():
        for field, src, dtype in (("ids", ing.ids, id_type), ("y", ing.y, np.float32),
                                  ("attack", ing.codes, np.int16), ("rows", ing.rows, np.int64)):
            cache.write_array(folder / f"{name}.{field}.npy", _take(src, p), dtype)
        for field, src, dtype in (("start", ing.start, np.int64), ("src", ing.src, np.int32),
                                  ("dst", ing.dst, np.int32)):
            if src is not None:  # NF-v3: what orders flows in time and groups them by host
                cache.write_array(folder / f"{name}.{field}.npy", _take(src, p), dtype)
    flows = {name: (ing.hashes[_take(ing.ids, p)], _take(ing.y, p)) for name, p in pos.items()}
    kept = len(ing.ids)
    info = {"source": data_cfg.source,
            "path": None if data_cfg.source != "nf_bot_iot" else str(data_cfg.path),
            "layout": "synthetic" if data_cfg.source == "synthetic" else pre.layout_,
            "attack_renamed": dict(sorted(ing.renamed.items())),
            **({} if ing.gaps_out_of_order is None else
               {"time_gap_out_of_order": ing.gaps_out_of_order}),
            "n_flows": ing.n_flows, "n_features": len(pre.feature_names_), "counts": counts,
            "attack_counts": dict(sorted(ing.attack_counts.items(), key=lambda kv: -kv[1])),
            "hash": ing.digest, "split": data_cfg.split, "order": order,
            "time_range": None if ing.start is None else {
                name: time_range(_take(ing.start, p)) for name, p in pos.items()},
            "hosts": len(ing.addresses) if ing.src is not None else None,
            "keep_identifiers": pre.keep_identifiers,
            "dedup": {"mode": str(getattr(data_cfg, "dedup", "none")),
                      "dropped": ing.n_flows - kept, "kept": kept},
            "overlap": _overlap(flows),
            "settings": _settings(data_cfg)}
    cache.write_meta(folder, pre, list(pre.feature_names_), info, ing.categories)
    shutil.rmtree(folder / "spool")


def _grouped(prepared: Prepared, data_cfg) -> Prepared:
    """`prepared` with windows over each host's (`data.window_by=host`: same source) or each
    pair's (`pair`: same source and destination) previous flows, within each split
    (`Split.grouped`); as it is for `none`."""
    by = str(getattr(data_cfg, "window_by", "none"))
    if by not in ("none", "host", "pair"):
        raise DataError(f"data.window_by={by!r} is unknown: use none, host or pair")
    if by == "none":
        return prepared
    if any("src" not in prepared.context.get(s, {}) for s in SPLITS):
        raise DataError(f"data.window_by={by} needs each flow's start time and addresses (the "
                        "NF-v3 columns FLOW_START_MILLISECONDS, IPV4_SRC_ADDR, IPV4_DST_ADDR), "
                        "which these flows lack: use data.window_by=none, an NF-v3 file or "
                        "data=nf_v3")
    splits = {s: prepared.split(s).grouped(group_keys(prepared.context[s], by),
                                           prepared.context[s]["start"]) for s in SPLITS}
    return dataclasses.replace(prepared, **splits, info={**prepared.info, "window_by": by},
                               whole={s: prepared.split(s) for s in SPLITS})


def _ordered(ing: Ingested, data_cfg) -> tuple[Ingested, str]:
    """(the kept flows in the order of `data.order`, "time" or "file"): by start time (stable
    on ties) where the flows have one and the order is `auto` or `time`; as read otherwise."""
    order = str(getattr(data_cfg, "order", "auto"))
    if order not in ("auto", "time", "file"):
        raise DataError(f"data.order={order!r} is unknown: use auto, time or file")
    if ing.start is None:
        if order == "time":
            raise DataError("data.order=time needs the flows' start times (the NF-v3 column "
                            "FLOW_START_MILLISECONDS), which these flows lack: use "
                            "data.order=file (or auto)")
        return ing, "file"
    if order == "file":
        return ing, "file"
    start = np.asarray(ing.start)
    if len(start) < 2 or bool((start[1:] >= start[:-1]).all()):
        return ing, "time"  # already in time order (as the published v3 files are)
    perm = np.argsort(start, kind="stable")
    moved = {k: np.asarray(getattr(ing, k))[perm] for k in ("ids", "y", "codes", "rows",
                                                            "start", "src", "dst")
             if getattr(ing, k) is not None}
    return dataclasses.replace(ing, **moved), "time"


def time_range(start: np.ndarray) -> dict | None:
    """{first, last: start times in ms and as UTC text} of a split's flows (None if none)."""
    if not len(start):
        return None
    lo, hi = int(np.min(start)), int(np.max(start))
    return {"first_ms": lo, "last_ms": hi, "first": _utc(lo), "last": _utc(hi)}


def time_ranges(info: dict) -> str:
    """'flows in time order (by start): train 2019-04-23T...Z .. ..., val ..., test ...' or
    'flows in file order' for the prepared data's `info`."""
    spans = info.get("time_range") or {}
    if info.get("order") != "time" or not spans:
        return "flows in file order"
    return "flows in time order (by start): " + ", ".join(
        f"{name} {span['first']} .. {span['last']}" if span else f"{name} (none)"
        for name, span in spans.items())


def _utc(ms: int) -> str:
    return np.datetime64(int(ms), "ms").astype(str) + "Z"


def _overlap(flows: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Copies of training flows in val and test (`ids.data.copies.TrainIndex.stats`) from
    each split's (feature hashes, labels)."""
    seen = copies.TrainIndex(*flows["train"])
    return {name: seen.stats(*flows[name]) for name in ("val", "test")}


def _subset(prepared: Prepared, data_cfg) -> Prepared:
    """`prepared` with today's settings in its info and, with `data.max_train_flows`, a
    stratified seeded subset of the training split (copies then count against the subset)."""
    info = {**prepared.info, "settings": _settings(data_cfg), "train_subset": None}
    n = getattr(data_cfg, "max_train_flows", None)
    if not n or int(n) >= len(prepared.train.y):
        return dataclasses.replace(prepared, info=info)
    train = train_subset(prepared.train, int(n), int(data_cfg.seed))
    attack = int(np.sum(train.y))
    info["counts"] = {**info["counts"], "train": {"benign": len(train.y) - attack,
                                                  "attack": attack}}
    info["overlap"] = _overlap({"train": (train.hashes, train.y),
                                **{s: (prepared.split(s).hashes, prepared.split(s).y)
                                   for s in ("val", "test")}})
    info["train_subset"] = {"flows": len(train.y), "of": len(prepared.train.y),
                            "seed": int(data_cfg.seed), "stratified_by": "Attack"}
    return dataclasses.replace(prepared, train=train, info=info)


def _take(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a: a view when they are one contiguous block (no copy), else a copy."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and (np.diff(rows) == 1).all():
        return a[rows[0]: rows[-1] + 1]
    return a[rows]
