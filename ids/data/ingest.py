"""Pass one over the flows, batch by batch: validate, hash, number the distinct flows, drop exact
duplicates, and keep each distinct flow once.

NetFlow files are mostly copies (95 % of a real NF-BoT-IoT-v2 training split repeats another
training flow), so what has to be kept grows with the distinct flows, not the file: the model's
input columns of each distinct flow (the `Table`, written to disk column by column), and per
flow only its distinct number, label, category code and file row (written to disk too). The
encoding is fitted and applied on the distinct flows only (`ids.data.prepare`).

Two flows are the same distinct flow when their feature hashes are equal (`copies.row_hashes`:
exactly the columns the model reads), the same rule as the copies accounting.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ids.data import copies
from ids.data.flows import ATTACK, IP_COLUMNS, LABEL, START
from ids.data.gaps import FileGaps


class Spool:
    """Arrays appended batch by batch to raw files in `folder`, read back as memory maps."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtypes: dict[str, np.dtype] = {}

    def append(self, name: str, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        self.dtypes.setdefault(name, a.dtype)
        with open(self.folder / f"{name}.bin", "ab") as fh:
            fh.write(a.astype(self.dtypes[name], copy=False).tobytes())

    def array(self, name: str) -> np.ndarray:
        path = self.folder / f"{name}.bin"
        if not path.exists() or path.stat().st_size == 0:
            return np.empty(0, self.dtypes.get(name, np.int64))
        return np.memmap(path, dtype=self.dtypes[name], mode="r")

    def read(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Elements [lo, hi) as a fresh array: a file read, not a memory map (keeps RSS low)."""
        dtype = self.dtypes[name]
        with open(self.folder / f"{name}.bin", "rb") as fh:
            fh.seek(lo * dtype.itemsize)
            return np.fromfile(fh, dtype=dtype, count=max(0, hi - lo))


@dataclass
class Table:
    """The model-input columns of each distinct flow, in the order they were first seen:
    `table[a:b]` is a frame of rows a..b-1 (numbers as float64, IPs as strings)."""

    spool: Spool
    columns: list[str]
    n: int = 0
    ips: dict[str, list[str]] = field(default_factory=dict)  # IP column -> its distinct values

    def __len__(self) -> int:
        return self.n

    def only(self, columns: list[str]) -> Table:
        """This table reading only `columns` (each is a file of its own)."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise KeyError(f"the table has no columns {missing}")
        return dataclasses.replace(self, columns=list(columns))

    def __getitem__(self, rows: slice) -> pd.DataFrame:
        lo, hi, _ = rows.indices(self.n)
        out = {}
        for c in self.columns:
            a = self.spool.read(f"col.{c}", lo, hi)
            out[c] = np.asarray(self.ips[c], dtype=object)[a] if c in self.ips else a
        return pd.DataFrame(out, index=pd.RangeIndex(hi - lo), copy=False)


@dataclass
class Ingested:
    """What pass one leaves: the distinct flows and, per kept flow, its distinct number."""

    table: Table
    hashes: np.ndarray  # (k,) uint64 feature hash of each distinct flow
    ids: np.ndarray  # (n,) int64 distinct flow of each kept flow, in flow order
    y: np.ndarray  # (n,) int8 label
    codes: np.ndarray  # (n,) int16 category code: categories[codes] is the Attack column
    rows: np.ndarray  # (n,) int64 row in the file (0 = its first flow)
    categories: list[str]
    n_flows: int  # flows read, duplicates included
    attack_counts: dict[str, int]  # category -> flows, duplicates included
    digest: str  # sha1 of every validated flow (`pandas.util.hash_pandas_object`)
    layout_columns: list[str]  # the validated columns
    # NF-v3 context of each kept flow (None when the file lacks the column): its start time
    # (ms) and its source and destination addresses as codes into `addresses`.
    start: np.ndarray | None = None  # (n,) int64
    src: np.ndarray | None = None  # (n,) int32
    dst: np.ndarray | None = None  # (n,) int32
    addresses: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # Attack name in the file -> read
    # data.time_gap: flows that start before the flow above them, and the first one's row
    gaps_out_of_order: dict | None = None


def ingest(frames: Iterable[pd.DataFrame], folder: Path, keep_identifiers: bool,
           dedup: bool, gaps: FileGaps | None = None) -> Ingested:
    """Pass one over validated `frames` (in file order); the spool goes to `folder`. `gaps`
    (`data.time_gap`): each batch gets the gap columns (`ids.data.gaps`) after it is digested
    (the digest is the file's, whatever the settings), before its flows are hashed."""
    spool = Spool(folder)
    flows, kept = copies.KeyIndex(), copies.KeyIndex()
    codes_of: dict[str, int] = {}
    ips: dict[str, dict[str, int]] = {}
    digest, table, columns = hashlib.sha1(), None, []
    n_flows, per_code = 0, np.zeros(0, np.int64)
    addresses: dict[str, int] = {}  # source and destination addresses, one numbering
    renamed: dict[str, str] = {}
    for df in frames:
        digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
        columns = columns or list(df.columns)  # the validated columns, without the gaps
        if gaps is not None:  # a v1/v2 file is refused at its first batch
            df = gaps.add(df)
        if table is None:
            table = Table(spool, copies.feature_columns(df, keep_identifiers))
            ips = {c: {} for c in table.columns if c in IP_COLUMNS}
        h = copies.row_hashes(df, table.columns)
        number, new = flows.add(h)
        spool.append("hashes", h[new])
        for c in table.columns:
            values = df[c].to_numpy()[new]
            spool.append(f"col.{c}", _codes(values, ips[c]) if c in ips
                         else values.astype(np.float64))
        table.n = len(flows)
        codes = _codes(df[ATTACK].to_numpy(object), codes_of).astype(np.int16)
        y = df[LABEL].to_numpy().astype(np.int8)
        per_code = np.bincount(codes, minlength=len(codes_of)) + np.pad(
            per_code, (0, len(codes_of) - len(per_code)))
        keep = np.arange(len(df))
        if dedup:
            keep = kept.add(copies.dedup_keys(number, y, codes))[1]
        for name, a in (("ids", number[keep]), ("y", y[keep]), ("codes", codes[keep]),
                        ("rows", n_flows + keep)):
            spool.append(name, a.astype(np.int64) if name in ("ids", "rows") else a)
        if START in df.columns:
            spool.append("start", df[START].to_numpy().astype(np.int64)[keep])
        for name, c in (("src", IP_COLUMNS[0]), ("dst", IP_COLUMNS[1])):
            if c in df.columns and START in df.columns:
                spool.append(name, _codes(df[c].to_numpy(object), addresses)[keep]
                             .astype(np.int32))
        renamed.update(df.attrs.get("renamed") or {})
        n_flows += len(df)
    if table is None:
        return None
    table.ips = {c: list(v) for c, v in ips.items()}
    categories = list(codes_of)
    return Ingested(table=table, hashes=spool.array("hashes"), ids=spool.array("ids"),
                    y=spool.array("y"), codes=spool.array("codes"), rows=spool.array("rows"),
                    categories=categories, n_flows=n_flows,
                    attack_counts={categories[i]: int(c) for i, c in enumerate(per_code)},
                    digest=digest.hexdigest(), layout_columns=columns,
                    **{k: spool.array(k) if (spool.folder / f"{k}.bin").exists() else None
                       for k in ("start", "src", "dst")},
                    addresses=list(addresses), renamed=renamed,
                    gaps_out_of_order=None if gaps is None else {
                        "flows": gaps.out_of_order, "first_row": gaps.first_row})


def _codes(values: np.ndarray, seen: dict) -> np.ndarray:
    """Codes of `values` in a category list grown in first-seen order (`seen`: value -> code)."""
    local, uniques = pd.factorize(values)
    glob = np.array([seen.setdefault(u, len(seen)) for u in uniques], dtype=np.int64)
    return glob[local] if len(glob) else np.zeros(len(values), np.int64)
