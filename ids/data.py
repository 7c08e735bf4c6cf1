"""NetFlow data: load (file or synthetic), validate, split, encode, and window flows.

`data.dedup=exact` first drops every flow identical to an earlier one (raw features, Label and
Attack; identifiers only when kept): the splits and windows then run over the remaining flows,
so a window's "previous" flows skip the dropped ones. `Split.rows` still index the file.

Split first, window second: train/val/test are contiguous blocks in flow order (or, with
`data.split=chunks`, fixed-size contiguous chunks dealt to the splits at random by `data.seed`,
each split the concatenation of its chunks in file order). Windows are built per split, so none
straddles two splits; with chunks a window MAY span two chunks of the same split (the flows
before a chunk start are then the end of that split's previous chunk, not zero padding).

Encoding (`Preprocessor`, fitted on the training split only):
- counts, bytes, packets, durations and every other numeric v2 column: log1p(clip(x, 0)), then
  standardised with the train mean/std (std 0 -> 1). Signed or huge v2 values (e.g. the bytes
  per second columns, DNS_TTL_ANSWER) get the same treatment: negatives clip to 0, log1p tames
  the range.
- PROTOCOL: one-hot of the values seen in train + "other"; L7_PROTO: one-hot of the
  `l7_top_k` most frequent train values + "other".
- TCP_FLAGS, CLIENT_TCP_FLAGS, SERVER_TCP_FLAGS: 8 bit indicators (FIN..CWR), bits above 7 ignored.
- identifiers (only with keep_identifiers): ports and the 4 octets of each IPv4 address,
  standardised linearly. They identify the testbed's hosts and leak the label.
Zero rows pad the first T-1 windows of a split: zero is the train mean of every scaled column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ids import synthetic

ID_COLUMNS = ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT"]
IP_COLUMNS, PORT_COLUMNS = ["IPV4_SRC_ADDR", "IPV4_DST_ADDR"], ["L4_SRC_PORT", "L4_DST_PORT"]
LABEL, ATTACK = "Label", "Attack"
V1_FEATURES = ["PROTOCOL", "L7_PROTO", "IN_BYTES", "OUT_BYTES", "IN_PKTS", "OUT_PKTS",
               "TCP_FLAGS", "FLOW_DURATION_MILLISECONDS"]
V2_FEATURES = V1_FEATURES[:6] + [
    "TCP_FLAGS", "CLIENT_TCP_FLAGS", "SERVER_TCP_FLAGS", "FLOW_DURATION_MILLISECONDS",
    "DURATION_IN", "DURATION_OUT", "MIN_TTL", "MAX_TTL", "LONGEST_FLOW_PKT", "SHORTEST_FLOW_PKT",
    "MIN_IP_PKT_LEN", "MAX_IP_PKT_LEN", "SRC_TO_DST_SECOND_BYTES", "DST_TO_SRC_SECOND_BYTES",
    "RETRANSMITTED_IN_BYTES", "RETRANSMITTED_IN_PKTS", "RETRANSMITTED_OUT_BYTES",
    "RETRANSMITTED_OUT_PKTS", "SRC_TO_DST_AVG_THROUGHPUT", "DST_TO_SRC_AVG_THROUGHPUT",
    "NUM_PKTS_UP_TO_128_BYTES", "NUM_PKTS_128_TO_256_BYTES", "NUM_PKTS_256_TO_512_BYTES",
    "NUM_PKTS_512_TO_1024_BYTES", "NUM_PKTS_1024_TO_1514_BYTES", "TCP_WIN_MAX_IN",
    "TCP_WIN_MAX_OUT", "ICMP_TYPE", "ICMP_IPV4_TYPE", "DNS_QUERY_ID", "DNS_QUERY_TYPE",
    "DNS_TTL_ANSWER", "FTP_COMMAND_RET_CODE"]
FLAG_COLUMNS = ["TCP_FLAGS", "CLIENT_TCP_FLAGS", "SERVER_TCP_FLAGS"]
FLAG_BITS = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"]
SPLITS = ("train", "val", "test")
PUBLISHED = "https://espace.library.uq.edu.au/view/UQ:62e6d80"


class DataError(ValueError):
    """Bad input data or data settings; the message names the problem and the fix."""


def _layout(columns) -> str:
    """'v2' if any v2-only feature is present (then all must be), else 'v1'; DataError naming
    the missing columns otherwise. Columns of neither layout are ignored."""
    cols = set(columns)
    expected = "v2" if cols & (set(V2_FEATURES) - set(V1_FEATURES)) else "v1"
    feats = V2_FEATURES if expected == "v2" else V1_FEATURES
    missing = [c for c in feats if c not in cols]
    if not missing:
        return expected
    odd = sorted(cols - set(V2_FEATURES + ID_COLUMNS + [LABEL, ATTACK]))
    seps = [s for s in (";", "\t", "|") if len(cols) == 1 and s in str(next(iter(cols)))]
    if seps:
        raise DataError(f"only one column, {str(odd[0])[:60]!r}...: the file looks "
                        f"{seps[0]!r}-separated; ids reads comma-separated CSV (convert it, e.g. "
                        "pandas.read_csv(path, sep=...).to_csv(new_path, index=False))")
    raise DataError(f"missing columns {missing} for the NetFlow {expected} layout (expected "
                    f"{feats}); unexpected columns {odd[:10]} - renamed? Rename them back to the "
                    "published NetFlow column names.")


def _row(df: pd.DataFrame, i: int) -> str:
    """Where position i of `df` is in its file: the index holds the row number from the file's
    first flow (predict sets it per chunk), so chunked and whole-file reads say the same."""
    r = df.index[i]
    if isinstance(r, (int, np.integer)):
        return f"row {int(r)} (0-based, header excluded: line {int(r) + 2} of a CSV)"
    return f"row {r!r}"


def _columns(df: pd.DataFrame, cols: list[str]) -> dict[str, np.ndarray]:
    """Numeric arrays of `cols` (dtype kept when numeric); DataError on text, NaN or infinity."""
    out = {}
    for c in cols:
        s = df[c]
        if not pd.api.types.is_numeric_dtype(s):
            num = pd.to_numeric(s, errors="coerce")
            bad = np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy())
            if len(bad):
                raise DataError(f"column {c!r} must be numeric, but {_row(df, bad[0])} holds "
                                f"{s.iloc[bad[0]]!r} ({len(bad)} such rows); fix or drop those "
                                "rows")
            s = num
        a = (s.to_numpy(np.float64, na_value=np.nan)
             if pd.api.types.is_extension_array_dtype(s) else s.to_numpy())
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            first = int(np.flatnonzero(~np.isfinite(a))[0])
            raise DataError(f"column {c!r} has {nan} NaN and {inf} infinite values (NaN: an "
                            f"empty cell), the first at {_row(df, first)}; fill or drop those rows "
                            "before loading")
        out[c] = a
    return out


def _numeric(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Columns as a validated float64 (n, k) matrix."""
    return np.column_stack([a.astype(np.float64) for a in _columns(df, cols).values()])


