"""The MindSpore runtime for training and scoring: device, mode and threads, and scoring windows.

Scoring lives here, not in `ids.model.fit`: the model files, the server and the streams score
flows without importing the training loop.
"""

from __future__ import annotations

import gc
import logging
import os

import mindspore as ms
import numpy as np
from mindspore import log as ms_log
from mindspore import nn

from ids.data.distinct import Distinct

_THREADS_SET: list[int] = []
_SETTLED: list[bool] = []
# MindSpore warnings that say nothing to an ids user, dropped by their exact start (every other
# MindSpore warning still prints): `nn.Adam` builds a FusedSparseAdam for sparse gradients,
# which ids never has, and MindSpore deprecated that operator in 2.8.
MEANINGLESS = ("'FusedSparseAdam' is deprecated from version",)


class _Meaningless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(MEANINGLESS)


def quiet_mindspore() -> None:
    """Drop the `MEANINGLESS` warnings from MindSpore's Python logger (`mindspore.log`, one
    per process; its C++ side writes to the terminal itself). Called on import."""
    logger = ms_log._get_logger()  # private: MindSpore's one logger has no public getter
    if not any(isinstance(f, _Meaningless) for f in logger.filters):
        logger.addFilter(_Meaningless())


quiet_mindspore()


def settle_heap() -> None:
    """Move every object alive now out of the garbage collector's sight (`gc.freeze`).

    MindSpore runs a full `gc.collect()` before every graph compilation: 0.25 s on a quiet
    machine once MLflow, Optuna, pandas and scikit-learn are imported (0.5 s under load),
    paid twice per training and once per batch shape a server compiles. The modules, classes
    and functions that make up most of that heap live as long as the process; frozen, a
    collection only walks what was made since (a few milliseconds). Objects frozen here are
    never collected if they later become cyclic garbage, so call it once, when the
    long-lived state exists (`setup_runtime` does, on its first call)."""
    gc.collect()
    gc.freeze()
    _SETTLED.append(True)


def setup_runtime(trainer_cfg, workers: int = 1) -> None:
    """Select CPU, graph or PyNative mode, and the kernel threads (cores shared by workers).

    MindSpore defaults to 25 CPU kernel threads, which oversubscribes a small machine; the
    thread count can be set once per process, so the first call wins. The first call also
    settles the heap (`settle_heap`): every later graph compilation is 0.25-0.5 s cheaper.
    """
    ms.set_device("CPU")
    mode = ms.GRAPH_MODE if trainer_cfg.mode == "graph" else ms.PYNATIVE_MODE
    ms.set_context(mode=mode)
    if not _SETTLED:
        settle_heap()
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


BUCKET_BASE = 4  # compiled batch shapes below batch_size: 1, 4, 16, 64, 256, ...


def batch_shape(n: int, batch_size: int) -> int:
    """The compiled batch shape for `n` windows: `batch_size` when n >= batch_size, else the
    smallest power of BUCKET_BASE that holds n (capped at batch_size). Graph mode compiles each
    shape once per model (about a second), so a handful of buckets serves any request size, and
    one flow costs what a batch of one costs instead of a padded batch of `batch_size`."""
    bs = int(batch_size)
    if n >= bs:
        return bs
    shape = 1
    while shape < n:
        shape *= BUCKET_BASE
    return min(shape, bs)


def predict_proba(model: nn.Cell, windows: np.ndarray, batch_size: int) -> np.ndarray:
    """Attack probability per window, in batches of `batch_size` rows; the last batch, or a call
    of fewer windows, is zero-padded to `batch_shape` (one of a few compiled shapes).

    A window's score does not depend on the batch shape (the model pads every batch so that
    each real row is in a full MatMul tile, see `CNNBiLSTM.construct`): files, chunks, streams
    and requests agree bit for bit except for about 1 row in 500, which MindSpore's CPU LSTM
    kernels give a last-bit difference (6e-8) by its place in the batch; labels agree
    (`tests/test_scoring_agreement.py`). A call of `batch_size` or more windows pads its tail
    to the full `batch_size`, as it always did: validation scoring compiles no extra shape."""
    model.set_train(False)
    n = len(windows)
    out = np.empty(n, dtype=np.float32)
    bs = int(batch_size)
    shape = batch_shape(n, bs)
    for start in range(0, n, bs):
        xb = np.ascontiguousarray(windows[start : start + bs], dtype=np.float32)
        m = len(xb)
        if m < shape:
            xb = np.concatenate([xb, np.zeros((shape - m, *xb.shape[1:]), np.float32)])
        out[start : start + m] = model(ms.Tensor(xb)).asnumpy()[:m]
    return sigmoid(out)


def warm_up(model: nn.Cell, window_shape: tuple[int, int], batch_size: int) -> list[int]:
    """Compile every batch shape `predict_proba` can use (a server does this before it answers,
    so no request pays for a compilation); returns the shapes."""
    shapes, n = [], 1
    while True:
        shape = batch_shape(n, batch_size)
        shapes.append(shape)
        predict_proba(model, np.zeros((shape, *window_shape), np.float32), batch_size)
        if shape >= int(batch_size):
            return shapes
        n = shape + 1


def predict_distinct(model: nn.Cell, windows: np.ndarray, distinct: Distinct,
                     batch_size: int) -> np.ndarray:
    """`predict_proba` of every window, computing each distinct window once (`distinct` from
    `ids.data.distinct.distinct_windows` of the same rows): a copy gets the very same score."""
    return distinct.expand(predict_proba(model, windows[distinct.first], batch_size))
