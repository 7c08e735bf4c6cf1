"""Scoring a model whose windows are grouped by host (`data.window_by=host|pair`): each group's
last T-1 flows, kept across the chunks of a file, the lines of a stream and the requests of a
server, so that a flow scores the same however its input was cut.

A flow's window is the flow and the T-1 flows of the same source (`host`; `pair`: the same
source and destination) that came before it in the input; the input is taken in arrival order
(a v3 file in its published order is in time order). The groups of a batch are laid out one
after another, each behind its T-1 carried rows (zero rows for a group never seen: a new host
is padded as a split's first flows are in training), so every window is a plain slice of one
array and the Scorer's distinct windows and score memo apply unchanged.

Bounded: at most `max_hosts` groups are kept (default `MAX_HOSTS`, the setting
`score_max_hosts`); the least recently seen is dropped first, and a dropped host that comes
back starts again from zero padding. Memory: max_hosts x (T-1) x features x 4 bytes (50,000
hosts of a window 10 over 80 features: 144 MB).

A model trained with `data.time_gap=true` (whatever its `window_by`) also needs each source
host's last start time: `HostState.gaps` adds the columns `HOST_GAP_MS` and `HOST_FIRST`
(`ids.data.gaps.host_gaps`, the function training uses) and keeps those times for at most
`max_hosts` source addresses, the least recently seen dropped first (a dropped host's next
flow is its "first" again). The bound applies between batches: within one batch, every host
keeps its flows.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd

from ids.data import gaps as time_gaps
from ids.data.flows import IP_COLUMNS, START, DataError

MAX_HOSTS = 50_000
GROUPS = ("host", "pair")


def group_keys(flows: pd.DataFrame, by: str) -> np.ndarray:
    """The group of each validated flow: its source address (`host`), or source and destination
    (`pair`), as text; DataError in one line when the flows lack those columns."""
    need = IP_COLUMNS[:1] if by == "host" else IP_COLUMNS
    missing = [c for c in need if c not in flows.columns]
    if missing:
        raise DataError(f"this model's windows are the previous flows of each "
                        f"{'source host' if by == 'host' else 'source and destination pair'} "
                        f"(data.window_by={by}), but the flows have no column {missing}: send "
                        "the flows with their addresses (and times), as the NF-v3 files have them")
    src = flows[IP_COLUMNS[0]].astype(str).to_numpy(object)
    if by == "host":
        return src
    return (flows[IP_COLUMNS[0]].astype(str) + ">" + flows[IP_COLUMNS[1]].astype(str)).to_numpy(
        object)


class HostState:
    """The last `rows` (T-1) transformed flows of each group, for at most `max_hosts` groups,
    least recently seen dropped first."""

    def __init__(self, rows: int, max_hosts: int = MAX_HOSTS) -> None:
        if int(max_hosts) < 1:
            raise ValueError(f"score_max_hosts must be >= 1, but got {max_hosts}")
        self.rows, self.max_hosts = int(rows), int(max_hosts)
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self.dropped = 0  # groups forgotten to keep the bound
        self.starts: OrderedDict[str, int] = OrderedDict()  # data.time_gap: source -> last start
        self.starts_dropped = 0  # source hosts whose last start was forgotten to keep the bound

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, key: str) -> bool:
        return key in self._kept

    def layout(self, X: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(full, ends): the batch's groups one after another, each behind its T-1 carried
        rows (zeros where none), and the position of each flow of `X` in `full`; then the state
        holds each group's last T-1 rows. `windows(full, T)[ends]` are the flows' windows."""
        n, f = X.shape
        pad = self.rows
        codes, uniques = pd.factorize(np.asarray(keys, dtype=object))
        order = np.argsort(codes, kind="stable")  # group by group, arrival order within
        counts = np.bincount(codes, minlength=len(uniques))
        first = np.cumsum(counts) - counts  # each group's first place in `order`
        seg = np.arange(len(uniques)) * pad + first  # each group's segment start in `full`
        full = np.zeros((len(uniques) * pad + n, f), np.float32)
        where = np.empty(n, np.int64)
        group = codes[order]
        where[order] = seg[group] + pad + (np.arange(n) - first[group])
        full[where] = X
        if pad:
            for g, key in enumerate(uniques.tolist()):
                kept = self._kept.get(key)
                if kept is not None:
                    full[seg[g]: seg[g] + pad] = kept
            last = np.zeros(len(uniques), np.int64)
            np.maximum.at(last, codes, np.arange(n))
            names = uniques.tolist()
            for g in np.argsort(last, kind="stable").tolist():  # the last seen, last
                key, end = names[g], seg[g] + pad + counts[g]
                self._kept[key] = full[end - pad: end].copy()
                self._kept.move_to_end(key)
            while len(self._kept) > self.max_hosts:
                self._kept.popitem(last=False)
                self.dropped += 1
        return full, where

    def gaps(self, flows: pd.DataFrame) -> pd.DataFrame:
        """Validated `flows` with the time-gap columns of a `data.time_gap` model, measured from
        each source host's last start time (this state's, then the batch's own flows, in
        arrival order); then the state holds the last start of at most `max_hosts` hosts."""
        time_gaps.check_columns(flows, "this model reads the time since each source host's "
                                "previous flow (data.time_gap=true)", "send the flows with "
                                "their addresses and times, as the NF-v3 files have them")
        gap, first = time_gaps.host_gaps(flows[START].to_numpy(), flows[IP_COLUMNS[0]].to_numpy(
            object), self.starts)
        while len(self.starts) > self.max_hosts:
            self.starts.popitem(last=False)
            self.starts_dropped += 1
        return time_gaps.with_gaps(flows, gap, first)
