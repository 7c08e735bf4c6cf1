"""What an epoch feeds the training step, and how a split is scored.

`epoch_plan` lays out one epoch (rows and loss weights, batch after batch), `batches` gathers
them, `prefetch` gathers the next ones in a thread while MindSpore computes; `score` gives every
window of a split its attack probability, computing each distinct window once where that pays
(most NetFlow flows are copies of another flow; `ids.data.distinct`).
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import nn

from ids.data.distinct import Distinct
from ids.data.prefetch import prefetch
from ids.data.splits import Split
from ids.model.runtime import predict_distinct, predict_proba

__all__ = ["batches", "epoch_plan", "prefetch", "score", "scoring_items"]

# trainer.distinct=auto scores each distinct window once where at most this share of a split's
# windows is distinct (a fifth or more are copies): window 1 on NF-BoT-IoT (26 % distinct in
# validation), never windows of 3 or more flows there (all distinct).
DISTINCT_PAYS = 0.8


def scoring_items(split: Split, window: int, mode: str) -> Distinct | None:
    """The split's distinct windows where scoring uses them: always with trainer.distinct=on,
    where they pay with auto (`DISTINCT_PAYS`), never with off (None: every window)."""
    if mode == "off":
        return None
    d = split.distinct(window)
    return d if mode == "on" or len(d) <= DISTINCT_PAYS * d.n else None


def score(model: nn.Cell, split: Split, window: int, batch_size: int, mode: str) -> np.ndarray:
    """Attack probability of every window of `split`, each distinct window computed once
    where that pays; a flow gets the same bits either way (`predict_distinct`)."""
    windows = split.windows(window)
    d = scoring_items(split, window, mode)
    if d is None:
        return predict_proba(model, windows, batch_size)
    return predict_distinct(model, windows, d, batch_size)


def epoch_plan(y: np.ndarray, distinct: Distinct | None, bs: int, weights: tuple[float, float],
               rng: np.random.Generator, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, loss weights) of one epoch, `bs` rows per batch, in batch order; `limit` > 0:
    at most that many rows (trainer.epoch_flows), the first of this epoch's permutation.

    Every flow (distinct None): a permutation of the split, the ragged tail dropped (reshuffled
    each epoch). Distinct (window, label) pairs: a permutation of the pairs, each row weighted by
    its class weight times its multiplicity, scaled so that a batch's mean weighted loss is the
    loss of the flows it stands for over the flows per batch; the last batch is filled up with
    weight-0 repeats. At the same parameters, the epoch's batch losses and gradients then add
    up to the same sum over all flows as every flow's (tests/test_search.py)."""
    w_benign, w_attack = weights
    if distinct is None:
        n = min(len(y), limit or len(y))
        rows = rng.permutation(len(y))[: (n // bs) * bs]
        return rows, np.where(y[rows] > 0.5, w_attack, w_benign).astype(np.float32)
    k = min(len(distinct), limit or len(distinct))
    n_batches = -(-k // bs)
    items = rng.permutation(len(distinct))[:k]
    w_sum = distinct.counts[items].sum()
    items = np.concatenate([items, items[: n_batches * bs - k]])
    rows = distinct.first[items]
    w = np.where(y[rows] > 0.5, w_attack, w_benign) * distinct.counts[items]
    w *= bs * n_batches / w_sum
    w[k:] = 0.0
    return rows, w.astype(np.float32)


def batches(windows: np.ndarray, y: np.ndarray, rows: np.ndarray, w: np.ndarray, bs: int):
    """(x, y, w) tensors of each batch of `rows`; rows sorted within a batch (reads go forward
    through memory). `from_numpy` shares the freshly gathered arrays: no extra copy."""
    for b in range(len(rows) // bs):
        order = np.argsort(rows[b * bs : (b + 1) * bs], kind="stable")
        idx, wb = rows[b * bs : (b + 1) * bs][order], w[b * bs : (b + 1) * bs][order]
        yield ms.from_numpy(windows[idx]), ms.from_numpy(y[idx]), ms.from_numpy(wb)
