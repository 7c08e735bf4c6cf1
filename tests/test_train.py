"""The trainer on real MindSpore (CPU, graph mode) and tiny synthetic data: it learns, it picks the
best epoch and its threshold on validation, it stops early, it weights classes, and the best
checkpoint reloads to the same predictions. No MLflow here (tests/test_tracking.py covers it)."""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest

from conftest import tiny_overrides
from ids.artifact.scorer import Scorer
from ids.config import compose
from ids.data.prepare import prepare
from ids.evaluation.metrics import best_threshold, compute_metrics
from ids.experiment.train import train
from ids.model import runtime
from ids.model.fit import class_weights, fit
from ids.model.network import build_model
from ids.model.runtime import predict_proba, setup_runtime

# An easy problem: many benign flows, most attacks look like attack-tool traffic.
EASY_MIX = {"Benign": 30.0, "DoS": 40.0, "Reconnaissance": 30.0}
EPOCHS = 3


def easy_cfg(tmp, *extra: str):
    cfg = compose(tiny_overrides(tmp) + [f"trainer.epochs={EPOCHS}", "trainer.patience=0",
                                         "model.dropout=0.0", "tracking.enabled=false",
                                         *extra])
    cfg.data.class_mix = dict(EASY_MIX)  # replace the NF-BoT-IoT mix (a CLI override merges)
    return cfg


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    """One 3-epoch fit on the easy synthetic frame, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("easy")
    cfg = easy_cfg(tmp, "trainer.lr=0.01", f"trainer.checkpoint_dir={tmp}/ckpt")
    setup_runtime(cfg.trainer)
    prepared = prepare(cfg.data)
    seen: list[tuple[int, dict]] = []
    result = fit(cfg, prepared, on_epoch=lambda epoch, record: seen.append((epoch, record)))
    return cfg, prepared, result, seen


def test_loss_goes_down_on_an_easy_problem(easy):
    _, prepared, result, _ = easy
    assert 0.2 < prepared.train.y.mean() < 0.9  # really the easy mix, both classes present
    losses = [r["train/loss"] for r in result.history]
    assert len(losses) == EPOCHS
    assert all(np.isfinite(losses))
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.5 * losses[0], losses
    val_losses = [r["val/loss"] for r in result.history]
    assert val_losses[-1] < val_losses[0], val_losses
    # It learned something a constant answer cannot: both classes are recognised on val.
    assert result.val_metrics["mcc"] > 0.5, result.val_metrics
    assert result.val_metrics["benign_recall"] > 0.5, result.val_metrics


def test_history_has_one_record_per_epoch_and_on_epoch_sees_each(easy):
    cfg, _, result, seen = easy
    assert [r["epoch"] for r in result.history] == list(range(1, EPOCHS + 1))
    assert [e for e, _ in seen] == list(range(1, EPOCHS + 1))
    assert [r for _, r in seen] == result.history
    for r in result.history:
        for key in ("train/loss", "val/loss", "val/f1", "val/mcc", "val/threshold"):
            assert np.isfinite(r[key]), (key, r)
    assert not result.stopped_early


def test_best_epoch_is_the_argmax_of_the_selection_metric_and_keeps_its_threshold(easy):
    cfg, prepared, result, _ = easy
    metric = cfg.trainer.selection_metric
    values = [r[f"val/{metric}"] for r in result.history]
    best = max(values)
    tied = [i for i, v in enumerate(values) if v == best]
    # Ties go to the lower validation loss, then to the earlier epoch.
    expected = min(tied, key=lambda i: (result.history[i]["val/loss"], i)) + 1
    assert result.best_epoch == expected, values
    record = result.history[result.best_epoch - 1]
    assert result.best_value == record[f"val/{metric}"]
    assert result.threshold == record["val/threshold"]
    # The threshold really is the one maximising the metric for the kept model's val scores.
    assert (result.threshold, result.best_value) == best_threshold(
        prepared.val.y, result.val_scores, metric)
    assert result.val_metrics == compute_metrics(prepared.val.y, result.val_scores,
                                                 result.threshold)


def test_reloaded_checkpoint_gives_identical_predictions(easy):
    cfg, prepared, result, _ = easy
    T, bs = int(cfg.data.window), int(cfg.trainer.eval_batch_size)
    assert result.checkpoint is not None and result.checkpoint.is_file()
    assert result.checkpoint.parent == Path(cfg.trainer.checkpoint_dir)
    net = build_model(len(prepared.feature_names), T, cfg.model)
    ms.load_param_into_net(net, ms.load_checkpoint(str(result.checkpoint)))
    for split in (prepared.val, prepared.test):
        np.testing.assert_array_equal(predict_proba(net, split.windows(T), bs),
                                      predict_proba(result.model, split.windows(T), bs))
    # The checkpoint is the best epoch's: its val scores are the ones the threshold was tuned on.
    np.testing.assert_array_equal(predict_proba(net, prepared.val.windows(T), bs),
                                  result.val_scores)
    # Same through the Scorer that the MLflow model wraps (weights + preprocessing + window).
    scorer = Scorer(prepared.preprocessor, dict(cfg.model), T, result.threshold,
                    result.checkpoint, bs)
    np.testing.assert_array_equal(scorer.score_matrix(prepared.test.X),
                                  predict_proba(result.model, prepared.test.windows(T), bs))


def test_patience_stops_on_a_plateau(tmp_path):
    # lr=1e-12 leaves the float32 weights unchanged: no epoch improves on the first.
    cfg = easy_cfg(tmp_path, "trainer.epochs=6", "trainer.patience=2", "trainer.lr=1e-12",
                   "trainer.baselines=false")
    summary = train(cfg)
    assert summary["stopped_early"] is True
    assert summary["epochs_run"] == 3 < int(cfg.trainer.epochs)  # best, then 2 stale epochs
    assert summary["best_epoch"] == 1


def test_patience_zero_trains_every_epoch(easy):
    cfg, _, result, _ = easy
    assert int(cfg.trainer.patience) == 0
    assert len(result.history) == int(cfg.trainer.epochs) and not result.stopped_early


def test_balanced_class_weights_give_each_class_half_the_loss(easy):
    _, prepared, _, _ = easy
    for y in (prepared.train.y, np.r_[np.zeros(3), np.ones(997)]):
        w_benign, w_attack = class_weights(y, "balanced")
        n_attack = float(y.sum())
        n_benign = len(y) - n_attack
        assert w_benign * n_benign == pytest.approx(len(y) / 2)
        assert w_attack * n_attack == pytest.approx(len(y) / 2)
        assert w_benign * n_benign + w_attack * n_attack == pytest.approx(len(y))  # mean 1
        assert (w_benign > w_attack) == (n_benign < n_attack)
    assert class_weights(np.r_[np.zeros(3), np.ones(997)], "balanced")[0] == pytest.approx(
        1000 / 6)
    assert class_weights(prepared.train.y, "none") == (1.0, 1.0)
    # One class only: no division by zero.
    assert all(np.isfinite(class_weights(np.ones(10), "balanced")))


@pytest.mark.parametrize("mode", ["none", "balanced"])
def test_class_weights_enter_the_training_loss(tmp_path, mode):
    """One batch holding every training window: the epoch-1 loss is the initial model's
    weighted BCE, which the test recomputes from an identically seeded model."""
    cfg = compose(tiny_overrides(tmp_path) + ["trainer.epochs=1", "model.dropout=0.0",
                                              f"trainer.class_weight={mode}",
                                              "trainer.batch_size=2800", "tracking.enabled=false"])
    setup_runtime(cfg.trainer)
    prepared = prepare(cfg.data)
    T, y = int(cfg.data.window), prepared.train.y
    assert len(y) == 2800 and 0 < y.sum() < len(y)
    ms.set_seed(int(cfg.seed))  # as fit does before building its model
    initial = build_model(len(prepared.feature_names), T, cfg.model)
    p = predict_proba(initial, prepared.train.windows(T), 4096).astype(np.float64)
    per_flow = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    w_benign, w_attack = class_weights(y, mode)
    expected = float(np.mean(np.where(y > 0.5, w_attack, w_benign) * per_flow))
    if mode == "balanced":  # the weighting makes a difference the check can see
        assert abs(expected - per_flow.mean()) > 1e-2 * expected
    result = fit(cfg, prepared)
    assert result.history[0]["train/loss"] == pytest.approx(expected, rel=1e-4)


def test_batches_cover_the_order_once_and_prefetch_keeps_it():
    """The prefetched batches are exactly the synchronous ones, rows sorted within a batch."""
    from ids.model.fit import batches, prefetch

    rng = np.random.default_rng(0)
    windows = rng.standard_normal((50, 4, 3)).astype(np.float32)
    y = (rng.random(50) > 0.5).astype(np.float32)
    order = rng.permutation(50)[:48]
    w = np.where(y[order] > 0.5, 3.0, 1.0).astype(np.float32)  # per row, as epoch_plan gives
    plain = list(batches(windows, y, order, w, 16))
    ahead = list(prefetch(batches(windows, y, order, w, 16), depth=2))
    assert len(plain) == len(ahead) == 3
    for (x0, _, _), (x1, y1, w1), b in zip(plain, ahead, range(3), strict=True):
        idx = np.sort(order[b * 16 : (b + 1) * 16])
        assert np.array_equal(x0.asnumpy(), windows[idx])
        assert np.array_equal(x1.asnumpy(), windows[idx])
        assert np.array_equal(y1.asnumpy(), y[idx])
        assert np.array_equal(w1.asnumpy(), np.where(y[idx] > 0.5, 3.0, 1.0))


def test_prefetch_hands_the_producers_error_to_the_consumer():
    from ids.model.fit import prefetch

    def broken():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]


def test_a_consumer_that_stops_early_stops_the_producer():
    """Stopping while the producer waits to hand over its end (the queue full) must not hang:
    the producer's last put used to wait for a consumer that had gone."""
    import threading
    import time

    from ids.data.prefetch import prefetch

    ahead = prefetch(iter(range(2)), depth=1)
    assert next(ahead) == 0
    time.sleep(0.5)  # the producer has put 1 (the queue is full) and waits to put its end
    stopper = threading.Thread(target=ahead.close, daemon=True)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive(), "closing the prefetching iterator hung"


def test_the_first_runtime_setup_settles_the_heap_once():
    """MindSpore walks the whole heap (gc.collect) before every graph compilation: the first
    `setup_runtime` freezes what is alive then (modules, data), so a compilation only walks the
    objects made since; later calls freeze nothing more (what they would freeze could leak)."""
    gc.unfreeze()
    runtime._SETTLED.clear()
    try:
        gc.collect()  # what earlier tests left as garbage is not "alive now"
        tracked = len(gc.get_objects())
        setup_runtime(SimpleNamespace(mode="graph", threads=1))
        frozen = gc.get_freeze_count()
        assert frozen > 0.9 * tracked > 10_000  # imports alone are ~100k objects here
        assert len(gc.get_objects()) < 0.01 * frozen
        later = [[k] for k in range(1000)]  # made after the first setup
        setup_runtime(SimpleNamespace(mode="graph", threads=1))
        # Nothing joins the frozen objects (some of them may be freed meanwhile, which only
        # lowers the count), and what was made after the first setup stays collectable.
        assert gc.get_freeze_count() <= frozen
        assert any(o is later for o in gc.get_objects())
    finally:
        runtime.settle_heap()  # as the session left it (conftest freezes after collection)
