"""Training loop: Adam on binary cross-entropy, a validation-tuned threshold every epoch.

Read top to bottom: `fit` trains for
`trainer.epochs`, scores the validation windows after each epoch, tunes the decision threshold
that maximises `trainer.selection_metric` on validation, keeps the best epoch's checkpoint and
threshold, and reloads that checkpoint at the end. The test split is never touched here.

Distinct windows (`trainer.distinct`): most NetFlow flows are copies of another flow. Scoring
computes each distinct window once where that pays (`score`: the same bits per flow). With
`trainer.distinct=on`, an epoch also trains on each distinct (window, label) pair once, weighted
by its copies (`epoch_plan`: the same loss and gradient sum as over all flows at the same
parameters), which makes an epoch cheaper but not a step: the optimizer takes fewer steps per
epoch and learns that much less per epoch (docs/guide/sweeps.md, "Distinct windows").
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn

from ids.config import InputError
from ids.data.splits import Prepared
from ids.data.windows import check_window
from ids.evaluation.metrics import best_threshold, compute_metrics
from ids.model.budget import Budget, part
from ids.model.feed import batches, epoch_plan, prefetch, score, scoring_items
from ids.model.network import build_model


class NonFiniteLoss(InputError, RuntimeError):
    """Training diverged (NaN or infinite loss); lower trainer.lr or check the data scaling."""


@dataclass
class FitResult:
    model: nn.Cell  # best epoch's weights, in eval mode
    best_epoch: int  # 1-based
    threshold: float  # tuned on validation at the best epoch
    best_value: float  # selection metric on validation at the best epoch
    history: list[dict] = field(default_factory=list)  # one record per epoch
    val_scores: np.ndarray | None = None  # best model's validation probabilities
    val_metrics: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    stopped_early: bool = False
    val_y: np.ndarray | None = None  # labels of val_scores (None: the val split's)
    val_loss: float | None = None  # val loss of the best model (None: its epoch's record's)


def bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def balanced_bce(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of the benign flows' and the attack flows' cross-entropy: each class counts half,
    so a few benign flows among thousands of attacks move it (plain `bce` barely sees them)."""
    y = np.asarray(y) > 0.5
    p = np.clip(p, 1e-7, 1 - 1e-7)
    parts = [-np.mean(np.log(p[y])) if y.any() else 0.0,
             -np.mean(np.log(1 - p[~y])) if (~y).any() else 0.0]
    return float(np.mean(parts))


def class_weights(y: np.ndarray, mode: str) -> tuple[float, float]:
    """(benign weight, attack weight); 'balanced' gives each class half of the total loss."""
    if mode != "balanced":
        return 1.0, 1.0
    n, pos = len(y), float(y.sum())
    return n / (2 * max(n - pos, 1.0)), n / (2 * max(pos, 1.0))


