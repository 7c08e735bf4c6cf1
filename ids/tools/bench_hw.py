"""The machine's yardstick: float32 matrix-multiply FLOP/s (numpy sgemm, all cores) and the
FLOPs of one training window of the model, counted from the layer shapes.

FLOPs count a multiply-add as 2. Forward: each Conv1d 2*L*C_in*filters*k at its input length
L ("same" padding), each LSTM direction 2*4H*(I+H) per time step, the dense layers 2*in*out;
pooling, activations and the loss are left out (memory-bound, few FLOPs). Training = 3 x
forward (the backward pass costs about twice the forward: gradients of inputs and weights).
"""

from __future__ import annotations

import time

from ids.model.network import sequence_lengths


def forward_flops(n_features: int, window: int, model_cfg) -> float:
    """Multiply-add FLOPs of one window's forward pass."""
    conv_layers, filters = int(model_cfg.conv_layers), int(model_cfg.filters)
    k, units = int(model_cfg.kernel_size), int(model_cfg.lstm_units)
    flops, channels, length = 0.0, int(n_features), int(window)
    for out_length in sequence_lengths(int(window), conv_layers, int(model_cfg.pool_size)):
        flops += 2.0 * length * channels * filters * k
        channels, length = filters, out_length
    for layer in range(int(model_cfg.lstm_layers)):
        inputs = channels if layer == 0 else 2 * units
        flops += 2 * length * 2.0 * 4 * units * (inputs + units)
    head_in = 2 * units
    if int(model_cfg.dense_units) > 0:
        flops += 2.0 * head_in * int(model_cfg.dense_units)
        head_in = int(model_cfg.dense_units)
    return flops + 2.0 * head_in


def train_flops(n_features: int, window: int, model_cfg) -> float:
    return 3.0 * forward_flops(n_features, window, model_cfg)


def sgemm_flops(n: int = 1024, seconds: float = 1.0) -> float:
    """Best float32 n x n matmul rate (FLOP/s) over about `seconds` of repeats."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: BLAS threads started, pages touched
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end or best == float("inf"):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best
