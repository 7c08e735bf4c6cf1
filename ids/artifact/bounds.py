"""What a model needs against what this machine has: a model file's sizes are checked here
before anything is built (`ids.artifact.modelfile.check_meta`), so a `window` of 50,000 or a
billion LSTM units is a one-line error naming the memory it would need, not a 21 GB allocation.

The figures are upper estimates from the layer shapes of `ids.model.network` (float32), not a
second implementation of it: they only have to be large enough, and the error says they are
estimates.
"""

from __future__ import annotations

import os

from ids.model.network import ROW_PAD, sequence_lengths

MAX_STEPS = 1024  # the unrolled BiLSTM compiles one cell per step of its sequence


class TooBig(ValueError):
    """A model whose network or scoring batch would not fit here; the message says how much."""


def check_size(model: dict, n_features: int, window: int, batch: int) -> None:
    """TooBig unless the network and one scoring batch fit in the memory available here (an
    estimate of parameters and activations, float32), and the unrolled BiLSTM's sequence is
    short enough to compile."""
    need = 4 * (2 * params(model, n_features) + scoring_values(model, n_features, window, batch))
    have = memory_budget()
    _fits(need <= have, f"scoring with 'window' {window}, 'eval_batch_size' {batch} and these "
          f"layer sizes would need about {need / 1e9:.1f} GB of memory, more than the "
          f"{have / 1e9:.1f} GB available here; the file is damaged, or the model is too big "
          "for this machine")
    steps = (sequence_lengths(window, model["conv_layers"], model["pool_size"]) or [window])[-1]
    _fits(model["lstm_impl"] != "unrolled" or steps <= MAX_STEPS, f"'window' {window} leaves a "
          f"sequence of {steps} steps for the unrolled BiLSTM; at most {MAX_STEPS} compile")


def params(model: dict, n_features: int) -> int:
    """An upper estimate of the network's parameter count (`ids.model.network`)."""
    c, k, h = model["filters"], model["kernel_size"], model["lstm_units"]
    conv = sum((n_features if i == 0 else c) * c * k + c for i in range(model["conv_layers"]))
    lstm_in = c if model["conv_layers"] else n_features
    lstm = sum(2 * 4 * h * ((lstm_in if i == 0 else 2 * h) + h + 2)
               for i in range(model["lstm_layers"]))
    d = model["dense_units"]
    return conv + lstm + (2 * h * d + d + d + 1 if d else 2 * h + 1)


def scoring_values(model: dict, n_features: int, window: int, batch: int) -> int:
    """An upper estimate of the float32 values alive while one batch is scored: the windows
    (copied and padded), every conv block's output and the LSTM's gate projections."""
    rows = batch + ROW_PAD
    conv = 3 * model["filters"] * window * model["conv_layers"]
    lstm = 10 * model["lstm_units"] * window * model["lstm_layers"]
    return rows * (3 * window * n_features + conv + lstm)


def memory_budget() -> int:
    """Bytes of memory available now (MemAvailable; the physical size where it is unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _fits(ok: bool, what: str) -> None:
    if not ok:
        raise TooBig(what)