def _strings(s: pd.Series) -> np.ndarray:
    return s.to_numpy(object) if pd.api.types.infer_dtype(s, skipna=False) == "string" else (
        s.astype(str).to_numpy(object))


# Counts that cannot be negative, and TCP flag fields (whole numbers, bit sets).
NON_NEGATIVE = ["IN_BYTES", "OUT_BYTES", "IN_PKTS", "OUT_PKTS", "FLOW_DURATION_MILLISECONDS"]


def _check_counts(df: pd.DataFrame, cols: dict[str, np.ndarray]) -> None:
    """DataError for a negative count or a negative or fractional TCP flags value: the encoding
    would otherwise clip or truncate them without a word."""
    for c in [c for c in NON_NEGATIVE + FLAG_COLUMNS if c in cols]:
        a = cols[c]
        neg = np.flatnonzero(a < 0)
        if len(neg):
            raise DataError(f"column {c!r} must be >= 0, but {_row(df, neg[0])} holds "
                            f"{a[neg[0]]!r} ({len(neg)} such rows); fix or drop those rows")
        if c in FLAG_COLUMNS and a.dtype.kind == "f":
            frac = np.flatnonzero(a != np.floor(a))
            if len(frac):
                raise DataError(f"column {c!r} holds TCP flag bits, a whole number, but "
                                f"{_row(df, frac[0])} holds {a[frac[0]]!r} ({len(frac)} such "
                                "rows); fix or drop those rows")


