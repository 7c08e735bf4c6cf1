"""What a model needs against what this machine has: a model file's sizes are checked here
before anything is built (`ids.artifact.modelfile.check_meta`), and a training run's before its
data is prepared (`check_training`, the same rule with the training batch's gradients and
Adam's state added), so a `window` of 50,000 or a billion LSTM units is a one-line error naming
the memory it would need, not a 21 GB (or 298 GiB) allocation.

The figures are upper estimates from the layer shapes of `ids.model.network` (float32), not a
second implementation of it: they only have to be large enough, and the error says they are
estimates. They are closed forms: a billion layers costs no more to estimate than one.
"""

from __future__ import annotations

from ids.config import ConfigError, memory_budget
from ids.model.network import ROW_PAD, sequence_lengths

MAX_STEPS = 1024  # the unrolled BiLSTM compiles one cell per step of its sequence

__all__ = ["MAX_STEPS", "TooBig", "check_size", "check_training", "memory_budget", "params",
           "scoring_values"]


class TooBig(ValueError):
    """A model whose network or scoring batch would not fit here; the message says how much."""


def check_size(model: dict, n_features: int, window: int, batch: int) -> None:
    """TooBig unless the network and one scoring batch fit in the memory available here (an
    estimate of parameters and activations, float32), and the unrolled BiLSTM's sequence is
    short enough to compile."""
    members = int(model.get("members", 1))  # a bag scores every member on each batch
    need = 4 * members * (2 * params(model, n_features)
                          + scoring_values(model, n_features, window, batch))
    have = memory_budget()
    _fits(need <= have, f"scoring with 'window' {window}, 'eval_batch_size' {batch} and these "
          f"layer sizes would need about {need / 1e9:.1f} GB of memory, more than the "
          f"{have / 1e9:.1f} GB available here; the file is damaged, or the model is too big "
          "for this machine")
    _fits_steps(model, window)


def check_training(cfg, n_features: int = 1) -> None:
    """ConfigError naming the settings when training `cfg` would not fit in the memory
    available here: weights, gradients and Adam's two moments (4 x the parameters), and the
    larger of a training batch (its activations and their gradients: 2 x a scoring batch) and
    a scoring batch of `trainer.eval_batch_size`. `n_features`: of the prepared data (before
    it is prepared: 1, which makes the estimate a lower bound)."""
    model, window = dict(cfg.model), int(cfg.data.window)
    t = cfg.trainer
    batches = max(2 * scoring_values(model, n_features, window, int(t.batch_size)),
                  scoring_values(model, n_features, window, int(t.eval_batch_size)))
    need, have = 4 * (4 * params(model, n_features) + batches), memory_budget()
    sizes = ", ".join(f"model.{k}={model[k]}" for k in ("conv_layers", "filters", "kernel_size",
                                                        "lstm_units", "lstm_layers",
                                                        "dense_units"))
    if need > have:
        raise ConfigError(
            f"training with {sizes}, data.window={window}, trainer.batch_size={t.batch_size} "
            f"and trainer.eval_batch_size={t.eval_batch_size} would need about "
            f"{need / 2**30:,.1f} GiB of memory (an estimate), more than the "
            f"{have / 2**30:,.1f} GiB available here; use smaller layers, a shorter window or "
            "smaller batches")
    try:
        _fits_steps(model, window)
    except TooBig as exc:
        raise ConfigError(f"data.window={window}: {exc} (model.lstm_impl=fused has no such "
                          "limit)") from exc


def params(model: dict, n_features: int) -> int:
    """An upper estimate of the network's parameter count (`ids.model.network`)."""
    c, k, h = model["filters"], model["kernel_size"], model["lstm_units"]
    layers, lstm_layers = model["conv_layers"], model["lstm_layers"]
    conv = (n_features * c * k + c) + (layers - 1) * (c * c * k + c) if layers else 0
    lstm_in = c if layers else n_features
    lstm = 8 * h * (lstm_in + h + 2) + (lstm_layers - 1) * 8 * h * (3 * h + 2)
    d = model["dense_units"]
    return conv + lstm + (2 * h * d + d + d + 1 if d else 2 * h + 1)


def scoring_values(model: dict, n_features: int, window: int, batch: int) -> int:
    """An upper estimate of the float32 values alive while one batch is scored: the windows
    (copied and padded), every conv block's output and the LSTM's gate projections."""
    rows = batch + ROW_PAD
    conv = 3 * model["filters"] * window * model["conv_layers"]
    lstm = 10 * model["lstm_units"] * window * model["lstm_layers"]
    return rows * (3 * window * n_features + conv + lstm)


def _fits_steps(model: dict, window: int) -> None:
    steps = (sequence_lengths(window, model["conv_layers"], model["pool_size"]) or [window])[-1]
    _fits(model["lstm_impl"] != "unrolled" or steps <= MAX_STEPS, f"'window' {window} leaves a "
          f"sequence of {steps} steps for the unrolled BiLSTM; at most {MAX_STEPS} compile")


def _fits(ok: bool, what: str) -> None:
    if not ok:
        raise TooBig(what)
