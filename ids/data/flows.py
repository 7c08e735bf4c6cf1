"""NetFlow flows as published: the schema, validation with one-line errors that name the
file, the row and the column, and whole files read through the one reader (`ids.data.reader`).

Flows enter the project here: `validated(file)` batch by batch (`ids.data.prepare`),
`read_flows(path)` and `load_frame(data_cfg)` whole (a file, or the embedded synthetic
generator), `load_rows(data_cfg, rows)` some rows of a file (a test split).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ids.data import synthetic
from ids.data.errors import DataError
from ids.data.reader import BATCH_ROWS, FlowFile, not_a_file

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
# NF-v3 (2024-2025): the v2 features, the flow's start and end times and 8 inter-arrival
# statistics. The times are context (order, splits, windows), never model features.
TIME_COLUMNS = ["FLOW_START_MILLISECONDS", "FLOW_END_MILLISECONDS"]
START = TIME_COLUMNS[0]
IAT_COLUMNS = [f"{d}_IAT_{s}" for d in ("SRC_TO_DST", "DST_TO_SRC")
               for s in ("MIN", "MAX", "AVG", "STDDEV")]
V3_FEATURES = V2_FEATURES + IAT_COLUMNS
# With data.time_gap=true (NF-v3): the time since the source host's previous flow and whether
# it is the host's first, computed in input order (`ids.data.gaps`); encoded as counters.
GAP_COLUMNS = ["HOST_GAP_MS", "HOST_FIRST"]
FEATURES = {"v1": V1_FEATURES, "v2": V2_FEATURES, "v3": V3_FEATURES}
# NF-v3 spells most attack names in lower case; they are read as the names of the v1/v2 files
# and of the generator (a name not listed here is kept as it is).
ATTACK_NAMES = {"benign": "Benign", "dos": "DoS", "ddos": "DDoS", "reconnaissance":
                "Reconnaissance", "scanning": "Scanning", "theft": "Theft", "backdoor": "Backdoor",
                "injection": "Injection", "mitm": "MITM", "password": "Password",
                "ransomware": "Ransomware", "xss": "XSS", "infilteration": "Infilteration",
                "infiltration": "Infiltration", "bot": "Bot", "brute force": "Brute Force",
                "bruteforce": "Brute Force", "exploits": "Exploits", "fuzzers": "Fuzzers",
                "generic": "Generic", "analysis": "Analysis", "shellcode": "Shellcode",
                "worms": "Worms"}
FLAG_COLUMNS = ["TCP_FLAGS", "CLIENT_TCP_FLAGS", "SERVER_TCP_FLAGS"]
FLAG_BITS = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"]
SPLITS = ("train", "val", "test")
PUBLISHED = "https://espace.library.uq.edu.au/view/UQ:62e6d80"


def _layout(columns, times: bool = True) -> str:
    """'v3' if any v3-only column is present (times, inter-arrival statistics: then all v3
    columns must be), else 'v2' if any v2-only feature is (then all must be), else 'v1';
    DataError naming the missing columns otherwise. Columns of no layout are ignored. `times`:
    a v3 layout needs its times (a file does; the model's input columns never hold them)."""
    cols = set(columns)
    expected = ("v3" if cols & set(TIME_COLUMNS + IAT_COLUMNS) else
                "v2" if cols & (set(V2_FEATURES) - set(V1_FEATURES)) else "v1")
    feats = FEATURES[expected] + (TIME_COLUMNS if expected == "v3" and times else [])
    missing = [c for c in feats if c not in cols]
    if not missing:
        return expected
    odd = sorted(cols - set(V3_FEATURES + TIME_COLUMNS + ID_COLUMNS + [LABEL, ATTACK]))
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


_NOT_NUMBERS = {"b": "true/false values", "M": "timestamps", "m": "durations"}


def _columns(df: pd.DataFrame, cols: list[str]) -> dict[str, np.ndarray]:
    """Numeric arrays of `cols` (dtype kept when numeric); DataError on text, NaN or infinity,
    and on columns a reader typed as booleans, timestamps or durations (a CSV column of dates
    or of true/false, a parquet column of such types): numbers only, never converted."""
    out = {}
    for c in cols:
        s = df[c]
        if s.dtype.kind in _NOT_NUMBERS:  # pandas would count True as 1, a date in nanoseconds
            raise DataError(f"column {c!r} must be numeric, but it was read as "
                            f"{_NOT_NUMBERS[s.dtype.kind]} ({_row(df, 0)} holds "
                            f"{str(s.iloc[0])!r}); fix the column or drop it")
        if not pd.api.types.is_numeric_dtype(s):
            try:
                text = s.astype(str)
            except UnicodeDecodeError:  # bytes that are not UTF-8 (a binary column): not numbers
                text = s.map(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes)
                             else str(v))
            num = pd.to_numeric(text, errors="coerce")  # text, never True or a date
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
    try:
        return s.to_numpy(object) if pd.api.types.infer_dtype(s, skipna=False) == "string" else (
            s.astype(str).to_numpy(object))
    except UnicodeDecodeError as exc:  # bytes a reader kept undecoded
        raise DataError(f"column {s.name!r} holds text that is not UTF-8 ({exc.reason} at byte "
                        f"{exc.start} of {exc.object[:20]!r}); save the file as UTF-8") from exc


