"""The embedded generator's NF-v3 mode: hosts and time, so a window over a host's flows can see
what a single flow cannot (`data=nf_v3`, `data.source=synthetic_v3`).

    df = generate(30_000, seed=0)          # 55 columns, in start-time order
    write_flows("v3.csv.gz", 1_000_000)    # the same, to a file in chunks (benchmarks)

What it holds (the published v3 layout and lower-case attack names, `dos`, `scanning`, ...):

- benign **sessions**: a host (one of `HOSTS` internal addresses) looks a name up (a DNS flow),
  usually logs in to a server (one `auth` flow: a short TLS/SSH exchange) and then works (1-6
  `web` flows); its flows are seconds apart. Sessions of all hosts overlap in time.
- **password** campaigns (brute force): an attacker host sends `auth` flows to one server at
  a steady rhythm (every ~1.5 s), one after another. Each such flow is drawn from exactly the
  distribution of a benign login: no single flow tells them apart. What does is the host's
  sequence: a benign host logs in once and then works (a second login in a row happens in
  `RETRY` of sessions); the attacker logs in again and again. Interleaved with the other
  hosts' flows, the previous *rows* of the file are mostly other hosts': `window_by=host` sees
  the rhythm, `window_by=none` and a per-flow model mostly cannot.
- **dos** (SYN floods) and **scanning** (a port sweep) campaigns from a few attacker hosts:
  flows unlike any benign one (easy, as in the real files).

Campaigns are spread over the whole capture (each kind starts in every part of it), so a split
in time holds all of them. Attacker hosts also run benign sessions: an address alone is not
the label. Deterministic for (n_flows, seed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ids.data import synthetic_v2
from ids.data.flows import (
    ATTACK,
    GENERATORS,
    IAT_COLUMNS,
    ID_COLUMNS,
    LABEL,
    TIME_COLUMNS,
    V2_FEATURES,
)

COLUMNS = TIME_COLUMNS + ID_COLUMNS + V2_FEATURES + IAT_COLUMNS + [LABEL, ATTACK]
HOSTS = [f"10.0.{i // 200}.{i % 200 + 10}" for i in range(60)]  # internal hosts (benign)
ATTACKERS = ["10.0.9.66", "10.0.9.67", "10.0.9.68", "10.0.9.69"]
SERVERS = ["10.0.5.10", "10.0.5.11", "10.0.5.12", "172.16.0.20", "52.28.14.9", "142.250.74.46"]
DNS_SERVER = "10.0.5.53"
SHARE = {"password": 0.10, "dos": 0.05, "scanning": 0.05}  # of all flows; the rest benign
CAMPAIGN = {"password": 40, "dos": 60, "scanning": 60}  # mean flows per campaign
MIN_CAMPAIGNS = 16  # of each kind: starts <= 1/8 of the capture apart, so each split has some
RHYTHM_MS = {"password": 1500, "dos": 15, "scanning": 40}  # gap between a campaign's flows
SESSION_GAP_MS = 2000  # mean gap between a benign session's flows
RETRY = 0.03  # benign sessions that log in twice in a row (a mistyped password)
RATE = 20.0  # flows per second over the whole capture
EPOCH_MS = 1_556_000_000_000  # 2019-04-23, when NF-ToN-IoT-v3's capture starts
KINDS = ["dns", "auth", "web", "dos", "scan"]


def generate(n_flows: int, seed: int, start_ms: int = EPOCH_MS) -> pd.DataFrame:
    """`n_flows` flows in the v3 layout, in start-time order, deterministic for `seed`."""
    n = int(n_flows)
    if n < 1:
        raise ValueError(f"data.n_flows must be >= 1, got {n_flows}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
    span = max(n / RATE, 60.0) * 1000.0  # ms of capture
    parts = [_campaigns(rng, name, round(n * share), span) for name, share in SHARE.items()]
    n_benign = n - sum(len(p["t"]) for p in parts)
    parts.append(_sessions(rng, n_benign, span))
    flows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(flows["t"], kind="stable")
    flows = {k: v[order] for k, v in flows.items()}
    return _frame(rng, flows, int(start_ms))


def _campaigns(rng: np.random.Generator, name: str, total: int, span: float) -> dict:
    """`total` flows of attack `name` in campaigns spread evenly over `span` ms."""
    if total <= 0:
        return _empty()
    k = max(MIN_CAMPAIGNS, round(total / CAMPAIGN[name]))
    cuts = np.sort(rng.choice(np.arange(1, total), min(k, total) - 1, replace=False)) if (
        total > 1 and k > 1) else np.zeros(0, np.int64)
    lens = np.diff(np.concatenate([[0], cuts, [total]]))
    k = len(lens)
    begin = (np.arange(k) + rng.random(k)) / k * span * 0.97  # one per k-th of the capture
    camp = np.repeat(np.arange(k), lens)
    pos = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    gap = RHYTHM_MS[name] * rng.uniform(0.85, 1.15, total)  # a steady rhythm, some jitter
    t = begin[camp] + pos * gap
    kind = {"password": "auth", "dos": "dos", "scanning": "scan"}[name]
    src = rng.integers(0, len(ATTACKERS), k)[camp]
    dst = rng.integers(0, 3, k)[camp]  # the internal servers benign hosts log in to
    return {"t": t, "kind": np.full(total, KINDS.index(kind)),
            "src": np.asarray(ATTACKERS, object)[src], "dst": np.asarray(SERVERS, object)[dst],
            "pos": pos, "attack": np.full(total, name, object)}


def _sessions(rng: np.random.Generator, total: int, span: float) -> dict:
    """`total` benign flows in sessions (dns, auth, web...) of hosts and attacker hosts."""
    if total <= 0:
        return _empty()
    m = total // 4 + 2
    web = rng.integers(1, 7, m)
    auth = (rng.random(m) < 0.7) * (1 + (rng.random(m) < RETRY))
    lens = 1 + auth + web
    m = int(np.searchsorted(np.cumsum(lens), total)) + 1
    lens, auth = lens[:m].copy(), auth[:m]
    lens[-1] -= int(lens.sum()) - total  # the last session is cut at `total` flows
    sess = np.repeat(np.arange(m), lens)
    pos = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    kind = np.where(pos == 0, 0, np.where(pos <= auth[sess], 1, 2))
    gap = rng.exponential(SESSION_GAP_MS, total) * (pos > 0)
    first = np.cumsum(lens) - lens
    t = rng.uniform(0, span * 0.99, m)[sess] + np.cumsum(gap) - np.cumsum(gap)[first][sess]
    everyone = np.asarray(HOSTS + ATTACKERS, object)
    src = everyone[rng.integers(0, len(everyone), m)][sess]
    dst = np.where(kind == 0, DNS_SERVER, np.asarray(SERVERS, object)[
        rng.integers(0, len(SERVERS), m)][sess])
    return {"t": t, "kind": kind, "src": src, "dst": dst.astype(object), "pos": pos,
            "attack": np.full(total, "Benign", object)}


def _empty() -> dict:
    return {"t": np.zeros(0), "kind": np.zeros(0, np.int64), "src": np.zeros(0, object),
            "dst": np.zeros(0, object), "pos": np.zeros(0, np.int64),
            "attack": np.zeros(0, object)}


def _features(rng: np.random.Generator, kind: np.ndarray) -> dict[str, np.ndarray]:
    """v1 features of each flow from its kind only (never from its label)."""
    n = len(kind)
    f = {k: np.zeros(n, np.int64) for k in ("proto", "inp", "outp", "inb", "outb", "flags",
                                              "dur")}
    l7 = np.zeros(n)
    for code, name in enumerate(KINDS):
        m = kind == code
        k = int(m.sum())
        if not k:
            continue
        if name == "dns":
            vals = dict(proto=17, inp=1, outp=1, inb=rng.integers(55, 90, k),
                        outb=rng.integers(90, 260, k), flags=0, dur=rng.integers(0, 6, k))
            l7[m] = 5.0
        elif name == "auth":  # a login: the same for a user and a password guesser
            inp = rng.integers(8, 15, k)
            vals = dict(proto=6, inp=inp, outp=inp - rng.integers(0, 3, k),
                        inb=inp * rng.integers(60, 110, k), outb=inp * rng.integers(150, 330, k),
                        flags=rng.choice([27, 31], k, p=[0.8, 0.2]),
                        dur=rng.integers(150, 900, k))
            l7[m] = rng.choice([91.0, 92.0], k, p=[0.6, 0.4])
        elif name == "web":
            inp = 2 + np.minimum(rng.lognormal(2.0, 1.2, k), 5000).astype(np.int64)
            vals = dict(proto=6, inp=inp, outp=(inp * rng.uniform(1.0, 3.0, k)).astype(np.int64),
                        inb=inp * rng.integers(60, 400, k), outb=inp * rng.integers(300, 1400, k),
                        flags=rng.choice([27, 31, 30], k, p=[0.6, 0.3, 0.1]),
                        dur=np.minimum(rng.lognormal(7.0, 1.5, k), 600_000).astype(np.int64))
            l7[m] = rng.choice([7.0, 91.0, 7.178], k, p=[0.4, 0.5, 0.1])
        elif name == "dos":
            inp = 1 + rng.poisson(0.5, k)
            vals = dict(proto=6, inp=inp, outp=0, inb=inp * rng.choice([40, 60], k), outb=0,
                        flags=2, dur=rng.integers(0, 3, k))
            l7[m] = 7.0
        else:  # scan
            vals = dict(proto=6, inp=1, outp=1, inb=44, outb=40, flags=22, dur=0)
            l7[m] = 0.0
        for key, v in vals.items():
            f[key][m] = v
    return {**f, "l7": l7}


def _iat(rng: np.random.Generator, dur: np.ndarray, pkts: np.ndarray) -> list[np.ndarray]:
    """min, max, avg, stddev of the gaps between `pkts` packets over `dur` ms (0 for <= 1)."""
    many = pkts > 1
    avg = np.where(many, dur // np.maximum(pkts - 1, 1), 0)
    lo = (avg * rng.uniform(0.05, 0.9, len(dur))).astype(np.int64)
    hi = (avg * rng.uniform(1.1, 4.0, len(dur))).astype(np.int64)
    sd = (avg * rng.uniform(0.1, 1.0, len(dur))).astype(np.int64)
    return [np.where(many, a, 0) for a in (lo, hi, avg, sd)]


def _frame(rng: np.random.Generator, flows: dict, start_ms: int) -> pd.DataFrame:
    n = len(flows["t"])
    f = _features(rng, flows["kind"])
    scan = flows["kind"] == KINDS.index("scan")
    dport = np.where(flows["kind"] == KINDS.index("dns"), 53,
                     rng.choice([443, 22, 80, 8443], n, p=[0.5, 0.2, 0.2, 0.1]))
    dport = np.where(scan, flows["pos"] % 65535 + 1, dport)
    tool = np.isin(flows["kind"], (KINDS.index("dos"), KINDS.index("scan")))
    v1 = pd.DataFrame({
        "IPV4_SRC_ADDR": flows["src"], "L4_SRC_PORT": rng.integers(1024, 65536, n),
        "IPV4_DST_ADDR": flows["dst"], "L4_DST_PORT": dport,
        "PROTOCOL": f["proto"], "L7_PROTO": f["l7"], "IN_BYTES": f["inb"],
        "OUT_BYTES": f["outb"], "IN_PKTS": f["inp"], "OUT_PKTS": f["outp"],
        "TCP_FLAGS": f["flags"], "FLOW_DURATION_MILLISECONDS": f["dur"],
        LABEL: tool.astype(np.int64),  # what `to_v2` reads as attack-tool traffic
        ATTACK: flows["attack"]})
    cols = synthetic_v2.to_v2(v1, rng)
    start = start_ms + np.floor(flows["t"]).astype(np.int64)
    cols["FLOW_START_MILLISECONDS"] = start
    cols["FLOW_END_MILLISECONDS"] = start + f["dur"]
    for side, pkts in (("SRC_TO_DST", f["inp"]), ("DST_TO_SRC", f["outp"])):
        for stat, a in zip(("MIN", "MAX", "AVG", "STDDEV"), _iat(rng, f["dur"], pkts),
                           strict=True):
            cols[f"{side}_IAT_{stat}"] = a
    cols[LABEL] = (flows["attack"] != "Benign").astype(np.int64)
    cols[ATTACK] = flows["attack"]
    return pd.DataFrame({c: cols[c] for c in COLUMNS})


def write_flows(path, n_flows: int, seed: int = 0, chunk: int = 1_000_000) -> int:
    """Write `n_flows` v3 flows to `path` (.csv, or .csv.gz) in chunks of `chunk` flows, each a
    later stretch of the capture; returns the bytes written (benchmarks of big v3 files)."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    at = EPOCH_MS
    with pa.output_stream(str(path), compression="detect") as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        for c, lo in enumerate(range(0, int(n_flows), int(chunk))):
            m = min(int(chunk), int(n_flows) - lo)
            df = generate(m, int(np.random.SeedSequence([int(seed), c]).generate_state(1)[0]),
                          at)
            at = int(df["FLOW_START_MILLISECONDS"].iloc[-1]) + 1
            pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), out, options)
        return out.tell()


GENERATORS["synthetic_v3"] = generate  # data.source=synthetic_v3
