"""Synthetic NetFlow flows in the NF-BoT-IoT v1 layout, so every command runs without a download.

Why it looks the way it does:
- Time structure. Attacks come as campaigns: runs of consecutive flows of one attack type from
  one attacker host against one victim (DDoS: all attacker hosts), with a few benign background
  flows interleaved (`BACKGROUND_SHARE`) and benign periods between campaigns. Their number grows
  with the flows (mean length `BENIGN_PERIOD`, at least `BENIGN_MIN`), so the validation and test
  blocks of 100,000 flows each hold dozens of benign periods, not one or two.
- Context decides, and more context decides better. `STEALTH_SHARE` of the attack flows lie in
  stealth stretches (mean `STEALTH_RUN` flows) where half of the flows (`STEALTH_MIMIC`) are
  drawn from the benign distributions, plus a small scattered share per type (`MIMIC`). Flow by
  flow those look benign; the flows before them give them away, the more of them the surer.
  With the default mix (8 % benign, `ids.config.SYNTHETIC_MIX`) and 100,000 flows, seed 0, an
  Extra-Trees on each flow alone scores val MCC 0.66, with the 2 or 4 previous flows beside it
  0.87 (tests/test_synthetic.py::test_context_beats_per_flow).
- Heavy tails: packets and bytes are lognormal; durations mix zeros, lognormal milliseconds and
  the ~4.29e6 values of a wrapped 32-bit millisecond counter seen in the real files.

Everything is vectorised over flows; a seed gives the same frame on every machine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT", "PROTOCOL", "L7_PROTO",
           "IN_BYTES", "OUT_BYTES", "IN_PKTS", "OUT_PKTS", "TCP_FLAGS",
           "FLOW_DURATION_MILLISECONDS", "Label", "Attack"]
CATEGORIES = ["Benign", "DDoS", "DoS", "Reconnaissance", "Theft"]
ATTACKS = CATEGORIES[1:]
MEAN_CAMPAIGN = {"DDoS": 200, "DoS": 200, "Reconnaissance": 400, "Theft": 30}  # attack flows
MIMIC = {"DDoS": 0.005, "DoS": 0.03, "Reconnaissance": 0.01, "Theft": 0.2}  # look benign
STEALTH_SHARE = 0.10  # attack flows inside stealth stretches (any category)
STEALTH_RUN = 25  # mean stealth-stretch length, in attack flows
STEALTH_MIMIC = 0.5  # share of benign-looking flows inside a stealth stretch
BACKGROUND_SHARE = 0.03  # benign flows scattered inside campaigns; the rest form benign periods
BENIGN_PERIOD = 40  # mean benign-period length (at least 20 periods when there are flows)
BENIGN_MIN = 15  # shortest benign period (when there are enough benign flows)
WRAP = 4_294_967  # 2**32 microseconds in milliseconds: the wrapped-counter durations

HOSTS = [f"192.168.100.{i}" for i in (1, 3, 5, 6, 7, 147, 148, 149, 150)]
EXTERNAL = ["8.8.8.8", "52.28.14.9", "34.117.59.81", "142.250.74.46", "3.120.1.12"]
ATTACKERS = [4, 5, 6, 7]  # indices into HOSTS: .147-.150
VICTIMS = [1, 2, 3, 4]  # .3 .5 .6 .7
IP_POOL = np.array(HOSTS + EXTERNAL, dtype=object)


def _counts(n: int, class_mix: dict[str, float]) -> np.ndarray:
    """Flows per category (CATEGORIES order), largest-remainder rounding of the normalised mix."""
    unknown = sorted(set(class_mix) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"data.class_mix has unknown categories {unknown}; the generator "
                         f"knows {CATEGORIES}")
    w = np.array([float(class_mix.get(c, 0.0)) for c in CATEGORIES])
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"data.class_mix weights must be finite, >= 0 and not all 0: {class_mix}")
    raw = n * w / w.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: n - out.sum()]] += 1
    return out


def _partition(rng: np.random.Generator, total: int, parts: int) -> np.ndarray:
    """`parts` random positive sizes summing to `total` (uniform random cut points)."""
    cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [total]]))


def _pick(rng, m, values, p) -> np.ndarray:
    return np.asarray(values)[rng.choice(len(values), m, p=np.asarray(p) / np.sum(p))]


def _wrapped(rng, m) -> np.ndarray:
    return WRAP - np.minimum(rng.lognormal(6.5, 1.2, m), 90_000).astype(np.int64)


def _benign(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
    """Ordinary IoT/LAN traffic: mixed protocols and applications, heavy-tailed sizes."""
    proto = _pick(rng, m, [6, 17, 1], [0.75, 0.2, 0.05])
    tcp, udp = proto == 6, proto == 17
    l7 = np.full(m, 81.0)  # ICMP
    l7[tcp] = _pick(rng, tcp.sum(), [7.0, 91.0, 0.0, 92.0, 222.178, 91.178, 7.178, 238.0],
                    [30, 22, 20, 6, 8, 6, 4, 4])
    l7[udp] = _pick(rng, udp.sum(), [5.0, 5.126, 0.0, 9.0, 188.0], [45, 15, 25, 10, 5])
    inp = 1 + np.minimum(rng.lognormal(0.7, 1.3, m), 50_000).astype(np.int64)
    outp = np.where(tcp, inp * rng.uniform(0.4, 1.1, m), (rng.random(m) < 0.6) * inp)
    outp = np.round(outp).astype(np.int64)
    inb = inp * np.clip(rng.lognormal(4.6, 0.9, m), 28, 1500).astype(np.int64)
    outb = outp * np.clip(rng.lognormal(5.5, 1.1, m), 40, 1500).astype(np.int64)
    flags = np.where(tcp, _pick(rng, m, [27, 31, 22, 24, 18, 26, 30, 19, 2, 20],
                                [22, 12, 25, 10, 6, 6, 6, 5, 5, 3]), 0)
    u = rng.random(m)
    dur = np.where(u < 0.25, 0, np.minimum(rng.lognormal(6.0, 2.5, m), 4e6).astype(np.int64))
    dur = np.where(u > 0.5, _wrapped(rng, m), dur)
    return dict(proto=proto, l7=l7, inp=inp, outp=outp, inb=inb, outb=outb, flags=flags, dur=dur)


def _attack(rng: np.random.Generator, cls: np.ndarray, udp: np.ndarray) -> dict[str, np.ndarray]:
    """Attack-tool traffic per category (codes into ATTACKS); `udp` = a UDP flood campaign."""
    m = len(cls)
    ddos, dos, rec, theft = (cls == k for k in range(4))
    flood_udp = (ddos | dos) & udp
    probe_icmp = rec & (rng.random(m) < 0.03)
    proto = np.where(flood_udp, 17, np.where(probe_icmp, 1, 6))
    l7 = np.where(flood_udp, _pick(rng, m, [188.0, 0.0], [0.9, 0.1]), 7.0)
    l7 = np.where(rec, _pick(rng, m, [0.0, 7.0], [0.6, 0.4]), l7)
    l7 = np.where(probe_icmp, 81.0, np.where(theft, _pick(rng, m, [0.0, 92.0, 7.0], [5, 3, 2]), l7))
    inp = np.where(ddos, 1 + rng.poisson(1.2, m), 2 + rng.poisson(0.15, m))
    inp = np.where(rec, 1 + (rng.random(m) < 0.1) * rng.integers(1, 3, m), inp)
    inp = np.where(theft, 2 + rng.lognormal(1.5, 1.0, m).astype(np.int64), inp)
    per_in = np.where(flood_udp, 28, np.where(ddos, 40 + 20 * rng.integers(0, 2, m), 140))
    per_in = np.where(rec, np.where(probe_icmp, 28, 44), per_in)
    inb = inp * np.where(theft, rng.integers(60, 141, m), per_in)
    outp = np.where(dos & ~flood_udp, rng.random(m) < 0.15, 0).astype(np.int64)
    outp = np.where(rec, 1, np.where(theft, (inp * rng.uniform(1, 3, m)).astype(np.int64), outp))
    outb = outp * np.where(theft, np.clip(rng.lognormal(6.5, 0.7, m), 200, 1500),
                           np.where(probe_icmp, 28, 40))
    flags = np.where(ddos | dos, _pick(rng, m, [2, 22], [0.87, 0.13]), 0)
    flags = np.where(rec, _pick(rng, m, [22, 2, 31, 27], [0.88, 0.05, 0.04, 0.03]), flags)
    flags = np.where(theft, _pick(rng, m, [27, 31, 30, 24], [4, 3, 2, 1]), flags)
    flags = np.where(proto == 6, flags, 0)
    quick = np.where(rec, rng.random(m) < 0.57, rng.random(m) < 0.05)
    dur = np.where(theft, np.minimum(rng.lognormal(7.0, 1.5, m), 4e6).astype(np.int64), 0)
    dur = np.where(quick | theft, dur, _wrapped(rng, m))
    return dict(proto=proto, l7=l7, inp=inp, outp=outp, inb=inb.astype(np.int64),
                outb=outb.astype(np.int64), flags=flags, dur=dur)


def _stealth(rng: np.random.Generator, n_att: int) -> np.ndarray:
    """Per attack flow (in time order): inside a stealth stretch? Stretches of mean length
    `STEALTH_RUN` alternate with ordinary ones so that `STEALTH_SHARE` of attack flows are in one."""
    normal = STEALTH_RUN * (1 - STEALTH_SHARE) / STEALTH_SHARE
    k = int(n_att / (STEALTH_RUN + normal)) * 2 + 8
    lens = np.empty(2 * k, np.int64)
    lens[0::2] = rng.geometric(1 / normal, k)
    lens[1::2] = rng.geometric(1 / STEALTH_RUN, k)
    while lens.sum() < n_att:  # rare: the draws fell short
        lens = np.concatenate([lens, lens])
    return np.repeat(np.arange(len(lens)) % 2 == 1, lens)[:n_att]


def generate(n_flows: int, seed: int, class_mix: dict[str, float]) -> pd.DataFrame:
    """`n_flows` flows in time order, v1 layout and dtypes, deterministic for `seed`."""
    if int(n_flows) < 1:
        raise ValueError(f"data.n_flows must be >= 1, got {n_flows}")
    n, rng = int(n_flows), np.random.default_rng(seed)
    counts = _counts(n, dict(class_mix))
    n_benign, n_att = int(counts[0]), int(counts[1:].sum())

    # Campaigns: sizes per category, then a random order of all campaigns.
    cls_list, len_list = [], []
    for k, (name, c) in enumerate(zip(ATTACKS, counts[1:], strict=True)):
        if c:
            lens = _partition(rng, int(c), max(1, min(int(c), round(c / MEAN_CAMPAIGN[name]))))
            cls_list.append(np.full(len(lens), k))
            len_list.append(lens)
    camp_cls = np.concatenate(cls_list) if cls_list else np.zeros(0, np.int64)
    camp_len = np.concatenate(len_list) if len_list else np.zeros(0, np.int64)
    order = rng.permutation(len(camp_cls))
    camp_cls, camp_len = camp_cls[order], camp_len[order]
    n_camp = len(camp_cls)
    starts = np.concatenate([[0], np.cumsum(camp_len)])  # campaign boundaries in attack flows
    att_camp = np.repeat(np.arange(n_camp), camp_len)
    att_pos = np.arange(n_att) - starts[att_camp]  # position inside its campaign

    # Benign flows: background scattered at random, periods inserted at campaign boundaries;
    # the number of periods grows with the flows, so every split holds many of them.
    n_bg = round(n_benign * BACKGROUND_SHARE)
    n_per = n_benign - n_bg
    n_periods = min(n_per, max(20, round(n_per / BENIGN_PERIOD)))
    short = min(BENIGN_MIN, n_per // max(n_periods, 1) - 1)  # no periods of a flow or two
    per_len = (short + _partition(rng, n_per - short * n_periods, n_periods) if n_per
               else np.zeros(0, np.int64))
    at = starts[rng.integers(0, n_camp + 1, n_periods)]
    ins = np.sort(np.concatenate([rng.integers(0, n_att + 1, n_bg), np.repeat(at, per_len)]))
    att_idx = np.arange(n_att) + np.searchsorted(ins, np.arange(n_att), side="right")
    camp = np.full(n, -1)
    camp[att_idx] = att_camp
    pos = np.zeros(n, np.int64)
    pos[att_idx] = att_pos
    is_att = camp >= 0
    cls = np.where(is_att, camp_cls[np.maximum(camp, 0)] if n_camp else 0, -1)

    # Features: attack-tool traffic, except benign flows and the mimicking share of attacks:
    # a few scattered ones everywhere, most of them inside stealth stretches.
    share = np.array([MIMIC[a] for a in ATTACKS] + [0.0])  # cls -1 (benign) picks the last 0
    share = np.where(_stealth(rng, n_att)[np.cumsum(is_att) - 1] if n_att else False,
                     STEALTH_MIMIC, share[cls])
    mimic = is_att & (rng.random(n) < share)
    camp_udp = rng.random(n_camp) < np.where(camp_cls == 0, 0.8, 0.1)
    looks_benign = ~is_att | mimic
    feat = {k: np.zeros(n, np.float64 if k == "l7" else np.int64)
            for k in ("proto", "l7", "inp", "outp", "inb", "outb", "flags", "dur")}
    for mask, values in ((looks_benign, _benign(rng, int(looks_benign.sum()))),
                         (~looks_benign, _attack(rng, cls[~looks_benign],
                                                 camp_udp[camp[~looks_benign]]))):
        for k, v in values.items():
            feat[k][mask] = v

    # Hosts and ports: campaign attacker -> campaign victim; benign among hosts and the internet.
    camp_src = rng.choice(ATTACKERS, n_camp)
    camp_dst = rng.choice(VICTIMS, n_camp)
    camp_port = np.where(camp_cls == 3, rng.choice([4433, 22, 21, 8080], n_camp),
                         rng.choice([80, 80, 80, 443, 1883], n_camp))
    camp_port = np.where(camp_cls == 2, rng.integers(1, 1024, n_camp), camp_port)  # scan start
    c = np.maximum(camp, 0)
    src = np.where(is_att, camp_src[c] if n_camp else 0, rng.choice(len(HOSTS), n))
    src = np.where(is_att & (cls == 0), rng.choice(ATTACKERS, n), src)  # DDoS: all attackers
    dst = np.where(is_att, camp_dst[c] if n_camp else 0, rng.choice(len(IP_POOL), n))
    dport = np.where(is_att, camp_port[c] if n_camp else 0,
                     rng.choice([80, 443, 53, 1883, 8883, 123, 22, 565], n))
    dport = np.where(is_att & (cls == 2), (dport + pos) % 65535 + 1, dport)  # port sweep
    sport = rng.integers(1024, 65536, n)
    icmp = feat["proto"] == 1
    return pd.DataFrame({
        "IPV4_SRC_ADDR": IP_POOL[src], "L4_SRC_PORT": np.where(icmp, 0, sport),
        "IPV4_DST_ADDR": IP_POOL[dst], "L4_DST_PORT": np.where(icmp, 0, dport),
        "PROTOCOL": feat["proto"].astype(np.int64), "L7_PROTO": feat["l7"].astype(np.float64),
        "IN_BYTES": feat["inb"], "OUT_BYTES": feat["outb"], "IN_PKTS": feat["inp"],
        "OUT_PKTS": feat["outp"], "TCP_FLAGS": feat["flags"].astype(np.int64),
        "FLOW_DURATION_MILLISECONDS": feat["dur"].astype(np.int64),
        "Label": is_att.astype(np.int64),
        "Attack": np.array(CATEGORIES, dtype=object)[cls + 1],
    })[COLUMNS]