# Counts that cannot be negative, and TCP flag fields (whole numbers, bit sets).
NON_NEGATIVE = ["IN_BYTES", "OUT_BYTES", "IN_PKTS", "OUT_PKTS", "FLOW_DURATION_MILLISECONDS",
                *TIME_COLUMNS]


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
        if c in FLAG_COLUMNS and len(big := np.flatnonzero(a > 255)):
            raise DataError(f"column {c!r} holds the 8 TCP flag bits (0-255), but "
                            f"{_row(df, big[0])} holds {a[big[0]]!r} ({len(big)} such rows); "
                            "fix or drop those rows")


def _check_names(columns) -> None:
    """DataError for a column given twice: exactly, after trimming spaces, or as the copy
    pandas renames to NAME.1 when a CSV header repeats NAME. Which one holds the flows would
    be a guess (pandas would silently take the first)."""
    names = Counter(str(c).strip() for c in columns)
    known = set(V3_FEATURES + TIME_COLUMNS + ID_COLUMNS + [LABEL, ATTACK])
    for name in list(names):
        base, _, n = name.rpartition(".")
        if n.isdigit() and base in known and base in names:
            names[base] += names.pop(name)
    dups = {name: k for name, k in names.items() if k > 1}
    if dups:
        name, k = next(iter(dups.items()))
        raise DataError(f"column {name[:60]!r} appears {k} times in the header"
                        f"{f' ({len(dups)} such names)' if len(dups) > 1 else ''}; keep one "
                        "(ids cannot tell which one holds the flows)")


def check_header(columns) -> str:
    """The layout ('v1', 'v2' or 'v3') of a header; DataError for missing, renamed or repeated
    columns (a stream checks its header before any flow arrives)."""
    _check_names(columns)
    return _layout([str(c).strip() for c in columns])


def validate_frame(df: pd.DataFrame, require_label: bool = True) -> pd.DataFrame:
    """The flows in canonical column order (ids present + features + Label + Attack), a new
    frame (its columns may share memory with `df`'s: no copy of a batch of millions of rows).
    Error messages name the row by `df.index` (the row number in the file)."""
    if len(df) == 0:
        raise DataError("the data has no flows (empty file or only a header)")
    _check_names(df.columns)
    if any(str(c) != str(c).strip() or not isinstance(c, str) for c in df.columns):
        df = df.rename(columns=lambda c: str(c).strip(), copy=False)
    if not require_label and LABEL in df.columns and df[LABEL].isna().all():
        df = df.drop(columns=[c for c in (LABEL, ATTACK) if c in df.columns])  # labels optional
    layout = _layout(df.columns)
    feats = FEATURES[layout]
    ids = [c for c in ID_COLUMNS if c in df.columns] + (TIME_COLUMNS if layout == "v3" else [])
    cols = {c: _strings(df[c]) for c in ids if c in IP_COLUMNS}
    cols.update(_columns(df, [c for c in ids if c not in IP_COLUMNS] + feats))
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
        att = df[ATTACK] if ATTACK in df.columns else None
        if att is None or att.hasnans:  # no or missing attack names: the label's
            fill = pd.Series(np.where(lab == 1, "Attack", "Benign"), dtype=object, index=df.index)
            att = fill if att is None else att.where(att.notna(), fill)
        cols[ATTACK] = _strings(att)
    elif require_label:
        raise DataError("column 'Label' (0 benign, 1 attack) is missing; it is the target")
    renamed = {}
    if layout == "v3" and ATTACK in cols:
        cols[ATTACK], renamed = attack_names(cols[ATTACK])
    order = ids + feats + [c for c in (LABEL, ATTACK) if c in cols]
    out = pd.DataFrame({c: cols[c] for c in order}, index=pd.RangeIndex(len(df)), copy=False)
    out.attrs["renamed"] = renamed  # {name in the file: name read} of this batch (v3 only)
    return out


