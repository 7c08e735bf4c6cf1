"""The MindSpore runtime for training and scoring: device, mode and threads, and scoring windows.

Scoring lives here, not in `ids.model.fit`: the model files, the server and the streams score
flows without importing the training loop.
"""

from __future__ import annotations

import os

import mindspore as ms
import numpy as np
from mindspore import nn

from ids.data.distinct import Distinct

_THREADS_SET: list[int] = []


def setup_runtime(trainer_cfg, workers: int = 1) -> None:
    """Select CPU, graph or PyNative mode, and the kernel threads (cores shared by workers).

    MindSpore defaults to 25 CPU kernel threads, which oversubscribes a small machine; the
    thread count can be set once per process, so the first call wins.
    """
    ms.set_device("CPU")
    mode = ms.GRAPH_MODE if trainer_cfg.mode == "graph" else ms.PYNATIVE_MODE
    ms.set_context(mode=mode)
    if _THREADS_SET:
        return
    threads = int(trainer_cfg.threads) or max(1, (os.cpu_count() or 1) // max(1, workers))
    try:
        from mindspore import device_context

        device_context.cpu.op_tuning.threads_num(threads)
        _THREADS_SET.append(threads)
    except (ImportError, AttributeError, RuntimeError):  # older/newer API: keep the default
        pass


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def predict_proba(model: nn.Cell, windows: np.ndarray, batch_size: int) -> np.ndarray:
    """Attack probability per window. Every batch has exactly `batch_size` rows (the last one
    zero-padded): graph mode compiles one shape, and a flow's score does not depend on how many
    flows were scored with it (chunked and whole-file scoring agree bit for bit)."""
    model.set_train(False)
    n = len(windows)
    out = np.empty(n, dtype=np.float32)
    bs = int(batch_size)
    for start in range(0, n, bs):
        xb = np.ascontiguousarray(windows[start : start + bs], dtype=np.float32)
        m = len(xb)
        if m < bs:
            xb = np.concatenate([xb, np.zeros((bs - m, *xb.shape[1:]), np.float32)])
        out[start : start + m] = model(ms.Tensor(xb)).asnumpy()[:m]
    return sigmoid(out)


def predict_distinct(model: nn.Cell, windows: np.ndarray, distinct: Distinct,
                     batch_size: int) -> np.ndarray:
    """`predict_proba` of every window, computing each distinct window once (`distinct` from
    `ids.data.distinct.distinct_windows` of the same rows): a copy gets the very same score."""
    return distinct.expand(predict_proba(model, windows[distinct.first], batch_size))
