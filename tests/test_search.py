"""Distinct windows in training and scoring (ids.model.feed): the same loss, gradients and
scores as over every flow. Real MindSpore, real NF-BoT-IoT flows where the test says so."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from ids.config import compose
from ids.data.prepare import prepare
from ids.data.splits import Split
from ids.model.feed import epoch_plan, score, scoring_items
from ids.model.fit import WeightedLoss, fit
from ids.model.network import build_model
from ids.model.runtime import predict_proba, setup_runtime


def _split_with_copies() -> Split:
    """60 flows drawn from 7 distinct encoded rows, with both labels on one of them."""
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(7, 5)).astype(np.float32)
    pick = rng.integers(0, 7, 60)
    y = (pick % 3 != 0).astype(np.float32)
    y[:4] = 1 - y[:4]  # a conflicting copy: same features, other label
    return Split(rows[pick], y, np.array(["x"] * 60, object), np.arange(60))


@pytest.mark.parametrize(("window", "class_w"), [(1, (1.0, 1.0)), (2, (3.0, 0.5))])
def test_weighted_distinct_epoch_has_the_loss_and_gradient_of_all_flows(window, class_w):
    """At the same parameters, the batches of one weighted distinct-pair epoch add up to the
    loss and gradient over every flow, times the number of batches (dropout 0: exact up to
    float32 rounding)."""
    setup_runtime(compose([]).trainer)
    split = _split_with_copies()
    windows, y = split.windows(window), split.y
    d = split.distinct(window, labelled=True)
    assert len(d) < len(y)  # the hand-built split has copies
    cfg = compose(["model.dropout=0.0", "model.filters=4", "model.lstm_units=4",
                   "model.conv_layers=1"]).model
    model = build_model(windows.shape[2], window, cfg)
    model.set_train(True)
    loss_fn = WeightedLoss(model)
    grad = ms.value_and_grad(loss_fn, None, model.trainable_params())

    def loss_and_grads(idx: np.ndarray, w: np.ndarray):
        loss, grads = grad(ms.Tensor(windows[idx]), ms.Tensor(y[idx]), ms.Tensor(w))
        return float(loss.asnumpy()), [g.asnumpy() for g in grads]

    w_all = np.where(y > 0.5, class_w[1], class_w[0]).astype(np.float32)
    full_loss, full_grads = loss_and_grads(np.arange(len(y)), w_all)

    bs = 3
    rows, w = epoch_plan(y, d, bs, class_w, np.random.default_rng(0))
    n_batches = len(rows) // bs
    assert n_batches == -(-len(d) // bs) and sorted(set(rows[w > 0])) == sorted(d.first)
    losses, sums = [], [np.zeros_like(g) for g in full_grads]
    for b in range(n_batches):
        loss, grads = loss_and_grads(rows[b * bs:(b + 1) * bs], w[b * bs:(b + 1) * bs])
        losses.append(loss)
        sums = [s + g for s, g in zip(sums, grads, strict=True)]
    assert np.mean(losses) == pytest.approx(full_loss, rel=1e-5)
    for s, g in zip(sums, full_grads, strict=True):
        np.testing.assert_allclose(s, n_batches * g, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The first 6,000 flows of the shared v1 sample, prepared (4,200 training flows)."""
    from conftest import V1_SAMPLE

    if not V1_SAMPLE.exists():
        pytest.skip(f"{V1_SAMPLE} is absent: the real NF-BoT-IoT samples live in ../shared/data/")
    tmp = tmp_path_factory.mktemp("real")
    overrides = ["data=nf_bot_iot", f"data.path={V1_SAMPLE}", "data.max_rows=6000",
                 "model.filters=8", "model.lstm_units=8", "model.conv_layers=1",
                 "trainer.epochs=1", "trainer.batch_size=128", "trainer.baselines=false",
                 "model.dropout=0.0", f"cache_dir={tmp}/cache"]
    cfg = compose(overrides)
    setup_runtime(cfg.trainer)
    return overrides, prepare(cfg.data)


@pytest.mark.parametrize("window", [1, 5])
def test_distinct_scoring_gives_every_flow_exactly_its_plain_score(real, window):
    overrides, prepared = real
    cfg = compose(overrides + [f"data.window={window}"])
    model = build_model(prepared.val.X.shape[1], window, cfg.model)
    d = scoring_items(prepared.val, window, "auto")
    # auto uses them where a fifth or more of the windows are copies: window 1 on these flows
    assert (d is not None) == (window == 1)
    plain = predict_proba(model, prepared.val.windows(window), 1024)
    for mode in ("auto", "on"):
        np.testing.assert_array_equal(score(model, prepared.val, window, 1024, mode), plain)


def test_results_with_and_without_distinct_windows_agree_on_real_flows(real):
    """trainer.distinct=auto (the default) trains on every flow, as off does, and scores each
    distinct validation window once: same seed, dropout 0, same batches in the same order, so
    the kept epoch, threshold and every validation metric are the same. (trainer.distinct=on
    trains on weighted distinct pairs: other batches and fewer steps per epoch, so its results
    differ as another batch order's would; its loss and gradient sum are the test above.)"""
    overrides, prepared = real
    results = {mode: fit(compose(overrides + ["data.window=1", f"trainer.distinct={mode}"]),
                         prepared) for mode in ("off", "auto")}
    off, auto = results["off"], results["auto"]
    assert scoring_items(prepared.val, 1, "auto") is not None
    np.testing.assert_array_equal(auto.val_scores, off.val_scores)
    assert (auto.best_epoch, auto.threshold) == (off.best_epoch, off.threshold)
    assert auto.val_metrics == off.val_metrics