def validate_frame(df: pd.DataFrame, require_label: bool = True) -> pd.DataFrame:
    """A clean copy in canonical column order (ids present + features + Label + Attack).
    Error messages name the row by `df.index` (the row number in the file)."""
    if len(df) == 0:
        raise DataError("the data has no flows (empty file or only a header)")
    df = df.rename(columns=lambda c: str(c).strip())
    if not require_label and LABEL in df.columns and df[LABEL].isna().all():
        df = df.drop(columns=[c for c in (LABEL, ATTACK) if c in df.columns])  # labels optional
    feats = V2_FEATURES if _layout(df.columns) == "v2" else V1_FEATURES
    ids = [c for c in ID_COLUMNS if c in df.columns]
    cols = {c: _strings(df[c]) for c in ids if c in IP_COLUMNS}
    cols.update(_columns(df, [c for c in ids if c in PORT_COLUMNS] + feats))
    _check_counts(df, cols)
    if LABEL in df.columns:
        lab = pd.to_numeric(df[LABEL], errors="coerce").to_numpy(np.float64)
        bad = ~np.isin(lab, (0.0, 1.0))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            vals = pd.unique(df[LABEL].to_numpy()[bad])[:5].tolist()
            raise DataError(f"column 'Label' must be 0 (benign) or 1 (attack); found {vals} in "
                            f"{int(bad.sum())} rows, the first at {_row(df, first)}")
        cols[LABEL] = lab.astype(np.int64)
        fill = pd.Series(np.where(lab == 1, "Attack", "Benign"), dtype=object, index=df.index)
        att = df[ATTACK] if ATTACK in df.columns else fill
        cols[ATTACK] = _strings(att.where(att.notna(), fill))
    elif require_label:
        raise DataError("column 'Label' (0 benign, 1 attack) is missing; it is the target")
    order = ids + feats + [c for c in (LABEL, ATTACK) if c in cols]
    return pd.DataFrame({c: cols[c] for c in order}, index=pd.RangeIndex(len(df)))