def attack_names(names: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """(the Attack names of an NF-v3 file as the v1/v2 files and the generator spell them,
    {name in the file: name read} for the names that changed). Only the case changes (and
    `ATTACK_NAMES`' spellings): `dos` -> `DoS`, `scanning` -> `Scanning`; unknown names stay."""
    codes, uniques = pd.factorize(np.asarray(names, dtype=object))  # hashing: a batch in ms
    uniques = [str(u) for u in uniques]
    read = np.array([ATTACK_NAMES.get(u.strip().lower(), u) for u in uniques], dtype=object)
    renamed = {u: str(r) for u, r in zip(uniques, read, strict=True) if u != r}
    return (read[codes] if len(read) else np.asarray(names, dtype=object)), renamed


def flow_file(path, key: str = "data.path") -> FlowFile:
    """The flow file at `path` for the one reader (`ids.data.reader`); DataError naming where
    to get the data when it is not there."""
    p = Path(str(path)).expanduser()
    if not p.is_file() and p.exists():
        raise DataError(f"{key}={p} {not_a_file(p)}")
    if not p.is_file():
        raise DataError(f"data file not found: {p}. NF-BoT-IoT (and its NetFlow siblings) are "
                        f"published at {PUBLISHED}; download it and set data.path=... (or "
                        "IDS_DATA_PATH), or run with data=synthetic, which needs no download")
    return FlowFile(p, key)


def validated(file: FlowFile, require_label: bool = True, max_rows: int | None = None,
              batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The file's flows batch by batch, each validated (`validate_frame`; errors name the file
    and the row counted from its first flow, whatever the batch size)."""
    for raw in file.batches(batch_rows, max_rows):
        try:
            yield validate_frame(raw, require_label)
        except DataError as e:
            raise DataError(f"{file.path}: {e}") from e


def read_flows(path, max_rows: int | None = None, require_label: bool = True,
               batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """Read a published NetFlow file (csv/csv.gz/zip/parquet) whole and validate it (columns,
    numeric, finite, Label 0/1, non-empty). Label/Attack optional only when require_label=False."""
    file = flow_file(path)
    parts = list(validated(file, require_label, max_rows, batch_rows))
    if not parts:
        raise DataError(f"{file.path}: the data has no flows (empty file or only a header)")
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


# Generators of the other layouts, by data.source: registered by their own modules (which read
# this one's column names; `ids.data.prepare` imports them).
GENERATORS: dict[str, Callable[[int, int], pd.DataFrame]] = {}


def load_frame(data_cfg) -> pd.DataFrame:
    """The validated flows of `data_cfg`: generated (data.source=synthetic) or read from a file."""
    if data_cfg.source == "synthetic":
        try:
            df = synthetic.generate(int(data_cfg.n_flows), int(data_cfg.seed),
                                    dict(data_cfg.class_mix))
        except ValueError as e:
            raise DataError(str(e)) from e
        return validate_frame(df)
    if data_cfg.source in GENERATORS:  # synthetic_v3: NF-v3 layout, hosts and time
        try:
            df = GENERATORS[data_cfg.source](int(data_cfg.n_flows), int(data_cfg.seed))
        except ValueError as e:
            raise DataError(str(e)) from e
        return validate_frame(df)
    if data_cfg.source == "nf_bot_iot":
        if not data_cfg.path:
            raise DataError(f"data.path is not set: download NF-BoT-IoT from {PUBLISHED} and set "
                            "data.path=..., or run with data=synthetic")
        return read_flows(data_cfg.path, data_cfg.max_rows)
    raise DataError(f"data.source={data_cfg.source!r} is unknown: use synthetic, synthetic_v3 or "
                    "nf_bot_iot")


def load_rows(data_cfg, rows: np.ndarray, batch_rows: int = BATCH_ROWS,
              each: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> pd.DataFrame:
    """The validated flows of `data_cfg` at file `rows` (ascending), indexed by those rows; a
    file is read batch by batch, so memory holds those rows only (a test split). `each`: every
    flow of the file passes through it, validated and in order, before the rows are taken
    (what is measured over the flows before a row: `ids.data.gaps`)."""
    rows = np.asarray(rows, np.int64)
    if data_cfg.source != "nf_bot_iot" or not data_cfg.path:
        flows = load_frame(data_cfg)
        return (flows if each is None else each(flows)).iloc[rows]
    parts = []
    for raw in flow_file(data_cfg.path).batches(batch_rows, data_cfg.max_rows):
        lo, hi = np.searchsorted(rows, [raw.index[0], raw.index[-1] + 1])
        if each is not None:
            try:
                whole = each(validate_frame(raw))
            except DataError as e:
                raise DataError(f"{data_cfg.path}: {e}") from e
            part = whole.iloc[rows[lo:hi] - raw.index[0]]
        else:  # only the rows asked for are validated
            part = validate_frame(raw.loc[rows[lo:hi]]) if hi > lo else None
        if hi > lo:
            parts.append(part.set_axis(pd.Index(rows[lo:hi]), axis=0))
    if not parts:
        raise DataError(f"{data_cfg.path} holds none of the rows asked for: it changed since it "
                        "was prepared; prepare it again")
    return pd.concat(parts)
