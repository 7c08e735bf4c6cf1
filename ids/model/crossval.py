"""k-fold cross-validation inside one run (`trainer.cv_folds`): selection on every flow
outside test, and the fold models' bag as the model.

A single run selects its epoch, threshold and value on the validation split: 15 % of the flows
outside test, 32 benign flows on the shared sample, where one benign flow moves val MCC by
0.016. `cross_fit` trains one model per fold (`ids.data.folds`: contiguous blocks of train+val,
windows never straddle a block), each selecting its epoch on its held-out block as `fit` does,
so every flow outside test gets one out-of-fold score. The threshold and the run's value are
then chosen on all of those scores at once: every benign flow outside test counts.

The model the run logs is the bag of the k fold models (`ids.model.network.Bag`: the mean of
their probabilities), the one whose out-of-fold scores chose the threshold. A model refit on
train+val for the folds' median epoch was measured against it on real flows and lost (test
MCC 0.759 against the bag's 0.930 on the 100,000-flow dev file: the threshold chosen on the
fold models' scores does not carry over to a model trained on 18 % more flows; docs/results/
sweeps.md), so the bag is the champion.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mindspore as ms
import numpy as np

from ids.data.folds import joined, make_folds
from ids.data.splits import Prepared
from ids.evaluation.metrics import best_threshold, compute_metrics
from ids.model.budget import Budget
from ids.model.fit import FitResult, bce, fit
from ids.model.network import Bag


@dataclass
class CrossResult(FitResult):
    folds: list[FitResult] = field(default_factory=list)  # each fold model's own fit


def cross_fit(
    cfg,
    prepared: Prepared,
    on_epoch: Callable[[int, dict], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    budget: Budget | None = None,
) -> CrossResult:
    """Fit one model per fold of `cfg.trainer.cv_folds`; `on_epoch(epoch, record)` sees every
    fold's epochs, the record's "fold" saying which (1-based; a pruner may stop the run in the
    first fold). The result's threshold, value and val_* figures are those of the out-of-fold
    scores of train+val (in flow order: `ids.data.folds.joined`); its model is the bag."""
    k = int(cfg.trainer.cv_folds)
    ckpt_dir = Path(checkpoint_dir or tempfile.mkdtemp(prefix="ids-ckpt-"))
    y = joined(prepared).y
    oof = np.full(len(y), np.nan)
    results: list[FitResult] = []
    for fold in make_folds(prepared, k):
        def hook(epoch: int, record: dict, number: int = fold.number) -> None:
            if on_epoch is not None:
                on_epoch(epoch, {**record, "fold": number})

        result = fit(cfg, fold.data, on_epoch=hook, checkpoint_dir=ckpt_dir / f"fold{fold.number}",
                     on_batch=on_batch, budget=budget)
        oof[fold.held] = result.val_scores
        results.append(result)
    threshold, value = best_threshold(y, oof, cfg.trainer.selection_metric)
    bag = Bag([r.model for r in results])
    bag.set_train(False)
    ckpt = ckpt_dir / "bag.ckpt"
    ms.save_checkpoint(bag, str(ckpt))
    epochs = [r.best_epoch for r in results]
    return CrossResult(
        model=bag, best_epoch=int(np.ceil(np.median(epochs))), threshold=threshold,
        best_value=value, history=[h for r in results for h in r.history], val_scores=oof,
        val_metrics=compute_metrics(y, oof, threshold), checkpoint=ckpt,
        stopped_early=any(r.stopped_early for r in results), val_y=y, val_loss=bce(y, oof),
        folds=results)
