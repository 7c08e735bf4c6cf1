"""Training loop: Adam on binary cross-entropy, a validation-tuned threshold every epoch.

Read top to bottom: `fit` trains for
`trainer.epochs`, scores the validation windows after each epoch, tunes the decision threshold
that maximises `trainer.selection_metric` on validation, keeps the best epoch's checkpoint and
threshold, and reloads that checkpoint at the end. The test split is never touched here.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn

from ids.data.splits import Prepared
from ids.data.windows import check_window
from ids.evaluation.metrics import best_threshold, compute_metrics
from ids.model.network import build_model
from ids.model.runtime import predict_proba


class NonFiniteLoss(RuntimeError):
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


def bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def class_weights(y: np.ndarray, mode: str) -> tuple[float, float]:
    """(benign weight, attack weight); 'balanced' gives each class half of the total loss."""
    if mode != "balanced":
        return 1.0, 1.0
    n, pos = len(y), float(y.sum())
    return n / (2 * max(n - pos, 1.0)), n / (2 * max(pos, 1.0))


class WeightedLoss(nn.Cell):
    """Mean of the per-sample weighted binary cross-entropy of the model's logits."""

    def __init__(self, model: nn.Cell) -> None:
        super().__init__()
        self.model = model
        self.loss = nn.BCEWithLogitsLoss(reduction="none")

    def construct(self, x, y, w):
        return (self.loss(self.model(x), y) * w).mean()


def train_step(model: nn.Cell, optimizer: nn.Optimizer) -> nn.Cell:
    """Forward, gradients and the optimizer update as one Cell: in graph mode one compiled
    graph per step, so the gradients never go back to the host between backward and update."""
    return nn.TrainOneStepCell(WeightedLoss(model), optimizer)


def batches(windows: np.ndarray, y: np.ndarray, order: np.ndarray, bs: int,
            weights: tuple[float, float]):
    """(x, y, w) tensors of each full batch of `order`; rows sorted within a batch (reads go
    forward through memory). `from_numpy` shares the freshly gathered arrays: no extra copy."""
    w_benign, w_attack = weights
    for b in range(len(order) // bs):
        idx = np.sort(order[b * bs : (b + 1) * bs])
        yb = y[idx]
        wb = np.where(yb > 0.5, w_attack, w_benign).astype(np.float32)
        yield ms.from_numpy(windows[idx]), ms.from_numpy(yb), ms.from_numpy(wb)


def prefetch(items, depth: int = 3):
    """Iterate `items` in a background thread, up to `depth` ahead: the next batches are
    gathered on the host while MindSpore computes the current step."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=produce, name="ids-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def fit(
    cfg,
    prepared: Prepared,
    on_epoch: Callable[[int, dict], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train the CNN-BiLSTM; `on_epoch(epoch, record)` may raise (e.g. optuna.TrialPruned);
    `on_batch(done, n_batches)` follows a long epoch (progress bars)."""
    t_cfg, window = cfg.trainer, int(cfg.data.window)
    check_window(window, prepared.sizes())
    ms.set_seed(int(cfg.seed))
    rng = np.random.default_rng(int(cfg.seed))

    train_w, y_train = prepared.train.windows(window), prepared.train.y.astype(np.float32)
    val_w, y_val = prepared.val.windows(window), prepared.val.y
    model = build_model(train_w.shape[2], window, cfg.model)
    optimizer = nn.Adam(model.trainable_params(), learning_rate=float(t_cfg.lr),
                        weight_decay=float(t_cfg.weight_decay))
    weights = class_weights(y_train, t_cfg.class_weight)
    step = train_step(model, optimizer)

    ckpt_dir = Path(checkpoint_dir or t_cfg.checkpoint_dir or tempfile.mkdtemp(prefix="ids-ckpt-"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / "best.ckpt"
    bs = min(int(t_cfg.batch_size), len(train_w))
    n_batches = len(train_w) // bs  # drop the ragged tail (reshuffled every epoch): one shape
    metric = t_cfg.selection_metric
    history: list[dict] = []
    best: dict | None = None
    stale, stopped_early = 0, False

    for epoch in range(1, int(t_cfg.epochs) + 1):
        t0 = time.perf_counter()
        step.set_train(True)
        order = rng.permutation(len(train_w))[: n_batches * bs]
        losses = []
        for b, (x, y, w) in enumerate(prefetch(batches(train_w, y_train, order, bs, weights))):
            losses.append(step(x, y, w))
            if on_batch is not None:
                on_batch(b + 1, n_batches)
        train_loss = float(np.mean([loss.asnumpy() for loss in losses]))
        if not np.isfinite(train_loss):
            raise NonFiniteLoss(f"epoch {epoch}: training loss is {train_loss}; "
                                f"lower trainer.lr (now {t_cfg.lr}) or check the input scaling")
        train_seconds = time.perf_counter() - t0

        p_val = predict_proba(model, val_w, int(t_cfg.eval_batch_size))
        threshold, value = best_threshold(y_val, p_val, metric)
        val_metrics = compute_metrics(y_val, p_val, threshold)
        record = {"epoch": epoch, "train/loss": train_loss, "val/loss": bce(y_val, p_val),
                  "val/threshold": threshold, "epoch_seconds": time.perf_counter() - t0,
                  "train_seconds": train_seconds}
        record.update({f"val/{k}": v for k, v in val_metrics.items() if k != "threshold"})
        history.append(record)

        improved = best is None or value > best["value"] or (
            value == best["value"] and record["val/loss"] < best["record"]["val/loss"])
        if improved:
            best = {"epoch": epoch, "value": value, "threshold": threshold, "record": record,
                    "scores": p_val, "metrics": val_metrics}
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
                     val_metrics=best["metrics"], checkpoint=ckpt, stopped_early=stopped_early)
