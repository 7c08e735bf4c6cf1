"""The embedded generator's flows in the NF-v2 layout, written to a file of any size in chunks.

    write_flows("big.csv", 76_000_000)    # NF-UQ-NIDS-v2's size: ~12.6 GB of CSV, minutes

For the benchmarks of full-size files (`ids.tools.bench_big`): a file that looks like
NF-BoT-IoT-v2 (45 columns, the published column names, the categories of `ids.data.synthetic`)
without holding it in memory. Each chunk is `synthetic.generate` (campaigns, benign periods,
stealth stretches), extended by the other v2 columns, which follow from the v1 ones as they do
in the real files (durations of the wrapped counter, packet-size buckets, throughput, TCP
windows, ICMP and DNS fields). Copies: real NF-v2 files are mostly repeats of the same flows
(87-95 % of a training split repeats another training flow), so a share `replay` of the flows
of each chunk repeat the features of an earlier flow of the same category (a random pool of
the fresh ones seen so far): about 95 % of a 76M-flow file are copies of another flow.
Identifiers, Label and Attack stay the flow's own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ids.data import synthetic
from ids.data.flows import ATTACK, ID_COLUMNS, LABEL, V2_FEATURES

COLUMNS = ID_COLUMNS + V2_FEATURES + [LABEL, ATTACK]
REPLAY = 0.8  # share of flows that repeat an earlier flow's features: ~5 % distinct at 76M
POOL = 20_000  # earlier flows kept per category (a random sample) to repeat
WIN = np.array([8192, 14600, 29200, 64240, 65535])


def to_v2(df: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A v1-layout frame of `synthetic.generate` in the v2 layout: the same flows, the 45
    columns as arrays."""
    inp, outp = df["IN_PKTS"].to_numpy(), df["OUT_PKTS"].to_numpy()
    inb, outb = df["IN_BYTES"].to_numpy(), df["OUT_BYTES"].to_numpy()
    flags, proto = df["TCP_FLAGS"].to_numpy(), df["PROTOCOL"].to_numpy()
    dur, l7 = df["FLOW_DURATION_MILLISECONDS"].to_numpy(), df["L7_PROTO"].to_numpy()
    benign, tcp, back = df[LABEL].to_numpy() == 0, proto == 6, outp > 0
    wrapped = dur > 4_000_000  # a wrapped 32-bit counter: the real duration is what is left
    d_in = np.where(wrapped, synthetic.WRAP - dur, dur)
    d_out = np.where(back, d_in // 2, 0)
    size_in = -(-inb // np.maximum(inp, 1))
    size_out = np.where(back, -(-outb // np.maximum(outp, 1)), 0)
    longest = np.maximum(size_in, size_out)
    shortest = np.where(back, np.minimum(size_in, size_out), size_in)
    buckets = np.array([128, 256, 512, 1024])
    n_pkts = {b: np.zeros(len(df), np.int64) for b in range(5)}
    for size, count in ((size_in, inp), (size_out, outp)):
        which = np.searchsorted(buckets, size, side="right")
        for b in range(5):
            n_pkts[b] += np.where(which == b, count, 0)
    retrans = benign & tcp & (rng.random(len(df)) < 0.02)
    dns = benign & np.isin(l7, (5.0, 5.126))
    icmp = proto == 1
    v2 = {
        "CLIENT_TCP_FLAGS": np.where(inp > 1, flags & 0x1B, flags & 0x03),
        "SERVER_TCP_FLAGS": np.where(back, flags & 0x16, flags & 0x14),
        "DURATION_IN": d_in, "DURATION_OUT": d_out,
        "MIN_TTL": np.where(benign & (rng.random(len(df)) < 0.2), 128, 64),
        "LONGEST_FLOW_PKT": longest, "SHORTEST_FLOW_PKT": shortest,
        "MIN_IP_PKT_LEN": shortest, "MAX_IP_PKT_LEN": longest,
        "SRC_TO_DST_SECOND_BYTES": np.round(inb * 1000.0 / np.maximum(d_in, 1), 1),
        "DST_TO_SRC_SECOND_BYTES": np.round(outb * 1000.0 / np.maximum(d_out, 1), 1),
        "RETRANSMITTED_IN_BYTES": retrans * size_in, "RETRANSMITTED_IN_PKTS": retrans * 1,
        "RETRANSMITTED_OUT_BYTES": 0 * inp, "RETRANSMITTED_OUT_PKTS": 0 * inp,
        "SRC_TO_DST_AVG_THROUGHPUT": inb * 8000 // np.maximum(d_in, 1),
        "DST_TO_SRC_AVG_THROUGHPUT": outb * 8000 // np.maximum(d_out, 1),
        "NUM_PKTS_UP_TO_128_BYTES": n_pkts[0], "NUM_PKTS_128_TO_256_BYTES": n_pkts[1],
        "NUM_PKTS_256_TO_512_BYTES": n_pkts[2], "NUM_PKTS_512_TO_1024_BYTES": n_pkts[3],
        "NUM_PKTS_1024_TO_1514_BYTES": n_pkts[4],
        "TCP_WIN_MAX_IN": np.where(tcp, np.where(benign, WIN[rng.integers(0, 5, len(df))], 512), 0),
        "TCP_WIN_MAX_OUT": np.where(tcp & back, np.where(benign, 65535, 512), 0),
        "ICMP_TYPE": np.where(icmp, np.where(benign, 0, 2048), 0),
        "DNS_QUERY_ID": np.where(dns, rng.integers(1, 65536, len(df)), 0),
        "DNS_QUERY_TYPE": np.where(dns, np.where(rng.random(len(df)) < 0.7, 1, 28), 0),
        "DNS_TTL_ANSWER": np.where(dns, rng.choice([60, 300, 3600], len(df)), 0),
        "FTP_COMMAND_RET_CODE": np.zeros(len(df)),
    }
    v2["MAX_TTL"], v2["ICMP_IPV4_TYPE"] = v2["MIN_TTL"], v2["ICMP_TYPE"]
    return {c: v2[c] if c in v2 else df[c].to_numpy() for c in COLUMNS}


class _Replay:
    """The features of earlier flows, a random pool per category, for flows that repeat one."""

    def __init__(self, rng: np.random.Generator, share: float) -> None:
        self.rng, self.share, self.pool = rng, float(share), {}

    def __call__(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        attack = cols[ATTACK]
        for cat in pd.unique(attack):
            rows = np.flatnonzero(attack == cat)
            repeat = self.rng.random(len(rows)) < self.share
            fresh = np.column_stack([cols[c][rows[~repeat]] for c in V2_FEATURES])
            pool = self.pool.get(cat)
            if pool is not None and repeat.any():
                picked = pool[self.rng.integers(0, len(pool), int(repeat.sum()))]
                for j, c in enumerate(V2_FEATURES):
                    cols[c][rows[repeat]] = picked[:, j]
            pool = fresh if pool is None else np.concatenate([pool, fresh])
            self.pool[cat] = pool[self.rng.permutation(len(pool))[:POOL]]
        return cols


def write_flows(path, n_flows: int, seed: int = 0, class_mix: dict | None = None,
                replay: float = REPLAY, chunk: int = 1_000_000, on_chunk=None) -> int:
    """Write `n_flows` v2-layout flows to `path` (.csv, or .csv.gz); returns the bytes written.
    Deterministic for (n_flows, seed, class_mix, replay, chunk). `on_chunk(rows)` follows it."""
    from ids.config import SYNTHETIC_MIX

    mix = dict(class_mix or SYNTHETIC_MIX)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 22]))
    again = _Replay(rng, replay)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with pa.output_stream(str(path), compression="detect") as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        for c, lo in enumerate(range(0, int(n_flows), int(chunk))):
            m = min(int(chunk), int(n_flows) - lo)
            state = np.random.SeedSequence([int(seed), c]).generate_state(1)[0]
            cols = again(to_v2(synthetic.generate(m, int(state), mix), rng))
            pacsv.write_csv(pa.table(cols), out, options)
            if on_chunk is not None:
                on_chunk(m)
        return out.tell()
