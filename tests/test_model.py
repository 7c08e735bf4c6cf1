"""The CNN-BiLSTM on real MindSpore (CPU): shapes, both execution modes, learning, checkpoints."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from omegaconf import OmegaConf

from ids.config import ModelConfig
from ids.model.network import CNNBiLSTM, build_model, sequence_lengths

ms.set_device("CPU")
SMALL = {"filters": 8, "lstm_units": 8}


@pytest.fixture
def mode():
    """Set the (global) execution mode for one test and restore the previous one afterwards."""
    previous = ms.get_context("mode")

    def set_mode(value: int) -> None:
        ms.set_context(mode=value)

    yield set_mode
    ms.set_context(mode=previous)


def windows(n: int, t: int, f: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, t, f)).astype(np.float32)


def train_steps(net: nn.Cell, x: np.ndarray, y: np.ndarray, steps: int, batch: int = 64,
                lr: float = 1e-2) -> list[float]:
    """Functional MindSpore training: value_and_grad over the optimizer's parameters + Adam."""
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = nn.Adam(net.trainable_params(), learning_rate=lr)

    def forward_fn(xb, yb):
        return loss_fn(net(xb), yb)

    grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters)
    net.set_train(True)
    losses = []
    for step in range(steps):
        i = (step * batch) % (len(x) - batch + 1)
        loss, grads = grad_fn(ms.Tensor(x[i:i + batch]), ms.Tensor(y[i:i + batch]))
        optimizer(grads)
        losses.append(float(loss.asnumpy()))
    net.set_train(False)
    return losses


@pytest.mark.parametrize(("window", "conv_layers", "pool_size", "expected"), [
    (10, 2, 2, [5, 2]),
    (1, 3, 2, [1, 1, 1]),  # shorter than the pool from the start: never pools
    (3, 2, 2, [1, 1]),  # pools once, then clamps
    (7, 2, 3, [2, 2]),
    (5, 2, 1, [5, 5]),
    (5, 0, 2, []),
])
def test_sequence_lengths(window, conv_layers, pool_size, expected):
    assert sequence_lengths(window, conv_layers, pool_size) == expected


def test_sequence_lengths_rejects_bad_sizes():
    with pytest.raises(ValueError, match="window"):
        sequence_lengths(0, 2, 2)


@pytest.mark.parametrize(("window", "kernel_size", "conv_layers", "extra"), [
    (1, 3, 2, {}),
    (1, 5, 3, {}),
    (2, 3, 3, {}),
    (3, 3, 2, {"dense_units": 4}),
    (3, 2, 3, {"lstm_layers": 2}),
    (10, 3, 2, {}),
    (10, 4, 1, {"pool_size": 3}),
    (4, 3, 0, {}),  # BiLSTM only
])
def test_output_is_one_logit_per_window(window, kernel_size, conv_layers, extra):
    net = CNNBiLSTM(5, window, conv_layers=conv_layers, kernel_size=kernel_size, **SMALL, **extra)
    net.set_train(False)
    out = net(ms.Tensor(windows(7, window, 5)))
    assert out.shape == (7,)
    assert out.dtype == ms.float32
    assert np.isfinite(out.asnumpy()).all()


