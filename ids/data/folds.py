"""Cross-validation folds: contiguous blocks of the flows outside test.

`trainer.cv_folds=k` cuts the training and validation flows, joined in flow order (train then
val), into k contiguous blocks of near-equal size. Fold f's model trains on the other blocks
and scores block f, so every flow outside test gets exactly one out-of-fold score, and a
choice made on those scores (the threshold, the trial's value) rests on every benign flow
outside test instead of the validation split's 15 %. Test flows are never in a fold.

Each block is its own segment: a window never reads a flow of another block (the flows before
a block's first flow are zero padding, as before a split's first flow), so no window of a fold's
training flows contains a held-out flow and no held-out window contains a training flow. With
windows over each host's flows (`data.window_by=host|pair`) the groups are regrouped block by
block: a window holds the previous flows of its host within its block, in time order.
The encoding stays the one fitted on the training split (`ids.data.encoding`: label-free
statistics), shared by every fold and by the model that is logged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ids.data.flows import DataError
from ids.data.splits import Prepared, Split, group_keys


@dataclass(frozen=True)
class Fold:
    number: int  # 1-based
    held: np.ndarray  # (m,) positions of the held-out block in the joined sequence
    data: Prepared  # train = the other blocks, val = the held-out block, test untouched


def fold_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """[start, end) of k contiguous blocks covering 0..n-1 once, sizes differing by <= 1."""
    if k < 2 or k > n:
        raise DataError(f"trainer.cv_folds={k} needs 2 <= folds <= the {n} flows outside test")
    cuts = np.linspace(0, n, k + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def joined(prepared: Prepared) -> Split:
    """The flows outside test as one sequence: train then val, in flow order (with grouped
    windows, the splits before grouping: `Prepared.whole`)."""
    if prepared.info.get("train_subset"):
        raise DataError("trainer.cv_folds with data.max_train_flows is not supported: the "
                        "folds cut every flow outside test; drop one of the two")
    parts = prepared.whole or {"train": prepared.train, "val": prepared.val}
    return Split.concat([parts["train"], parts["val"]])


def learnt_from(prepared: Prepared, folds: int) -> Split:
    """The flows a run's model learnt from: train, or train+val for a bag cross-validated over
    `folds` folds (copies of them in test are not unseen)."""
    return joined(prepared) if folds else prepared.train


def make_folds(prepared: Prepared, k: int) -> list[Fold]:
    """The k folds of `prepared` (see the module docstring); each fold's `data` is a Prepared
    whose train and val are the fold's training blocks and its held-out block."""
    seq = joined(prepared)
    n = len(seq.y)
    bounds = fold_bounds(n, k)
    block_start = np.empty(n, np.int64)
    for a, b in bounds:
        block_start[a:b] = a
    by = prepared.info.get("window_by", "none")
    if by == "none":
        def part(pos: np.ndarray) -> Split:
            return seq.select(pos, starts=block_start[pos])
    else:  # each block's flows grouped by host (pair) on their own, in time order
        context = {k: np.concatenate([prepared.context[s][k] for s in ("train", "val")])
                   for k in ("start", "src", "dst")}
        grouped = seq.grouped(_within(block_start, group_keys(context, by)), context["start"])

        def part(pos: np.ndarray) -> Split:
            return grouped.select(pos)
    out = []
    for f, (a, b) in enumerate(bounds, start=1):
        held = np.arange(a, b, dtype=np.int64)
        rest = np.concatenate([np.arange(0, a), np.arange(b, n)]).astype(np.int64)
        data = replace(prepared, train=part(rest), val=part(held),
                       info={**prepared.info, "fold": {"number": f, "of": k,
                                                       "held_out": [a, b], "flows": n}})
        out.append(Fold(f, held, data))
    return out


def _within(block: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """One int64 code per (block, group key) pair: groups that never span two blocks."""
    order = np.lexsort((keys, block))
    b, k = block[order], keys[order]
    new = np.ones(len(order), bool)
    new[1:] = (b[1:] != b[:-1]) | (k[1:] != k[:-1])
    codes = np.empty(len(order), np.int64)
    codes[order] = np.cumsum(new) - 1
    return codes