def test_weighted_distinct_training_runs_fewer_steps_per_epoch(real):
    """trainer.distinct=on: an epoch is one pass over the distinct (window, label) pairs, so its
    steps are the pairs over the batch size, not the flows."""
    overrides, prepared = real
    steps: list[int] = []
    cfg = compose(overrides + ["data.window=1", "trainer.distinct=on"])
    fit(cfg, prepared, on_batch=lambda done, n: steps.append(n))
    pairs = len(prepared.train.distinct(1, labelled=True))
    assert steps[-1] == -(-pairs // 128) < len(prepared.train.y) // 128


GOOD = [0.60, 0.70, 0.72, 0.73, 0.74]
HOPELESS = [0.05, 0.10, 0.15, 0.20, 0.25]


def test_the_presets_scheduler_prunes_a_hopeless_trial_at_its_first_rung(tmp_path):
    """sweep=nf_bot_iot: successive halving from the first trials on; its first rung is epoch 2,
    and a trial there in the bottom two thirds stops (the first trial of a rung goes on)."""
    from test_pruning import run_curves

    study = run_curves(tmp_path, ["sweep=nf_bot_iot"], [GOOD, HOPELESS, GOOD[:3], HOPELESS])
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]
    assert [t.user_attrs.get("pruned_epoch") for t in study.trials] == [None, 2, None, 2]
    assert study.trials[1].intermediate_values == {1: 0.05, 2: 0.10}


def test_the_presets_scheduler_never_prunes_at_a_trials_last_epoch(tmp_path):
    """A hopeless trial whose last epoch is the rung (2 epochs) ends COMPLETE: it cost all it
    will cost; the same curve one epoch longer is pruned there."""
    from test_pruning import run_curves

    study = run_curves(tmp_path, ["sweep=nf_bot_iot"], [GOOD, [0.0, 0.0], [0.0, 0.0, 0.0]])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]


def test_the_pruners_signal_is_higher_is_better():
    from ids.tuning.objective import prune_signal

    record = {"val/mcc": 0.9, "val/loss": 0.02, "val/balanced_loss": 0.3, "val/roc_auc": 0.99}
    assert prune_signal(record, "metric", "mcc") == 0.9
    assert prune_signal(record, "balanced_loss", "mcc") == -0.3
    assert prune_signal(record, "roc_auc", "mcc") == 0.99


def test_a_real_sweep_with_the_presets_scheduler_stops_a_hopeless_trial_at_epoch_two(tmp_path):
    """Real training on tiny data, the preset's pruner settings: a start point that cannot learn
    (lr 1e-7) stops at the first rung, the one before it runs to its end."""
    from ids.tuning.study import open_study
    from ids.tuning.sweep import sweep
    from world import SMALL_SPACE, sweep_cfg

    space = {**SMALL_SPACE, "trainer.lr": {"type": "float", "low": 1e-7, "high": 0.01}}
    cfg = sweep_cfg(tmp_path, "sweep.n_trials=2", "sweep.pruner=successive_halving",
                    "sweep.pruner_warmup_epochs=1", "+sweep.pruner_args.reduction_factor=3",
                    "trainer.epochs=3", "trainer.patience=0", "tracking.enabled=false",
                    params=space)
    cfg.sweep.start_points = [{"trainer.lr": 0.01, "data.window": 4},
                              {"trainer.lr": 1e-7, "data.window": 4}]
    summary = sweep(cfg)
    good, hopeless = open_study(cfg).trials
    assert (good.state.name, hopeless.state.name) == ("COMPLETE", "PRUNED")
    assert summary["pruned_at"] == {2: 1} and list(hopeless.intermediate_values) == [1, 2]


def test_an_epoch_trains_on_at_most_epoch_flows_fresh_ones_each_time():
    """trainer.epoch_flows bounds an epoch on a big file; the next epoch takes other flows."""
    rng = np.random.default_rng(0)
    y = (rng.random(1000) > 0.1).astype(np.float32)
    first, w1 = epoch_plan(y, None, 32, (1.0, 1.0), rng, limit=300)
    second, _ = epoch_plan(y, None, 32, (1.0, 1.0), rng, limit=300)
    assert len(first) == len(second) == 288 and len(set(first)) == 288 and (w1 == 1).all()
    assert set(first) != set(second)
    split = _split_with_copies()
    d = split.distinct(1, labelled=True)
    rows, w = epoch_plan(split.y, d, 2, (1.0, 1.0), rng, limit=4)
    assert len(rows) == 4 and w.sum() == pytest.approx(4.0)  # a batch stands for bs flows


def test_sweep_fixed_sets_every_trials_config_and_is_checked_first(tmp_path):
    from ids.tuning.space import SpaceError, apply, check_space
    from world import sweep_cfg

    cfg = sweep_cfg(tmp_path)
    cfg.sweep.fixed = {"trainer.epoch_flows": 1000}
    assert apply(cfg, {"data.window": 1}).trainer.epoch_flows == 1000
    check_space(cfg)
    cfg.sweep.fixed = {"trainer.epoch_flows": -1}
    with pytest.raises(SpaceError, match="epoch_flows"):
        check_space(cfg)
    cfg.sweep.fixed = {"trainer.no_such_key": 1}
    with pytest.raises(SpaceError, match="not a config key"):
        check_space(cfg)