def read_flows(path, max_rows: int | None = None, require_label: bool = True) -> pd.DataFrame:
    """Read a published NetFlow file (csv/csv.gz/zip/parquet) and validate it (columns, numeric,
    finite, Label 0/1, non-empty). Label/Attack optional only when require_label=False."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise DataError(f"data file not found: {p}. NF-BoT-IoT (and its NetFlow siblings) are "
                        f"published at {PUBLISHED}; download it and set data.path=... (or "
                        "IDS_DATA_PATH), or run with data=synthetic, which needs no download")
    name, nrows = p.name.lower(), None if max_rows is None else int(max_rows)
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty (0 bytes): no flows to load; re-download the file")
    opts = {"engine": "pyarrow"} if nrows is None else {"nrows": nrows, "low_memory": False}
    try:
        if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")):
            df = pd.read_csv(p, **opts)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(p) as zf:
                csvs = [m for m in zf.namelist() if m.lower().endswith(".csv")
                        and not m.startswith("__MACOSX/")]
                if len(csvs) != 1:
                    raise DataError(f"{p} holds {len(csvs)} CSV files {csvs[:5]}; the zip must "
                                    "hold exactly one (unzip it and point data.path at one CSV)")
                with zf.open(csvs[0]) as fh:
                    df = pd.read_csv(fh, **opts)
        elif name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(p)
            df = df if nrows is None else df.iloc[:nrows]
        else:
            raise DataError(f"unknown file extension of {p.name}: use .csv, .csv.gz, .zip (one "
                            "CSV inside) or .parquet")
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        what = "is empty" if "empty" in str(e).lower() else f"is not a readable CSV ({e})"
        raise DataError(f"{p} {what}: no flows to load; re-download the file") from e
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError) as e:
        raise DataError(f"{p} cannot be read as {_kind(name)} ({type(e).__name__}: {e}); is the "
                        "file complete, and does its extension match its content?") from e
    try:
        return validate_frame(df, require_label)
    except DataError as e:
        raise DataError(f"{p}: {e}") from e


def _kind(name: str) -> str:
    """What a file's extension promises, for error messages."""
    for ext, kind in ((".gz", "gzip"), (".bz2", "bzip2"), (".xz", "xz"), (".zst", "zstd"),
                      (".zip", "a zip archive"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return kind
    return "a CSV file"


def load_frame(data_cfg) -> pd.DataFrame:
    """The validated flows of `data_cfg`: generated (data.source=synthetic) or read from a file."""
    if data_cfg.source == "synthetic":
        try:
            df = synthetic.generate(int(data_cfg.n_flows), int(data_cfg.seed),
                                    dict(data_cfg.class_mix))
        except ValueError as e:
            raise DataError(str(e)) from e
        return validate_frame(df)
    if data_cfg.source == "nf_bot_iot":
        if not data_cfg.path:
            raise DataError(f"data.path is not set: download NF-BoT-IoT from {PUBLISHED} and set "
                            "data.path=..., or run with data=synthetic")
        return read_flows(data_cfg.path, data_cfg.max_rows)
    raise DataError(f"data.source={data_cfg.source!r} is unknown: use synthetic or nf_bot_iot")


def _ip_octets(s: pd.Series) -> np.ndarray:
    """(n, 4) octets; parses each distinct address once."""
    codes, uniques = pd.factorize(s.astype(str))
    parts = [u.split(".") for u in uniques]
    if not all(len(o) == 4 and all(x.isdigit() for x in o) for o in parts):
        raise DataError(f"column {s.name!r} must hold IPv4 addresses like 192.168.100.3")
    return np.array(parts, dtype=np.float64).reshape(-1, 4)[codes]


@dataclass
class Preprocessor:
    """Fitted on the training split only. Picklable (plain numpy arrays / lists only)."""

    keep_identifiers: bool = False
    l7_top_k: int = 16
    layout_: str | None = None
    input_columns_: list[str] = field(default_factory=list)
    feature_names_: list[str] = field(default_factory=list)
    log_columns_: list[str] = field(default_factory=list)
    flag_columns_: list[str] = field(default_factory=list)
    log_mean_: np.ndarray | None = None
    log_std_: np.ndarray | None = None
    id_mean_: np.ndarray | None = None
    id_std_: np.ndarray | None = None
    protocols_: list[float] = field(default_factory=list)
    l7_values_: list[float] = field(default_factory=list)

    def _ids(self, df: pd.DataFrame) -> np.ndarray:
        return np.hstack([_numeric(df, PORT_COLUMNS)] + [_ip_octets(df[c]) for c in IP_COLUMNS])

    def fit(self, df: pd.DataFrame) -> Preprocessor:
        self.layout_ = _layout(df.columns)
        feats = V2_FEATURES if self.layout_ == "v2" else V1_FEATURES
        self.flag_columns_ = [c for c in feats if c in FLAG_COLUMNS]
        self.log_columns_ = [c for c in feats if c not in FLAG_COLUMNS + ["PROTOCOL", "L7_PROTO"]]
        self.input_columns_ = (ID_COLUMNS if self.keep_identifiers else []) + feats
        if self.keep_identifiers:
            warnings.warn("data.keep_identifiers=true: IPs and ports identify the attacker hosts "
                          "and leak the label; scores are not comparable", UserWarning, stacklevel=2)
        _missing(df, self.input_columns_)
        logv = np.log1p(np.clip(_numeric(df, self.log_columns_), 0, None))
        self.log_mean_, self.log_std_ = logv.mean(axis=0), _std(logv)
        names = list(self.log_columns_)
        if self.keep_identifiers:
            idv = self._ids(df)
            self.id_mean_, self.id_std_ = idv.mean(axis=0), _std(idv)
            names += PORT_COLUMNS + [f"{c}.o{k}" for c in IP_COLUMNS for k in range(1, 5)]
        cat = _numeric(df, ["PROTOCOL", "L7_PROTO"])
        self.protocols_ = np.unique(cat[:, 0]).tolist()
        vals, counts = np.unique(cat[:, 1], return_counts=True)
        self.l7_values_ = vals[np.lexsort((vals, -counts))][: self.l7_top_k].tolist()
        names += [f"PROTOCOL={v:g}" for v in self.protocols_] + ["PROTOCOL=other"]
        names += [f"L7_PROTO={v:g}" for v in self.l7_values_] + ["L7_PROTO=other"]
        names += [f"{c}.{b}" for c in self.flag_columns_ for b in FLAG_BITS]
        self.feature_names_ = names
        return self

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """float32 (n, n_features), C-contiguous; no Label/Attack needed (new flows to score)."""
        if self.layout_ is None:
            raise DataError("the Preprocessor is not fitted: call fit() on the training split")
        _missing(df, self.input_columns_)
        out = np.empty((len(df), len(self.feature_names_)), dtype=np.float32)
        k = len(self.log_columns_)
        out[:, :k] = (np.log1p(np.clip(_numeric(df, self.log_columns_), 0, None))
                      - self.log_mean_) / self.log_std_
        if self.keep_identifiers:
            out[:, k: k + 10] = (self._ids(df) - self.id_mean_) / self.id_std_
            k += 10
        cat = _numeric(df, ["PROTOCOL", "L7_PROTO"])
        for j, known in enumerate((self.protocols_, self.l7_values_)):
            hot = out[:, k: k + len(known) + 1]
            hot[:, :-1] = cat[:, j, None] == np.asarray(known, dtype=np.float64)[None, :]
            hot[:, -1] = hot[:, :-1].sum(axis=1) == 0
            k += len(known) + 1
        if self.flag_columns_:
            flags = _numeric(df, self.flag_columns_).astype(np.int64)
            out[:, k:] = ((flags[:, :, None] >> np.arange(8)) & 1).reshape(len(df), -1)
        return out


def _std(x: np.ndarray) -> np.ndarray:
    s = x.std(axis=0)
    return np.where(s > 0, s, 1.0)


def _missing(df: pd.DataFrame, cols: list[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"missing columns {missing}: the flows must have the columns the "
                        f"preprocessor was fitted on ({cols})")


def windows(X: np.ndarray, T: int) -> np.ndarray:
    """(n, T, F) read-only view: windows(X, T)[i] == X[i-T+1..i], zero rows before index 0."""
    if T < 1:
        raise DataError(f"data.window must be >= 1, got {T}")
    n, f = X.shape
    padded = np.zeros((n + T - 1, f), dtype=X.dtype)
    padded[T - 1:] = X
    if len(padded) < T:  # no flows at all
        return np.zeros((0, T, f), X.dtype)
    return sliding_window_view(padded, T, axis=0).transpose(0, 2, 1)


@dataclass
class Split:
    X: np.ndarray  # (n, F) float32, scaled, in flow order
    y: np.ndarray  # (n,) float32 0/1
    attack: np.ndarray  # (n,) object, category strings
    rows: np.ndarray  # (n,) int64 positions in the loaded frame
    hashes: np.ndarray | None = None  # (n,) uint64 hash of each flow's raw features (ids.overlap)
    _windows: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def windows(self, T: int) -> np.ndarray:
        """(n, T, F) read-only strided view, cached per T (one padded copy per T)."""
        T = int(T)
        if T > len(self.X):
            raise DataError(f"data.window={T} is longer than the split ({len(self.X)} flows)")
        if T not in self._windows:
            self._windows[T] = windows(self.X, T)
        return self._windows[T]


@dataclass
class Prepared:
    train: Split
    val: Split
    test: Split
    preprocessor: Preprocessor
    feature_names: list[str]
    info: dict

    def split(self, name: str) -> Split:
        return {s: getattr(self, s) for s in SPLITS}[name]


def check_window(T: int, prepared: Prepared) -> None:
    """DataError if T < 1 or T is longer than the smallest split."""
    if int(T) < 1:
        raise DataError(f"data.window must be >= 1, got {T}")
    name = min(SPLITS, key=lambda s: len(prepared.split(s).y))
    size = len(prepared.split(name).y)
    if int(T) > size:
        raise DataError(f"data.window={T} is longer than the {name} split ({size} flows): lower "
                        "data.window or use more flows")


def split_indices(n: int, data_cfg) -> dict[str, np.ndarray]:
    """Row positions of train/val/test: contiguous blocks, or random contiguous chunks."""
    fr = np.asarray(list(data_cfg.split_fractions), dtype=np.float64)
    fr = fr / fr.sum()
    if data_cfg.split == "contiguous":
        cut = np.round(np.cumsum(fr)[:2] * n).astype(np.int64)
        return dict(zip(SPLITS, np.split(np.arange(n, dtype=np.int64), cut), strict=True))
    if data_cfg.split != "chunks":
        raise DataError(f"data.split={data_cfg.split!r} is unknown: use contiguous or chunks")
    size = max(1, int(data_cfg.chunk_size))
    n_chunks = -(-n // size)
    if n_chunks < 3:
        raise DataError(f"data.chunk_size={size} gives {n_chunks} chunks of {n} flows; "
                        "three splits need >= 3: lower data.chunk_size")
    k = np.maximum(np.floor(fr * n_chunks).astype(np.int64), 1)
    while k.sum() < n_chunks:  # hand leftover chunks to the splits furthest below their share
        k[np.argmax(fr * n_chunks - k)] += 1
    while k.sum() > n_chunks:
        k[np.argmax(np.where(k > 1, k - fr * n_chunks, -np.inf))] -= 1
    perm = np.random.default_rng(int(data_cfg.seed)).permutation(n_chunks)
    out, start = {}, 0
    for name, kk in zip(SPLITS, k, strict=True):
        chunks = np.sort(perm[start: start + kk])
        start += kk
        out[name] = np.concatenate([np.arange(c * size, min(n, (c + 1) * size)) for c in chunks])
    return out


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


def _cache_key(data_cfg) -> str:
    d = _settings(data_cfg)
    if d.get("source") != "synthetic" and d.get("path") and os.path.exists(d["path"]):
        st = os.stat(d["path"])  # a rewritten file is read again
        d["_file"] = [os.path.abspath(d["path"]), st.st_size, st.st_mtime_ns]
    return json.dumps(d, sort_keys=True, default=str)


def prepare(data_cfg) -> Prepared:
    """Load, split, fit on train, transform all; cached in-process by the config minus window."""
    if int(data_cfg.window) < 1:
        raise DataError(f"data.window must be >= 1, got {data_cfg.window}")
    key = _cache_key(data_cfg)
    if key not in _CACHE:
        _CACHE[key] = _prepare(data_cfg)
    check_window(int(data_cfg.window), _CACHE[key])
    return _CACHE[key]


def _dedup(df: pd.DataFrame, hashes: np.ndarray, data_cfg) -> np.ndarray:
    """Positions of the flows used: all (data.dedup=none), or all but exact duplicates of an
    earlier flow (data.dedup=exact: same features, Label and Attack; the first one is kept)."""
    from ids import overlap

    mode = str(getattr(data_cfg, "dedup", "none"))
    if mode == "none":
        return np.arange(len(df), dtype=np.int64)
    if mode != "exact":
        raise DataError(f"data.dedup={mode!r} is unknown: use none or exact")
    return np.flatnonzero(~overlap.duplicate_mask(hashes, df[LABEL].to_numpy(), df[ATTACK]))


def _prepare(data_cfg) -> Prepared:
    from ids import overlap

    df = load_frame(data_cfg)
    hashes = overlap.row_hashes(df, overlap.feature_columns(df, bool(data_cfg.keep_identifiers)))
    kept = _dedup(df, hashes, data_cfg)
    idx = {name: kept[pos] for name, pos in split_indices(len(kept), data_cfg).items()}
    y_all = df[LABEL].to_numpy(np.float32)
    counts = {}
    for name, rows in idx.items():
        attack = int(y_all[rows].sum())
        counts[name] = {"benign": len(rows) - attack, "attack": attack}
        if attack in (0, len(rows)):
            kind = "attack" if attack == 0 else "benign"
            raise DataError(f"the {name} split ({len(rows)} flows) has no {kind} flows: use "
                            "data.split=chunks, another data.seed or more flows")
    pre = Preprocessor(bool(data_cfg.keep_identifiers), int(data_cfg.l7_top_k))
    pre.fit(df.iloc[idx["train"]])
    X_all, att = pre.transform(df), df[ATTACK].to_numpy(object)
    splits = {name: Split(_take(X_all, rows), y_all[rows], att[rows], rows, hashes[rows])
              for name, rows in idx.items()}
    tr = splits["train"]
    seen = overlap.TrainIndex(tr.hashes, tr.y)
    digest = hashlib.sha1(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    info = {"source": data_cfg.source,
            "path": None if data_cfg.source == "synthetic" else str(data_cfg.path),
            "layout": "synthetic" if data_cfg.source == "synthetic" else pre.layout_,
            "n_flows": len(df), "n_features": len(pre.feature_names_), "counts": counts,
            "attack_counts": {str(k): int(v) for k, v in df[ATTACK].value_counts().items()},
            "hash": digest.hexdigest(), "split": data_cfg.split,
            "keep_identifiers": pre.keep_identifiers,
            "dedup": {"mode": str(getattr(data_cfg, "dedup", "none")),
                      "dropped": len(df) - len(kept), "kept": len(kept)},
            "overlap": {name: seen.stats(splits[name].hashes, splits[name].y)
                        for name in ("val", "test")},
            "settings": _settings(data_cfg)}
    return Prepared(preprocessor=pre, feature_names=list(pre.feature_names_), info=info, **splits)


def _take(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of X: a view when they are one contiguous block (no copy), else a copy."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and (np.diff(rows) == 1).all():
        return X[rows[0]: rows[-1] + 1]
    return X[rows]