def test_final_states_are_last_layer_forward_and_backward():
    net = CNNBiLSTM(3, 6, conv_layers=0, lstm_units=4, lstm_layers=2, lstm="fused")
    x = ms.Tensor(windows(2, 6, 3))
    out, _ = net.lstm(x)  # (N, T, 2H): forward half ends at T-1, backward half at 0
    expected = np.concatenate([out.asnumpy()[:, -1, :4], out.asnumpy()[:, 0, 4:]], axis=1)
    np.testing.assert_allclose(net.features(x).asnumpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("window, conv_layers, lstm_layers", [(1, 2, 1), (10, 2, 1), (6, 0, 2)])
def test_unrolled_bilstm_is_nn_lstm_with_the_same_weights(mode, window, conv_layers,
                                                           lstm_layers):
    """Same parameter names and shapes (checkpoints load either way), same outputs and
    gradients up to float rounding, in both execution modes."""
    fused = CNNBiLSTM(5, window, conv_layers=conv_layers, lstm_layers=lstm_layers, dropout=0.0,
                      lstm="fused", **SMALL)
    unrolled = CNNBiLSTM(5, window, conv_layers=conv_layers, lstm_layers=lstm_layers,
                         dropout=0.0, **SMALL)
    names = [p.name for p in fused.trainable_params()]
    assert sorted(names) == sorted(p.name for p in unrolled.trainable_params())
    ms.load_param_into_net(unrolled, {p.name: p for p in fused.trainable_params()})
    x = ms.Tensor(windows(9, window, 5))
    for m in (ms.PYNATIVE_MODE, ms.GRAPH_MODE):
        mode(m)
        np.testing.assert_allclose(unrolled(x).asnumpy(), fused(x).asnumpy(), atol=2e-6)
        grads = [{p.name: g.asnumpy() for p, g in zip(net.trainable_params(), ms.grad(
            net, grad_position=None, weights=net.trainable_params())(x), strict=True)}
            for net in (fused, unrolled)]
        for name in names:
            np.testing.assert_allclose(grads[1][name], grads[0][name], atol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="built for sequences of"):
        unrolled.lstm(ms.Tensor(windows(2, 3, 8)))
    with pytest.raises(ValueError, match="lstm must be one of"):
        CNNBiLSTM(5, window, lstm="cudnn")


def test_a_windows_score_does_not_depend_on_its_place_in_the_batch(mode):
    """Chunked and whole-file scoring agree bit for bit (ids.predict, ids.stream): MindSpore's
    CPU MatMul computes the last rows of its input with another kernel, which made these scores
    differ in the last bits before the model padded its scoring batches (CNNBiLSTM.construct)."""
    from ids.model.runtime import predict_proba

    mode(ms.GRAPH_MODE)
    net = CNNBiLSTM(31, 4, conv_layers=1, filters=8, lstm_units=8)  # compiled once per shape
    for seed in range(5):
        ms.set_seed(seed)  # another network's weights each time, in the same graph
        fresh = CNNBiLSTM(31, 4, conv_layers=1, filters=8, lstm_units=8).parameters_dict()
        assert ms.load_param_into_net(net, fresh, strict_load=True) == ([], [])
        x = np.random.default_rng(seed).standard_normal((1500, 4, 31)).astype(np.float32)
        whole = predict_proba(net, x, 512)
        for cut in (1, 7, 100, 333, 700):
            parts = np.concatenate([predict_proba(net, x[:cut], 512),
                                    predict_proba(net, x[cut:], 512)])
            np.testing.assert_array_equal(parts, whole, err_msg=f"seed {seed}, cut {cut}")


def test_build_model_reads_a_model_config():
    cfg = OmegaConf.structured(ModelConfig(conv_layers=3, filters=6, lstm_units=5, dense_units=7))
    net = build_model(4, 9, cfg)
    assert net.lengths == [4, 2, 1]
    shapes = {p.name: p.shape for p in net.trainable_params()}
    assert shapes["head.0.weight"] == (7, 10)  # Dense(2 * lstm_units -> dense_units)
    assert net(ms.Tensor(windows(3, 9, 4))).shape == (3,)


@pytest.mark.parametrize("window", [1, 10])
def test_graph_mode_train_step_matches_pynative(mode, window):
    ms.set_seed(0)
    net = CNNBiLSTM(6, window, conv_layers=2, dropout=0.0, **SMALL)
    x, y = windows(32, window, 6), np.random.default_rng(1).integers(0, 2, 32).astype(np.float32)
    mode(ms.PYNATIVE_MODE)
    net.set_train(False)
    eager = net(ms.Tensor(x)).asnumpy()
    mode(ms.GRAPH_MODE)
    np.testing.assert_allclose(net(ms.Tensor(x)).asnumpy(), eager, rtol=1e-5, atol=1e-6)
    losses = train_steps(net, x, y, steps=2, batch=32)
    assert np.isfinite(losses).all()


def test_training_drives_the_loss_down(mode):
    """Easy problem: attack when feature 0 averages above 0 over the window."""
    mode(ms.GRAPH_MODE)
    ms.set_seed(0)
    x = windows(2048, 5, 3, seed=2)
    y = (x[:, :, 0].mean(axis=1) > 0).astype(np.float32)
    net = CNNBiLSTM(3, 5, conv_layers=2, dropout=0.0, **SMALL)
    losses = train_steps(net, x, y, steps=300)
    first, last = np.mean(losses[:10]), np.mean(losses[-20:])
    assert first > 0.6
    assert last < 0.25
    accuracy = ((net(ms.Tensor(x)).asnumpy() > 0) == y).mean()
    assert accuracy > 0.9


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    ms.set_seed(0)
    net = CNNBiLSTM(4, 6, dense_units=5, **SMALL)
    train_steps(net, windows(128, 6, 4), np.ones(128, np.float32), steps=2)
    path = str(tmp_path / "model.ckpt")
    ms.save_checkpoint(net, path)

    ms.set_seed(1)
    fresh = CNNBiLSTM(4, 6, dense_units=5, **SMALL)
    not_loaded, _ = ms.load_param_into_net(fresh, ms.load_checkpoint(path))
    assert not not_loaded
    net.set_train(False)
    fresh.set_train(False)
    x = ms.Tensor(windows(16, 6, 4, seed=3))
    np.testing.assert_array_equal(fresh(x).asnumpy(), net(x).asnumpy())
