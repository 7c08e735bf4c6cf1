"""The time since a host's previous flow (`data.time_gap=true`, NF-v3): two feature columns of
each flow, computed in the order the flows are read.

- `HOST_GAP_MS`: milliseconds since the previous flow of the same source address
  (`IPV4_SRC_ADDR`) earlier in the input; 0 for a host's first flow.
- `HOST_FIRST`: 1 for a host's first flow in the input, else 0.

`host_gaps(start, src, last)` computes both for one batch, vectorised; `last` (source address
-> start time of its latest flow) is the state carried from batch to batch, so batches of one
flow and one batch of the whole input give the same columns. Training (`ids.data.ingest`,
through `FileGaps`, which also counts the flows that start before the flow above them),
`ids.evaluate` (`load_rows`, `read_flows` here: the flows of `ids.data.flows` with the
columns) and scoring (`ids.artifact.hosts.HostState`, bounded by `score_max_hosts`) all call
it, in the order the flows come: a flow that starts before its host's previous one gets 0.

The gap reaches back across a split boundary (a validation flow's gap may be measured from its
host's last training flow): that is the past, known when the flow arrives, with no label; it
is what the scorer knows too. Windows still never reach across splits, and the encoding is
fitted on training flows only, as for every column.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

import numpy as np
import pandas as pd

from ids.data import flows as published
from ids.data.flows import GAP_COLUMNS, IP_COLUMNS, START, DataError
from ids.data.reader import BATCH_ROWS

GAP, FIRST = GAP_COLUMNS
SRC = IP_COLUMNS[0]
NEEDS = f"data.time_gap needs {START} and {SRC} (NF-v3 files or data=nf_v3)"
FIX = "use an NF-v3 file or data=nf_v3, or set data.time_gap=false"


def host_gaps(start, src, last: MutableMapping) -> tuple[np.ndarray, np.ndarray]:
    """(gap in ms, first: 1 for a host's first flow else 0), both int64, of flows with start
    times `start` from source addresses `src`, in input order. `last` maps an address to the
    start of its latest flow before this batch; it is updated (each host of the batch moved to
    its end, the least recently seen first: an OrderedDict is then in recency order). A flow
    that starts before its host's previous one (input out of time order) gets gap 0."""
    start = np.asarray(start, np.int64)
    n = len(start)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes, uniques = pd.factorize(np.asarray(src, dtype=object))
    names = uniques.tolist()
    order = np.argsort(codes, kind="stable")  # host by host, input order within each
    grouped = codes[order]
    head = np.r_[True, grouped[1:] != grouped[:-1]]  # each host's first flow of the batch
    tail = np.r_[grouped[1:] != grouped[:-1], True]  # ... and its last
    prev = np.empty(n, np.int64)
    inner = np.flatnonzero(~head)
    prev[order[inner]] = start[order[inner - 1]]
    heads = order[head]  # host g's first flow is heads[g] (codes are 0, 1, ... in sort order)
    seen = np.array([h in last for h in names], bool)
    prev[heads] = [int(last.get(h, 0)) for h in names]
    first = np.zeros(n, bool)
    first[heads[~seen]] = True
    gap = np.where(first, 0, np.maximum(start - prev, 0))
    ends = order[tail]
    for g in np.argsort(ends, kind="stable").tolist():  # the host seen last, last
        last.pop(names[g], None)
        last[names[g]] = int(start[ends[g]])
    return gap.astype(np.int64), first.astype(np.int64)


def check_columns(flows: pd.DataFrame, need: str = NEEDS, fix: str = FIX) -> None:
    """DataError in one line when the flows lack the start time or the source address."""
    missing = [c for c in (START, SRC) if c not in flows.columns]
    if missing:
        raise DataError(f"{need}, but the flows have no column {missing}: {fix}")


def with_gaps(flows: pd.DataFrame, gap: np.ndarray, first: np.ndarray) -> pd.DataFrame:
    """`flows` (not copied: a shallow frame) with the two columns added at the end."""
    out = flows.copy(deep=False)
    out[GAP], out[FIRST] = gap, first
    return out


class FileGaps:
    """The gap columns of one input read in order, batch by batch (training, ids.evaluate):
    DataError in one line when the flows lack the columns. Gaps are measured in input order,
    as a scorer measures them: a flow that starts before its host's previous one gets gap 0.
    `out_of_order` counts the flows that start before the flow above them (`first_row`: the
    first of them, 0-based): a published v3 file has none."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.previous: int | None = None  # the start time of the input's latest flow
        self.rows = 0  # flows seen so far: the row number of the next batch's first flow
        self.out_of_order, self.first_row = 0, None

    def add(self, flows: pd.DataFrame) -> pd.DataFrame:
        check_columns(flows)
        start = flows[START].to_numpy().astype(np.int64)
        before = np.r_[start[:1] if self.previous is None else [self.previous], start[:-1]]
        back = np.flatnonzero(start < before)
        if len(back):
            self.out_of_order += len(back)
            if self.first_row is None:
                self.first_row = self.rows + int(back[0])
        gap, first = host_gaps(start, flows[SRC].to_numpy(object), self.last)
        if len(start):
            self.previous = int(start[-1])
        self.rows += len(flows)
        return with_gaps(flows, gap, first)


def read_flows(path, require_label: bool = True, time_gap: bool = False) -> pd.DataFrame:
    """`ids.data.flows.read_flows(path)`, with the gap columns over the whole file when
    `time_gap` (an input file of ids.evaluate, read like a training file)."""
    flows = published.read_flows(path, require_label=require_label)
    if not time_gap:
        return flows
    try:
        return FileGaps().add(flows)
    except DataError as e:
        raise DataError(f"{Path(str(path)).expanduser()}: {e}") from e


def load_rows(data_cfg, rows: np.ndarray, batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """`ids.data.flows.load_rows`: the validated flows of `data_cfg` at file `rows`
    (ascending); with `data.time_gap`, with the gap columns training computed, measured over
    every flow before them in the file (across the split boundary, as in training)."""
    each = FileGaps().add if getattr(data_cfg, "time_gap", False) else None
    return published.load_rows(data_cfg, rows, batch_rows, each)