class WeightedLoss(nn.Cell):
    """Mean of the per-sample weighted binary cross-entropy of the model's logits.

    `auto_prefix=False`: the model's parameters keep their own names (`lstm.weight_ih_l0`, not
    `model.lstm.weight_ih_l0`), so the checkpoint training writes loads into a bare network
    (the Scorer's) as it is, without MindSpore's prefix-removal warning."""

    def __init__(self, model: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.model = model
        self.loss = nn.BCEWithLogitsLoss(reduction="none")

    def construct(self, x, y, w):
        return (self.loss(self.model(x), y) * w).mean()


def train_step(model: nn.Cell, optimizer: nn.Optimizer) -> nn.Cell:
    """Forward, gradients and the optimizer update as one Cell: in graph mode one compiled
    graph per step, so the gradients never go back to the host between backward and update."""
    return nn.TrainOneStepCell(WeightedLoss(model), optimizer)


def steps_per_epoch(n_rows: int, bs: int, t_cfg) -> int:
    """Optimizer steps of one epoch: `epoch_plan`'s batches (flows dropped to whole batches,
    distinct pairs filled up to them)."""
    n = min(n_rows, int(t_cfg.epoch_flows) or n_rows)
    return max(1, n // bs if str(t_cfg.distinct) != "on" else -(-n // bs))


def learning_rate(t_cfg, steps: int):
    """`trainer.lr`, or with `lr_schedule=cosine` one rate per step: a cosine from lr down to
    lr / 100 at the last step of `trainer.epochs` (large steps to find the region, small ones to
    settle in it: on real flows the single model fitted its training copies with 33 errors at a
    constant rate, docs/results/sweeps.md). Early stopping may end before the low rates."""
    lr = float(t_cfg.lr)
    if str(getattr(t_cfg, "lr_schedule", "constant")) != "cosine":
        return lr
    total = steps * int(t_cfg.epochs)
    t = np.arange(total, dtype=np.float64) / max(total - 1, 1)
    rates = lr / 100 + (lr - lr / 100) * 0.5 * (1 + np.cos(np.pi * t))
    return ms.Tensor(rates.astype(np.float32))


def compile_graphs(step: nn.Cell, model: nn.Cell, shape: tuple[int, ...],
                   eval_batch_size: int) -> None:
    """Compile the training step for batches of `shape` and the scoring graph for
    `predict_proba`'s batches now, so that their cost is counted apart from the epochs."""
    step.set_train(True)
    step.compile(*(ms.Tensor(np.zeros(s, np.float32)) for s in (shape, shape[:1], shape[:1])))
    model.set_train(False)
    model.compile(ms.Tensor(np.zeros((eval_batch_size, *shape[1:]), np.float32)))


def fit(
    cfg,
    prepared: Prepared,
    on_epoch: Callable[[int, dict], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    budget: Budget | None = None,
) -> FitResult:
    """Train the CNN-BiLSTM; `on_epoch(epoch, record)` may raise (e.g. optuna.TrialPruned);
    `on_batch(done, n_batches)` follows a long epoch (progress bars); `budget` gets the
    seconds of data (windows, distinct ids), compile (building and compiling the graphs),
    train and val (scoring, threshold, metrics, checkpoint)."""
    t_cfg, window, mode = cfg.trainer, int(cfg.data.window), str(cfg.trainer.distinct)
    check_window(window, prepared.sizes())
    ms.set_seed(int(cfg.seed))
    rng = np.random.default_rng(int(cfg.seed))

    with part(budget, "data"):
        train_w, y_train = prepared.train.windows(window), prepared.train.y.astype(np.float32)
        items = prepared.train.distinct(window, labelled=True) if mode == "on" else None
        y_val = prepared.val.y
        scoring_items(prepared.val, window, mode)  # cached for `score`
    n_rows = len(train_w) if items is None else len(items)
    bs = min(int(t_cfg.batch_size), n_rows, int(t_cfg.epoch_flows) or n_rows)
    with part(budget, "compile"):
        model = build_model(train_w.shape[2], window, cfg.model)
        optimizer = nn.Adam(model.trainable_params(),
                            learning_rate=learning_rate(t_cfg, steps_per_epoch(n_rows, bs, t_cfg)),
                            weight_decay=float(t_cfg.weight_decay))
        step = train_step(model, optimizer)
        if t_cfg.mode == "graph":
            compile_graphs(step, model, (bs, *train_w.shape[1:]), int(t_cfg.eval_batch_size))
    weights = class_weights(y_train, t_cfg.class_weight)

    ckpt_dir = Path(checkpoint_dir or t_cfg.checkpoint_dir or tempfile.mkdtemp(prefix="ids-ckpt-"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / "best.ckpt"
    metric = t_cfg.selection_metric
    history: list[dict] = []
    best: dict | None = None
    stale, stopped_early = 0, False

    for epoch in range(1, int(t_cfg.epochs) + 1):
        t0 = time.perf_counter()
        with part(budget, "train"):
            step.set_train(True)
            rows, w_rows = epoch_plan(y_train, items, bs, weights, rng, int(t_cfg.epoch_flows))
            n_batches = len(rows) // bs
            losses = []
            for b, (x, y, w) in enumerate(prefetch(batches(train_w, y_train, rows, w_rows, bs))):
                losses.append(step(x, y, w))
                if on_batch is not None:
                    on_batch(b + 1, n_batches)
            train_loss = float(np.mean([loss.asnumpy() for loss in losses]))
        if not np.isfinite(train_loss):
            raise NonFiniteLoss(f"epoch {epoch}: training loss is {train_loss}; "
                                f"lower trainer.lr (now {t_cfg.lr}) or check the input scaling")
        train_seconds = time.perf_counter() - t0

        with part(budget, "val"):
            p_val = score(model, prepared.val, window, int(t_cfg.eval_batch_size), mode)
            threshold, value = best_threshold(y_val, p_val, metric)
            val_metrics = compute_metrics(y_val, p_val, threshold)
            record = {"epoch": epoch, "train/loss": train_loss, "val/loss": bce(y_val, p_val),
                      "val/balanced_loss": balanced_bce(y_val, p_val), "val/threshold": threshold,
                      "epoch_seconds": time.perf_counter() - t0,
                      "train_seconds": train_seconds}
            record.update({f"val/{k}": v for k, v in val_metrics.items() if k != "threshold"})
            history.append(record)

            key = (value, -record["val/loss"])  # ties: the lower val loss
            if best is None or key > best["key"]:
                best = {"epoch": epoch, "value": value, "threshold": threshold, "key": key,
                        "record": record, "scores": p_val, "metrics": val_metrics}
                ms.save_checkpoint(model, str(ckpt))
                stale = 0
            else:
                stale += 1
        if on_epoch is not None:
            on_epoch(epoch, record)
        if t_cfg.patience and stale >= int(t_cfg.patience):
            stopped_early = True
            break

    assert best is not None
    ms.load_param_into_net(model, ms.load_checkpoint(str(ckpt)))
    model.set_train(False)
    return FitResult(model=model, best_epoch=best["epoch"], threshold=best["threshold"],
                     best_value=best["value"], history=history, val_scores=best["scores"],
                     val_metrics=best["metrics"], checkpoint=ckpt, stopped_early=stopped_early,
                     val_y=y_val, val_loss=best["record"]["val/loss"])
