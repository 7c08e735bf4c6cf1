"""What the copy accounting and the intervals add to a run: `python -m ids.tools.trust_cost [N]`.

Times each step on N synthetic flows (default 600,000; v1 layout, contiguous 70/15/15 split)
with random model and forest scores, best of 5: row hashing, copy shares of val and test plus
the unseen mask, metrics of three sources on the unseen flows, the bootstrap intervals, the
paired verdicts, and `data.dedup=exact`'s duplicate search (only paid when asked for).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ids.config import NF_BOT_IOT_MIX, compose
from ids.data import synthetic
from ids.data.copies import KeyIndex, TrainIndex, dedup_keys, feature_columns, row_hashes
from ids.data.flows import ATTACK, LABEL, validate_frame
from ids.data.splits import split_indices
from ids.evaluation import scorecard
from ids.evaluation.intervals import confusion_ci, paired_difference
from ids.evaluation.metrics import compute_metrics


def _timed(out: dict, key: str, fn) -> object:
    t0 = time.perf_counter()
    value = fn()
    out[key] = min(out.get(key, np.inf), time.perf_counter() - t0)
    return value


def measure(n: int = 600_000, repeats: int = 5) -> dict[str, float]:
    df = validate_frame(synthetic.generate(n, 0, dict(NF_BOT_IOT_MIX)))
    idx = split_indices(len(df), compose([]).data)
    y, att = df[LABEL].to_numpy(), df[ATTACK].to_numpy(object)
    codes = np.unique(att, return_inverse=True)[1]
    tr, te = idx["train"], idx["test"]
    yt = y[te]
    rng = np.random.default_rng(0)
    preds = {scorecard.MODEL: (rng.random(len(te)), 0.5), "all_attack": (np.ones(len(te)), 0.5),
             "extra_trees": (rng.random(len(te)), 0.5)}
    best: dict[str, float] = {}
    for _ in range(repeats):
        h = _timed(best, "hash every row", lambda: row_hashes(df, feature_columns(df, False)))
        _timed(best, "dedup mask (data.dedup=exact only)", lambda h=h: KeyIndex().add(
            dedup_keys(KeyIndex().add(h)[0], y, codes)))

        def overlap(h=h):
            seen = TrainIndex(h[tr], y[tr])
            for s in ("val", "test"):
                seen.stats(h[idx[s]], y[idx[s]])
            return ~seen.copies(h[te])

        unseen = _timed(best, "copy shares val+test, unseen mask", overlap)
        _timed(best, "metrics on unseen flows (3 sources)", lambda u=unseen: [
            compute_metrics(yt[u], s[u], t, att[te][u]) for s, t in preds.values()])

        def intervals(u=unseen):
            for s, t in preds.values():
                for mask in (slice(None), u):
                    p, yy = s[mask] >= t, yt[mask].astype(bool)
                    confusion_ci(int((~yy & ~p).sum()), int((~yy & p).sum()),
                                 int((yy & ~p).sum()), int((yy & p).sum()))

        _timed(best, "intervals (3 sources x all/unseen)", intervals)
        _timed(best, "paired verdicts (all, unseen)", lambda u=unseen: [
            paired_difference(yt[m], preds[scorecard.MODEL][0][m] >= 0.5,
                              preds["extra_trees"][0][m] >= 0.5) for m in (slice(None), u)])
    best["total added to every run"] = sum(v for k, v in best.items() if "dedup" not in k)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000
    for key, seconds in measure(n).items():
        print(f"{key:40s} {seconds * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
