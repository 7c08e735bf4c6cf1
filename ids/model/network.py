"""The CNN-BiLSTM: convolutions find local patterns across neighbouring flows, a BiLSTM reads
the (pooled) sequence both ways, and its final states give one attack logit per window.

MindSpore traps handled here (see ../shared/docs/stack-notes.md): `nn.Conv1d` wants (N, C, L)
and has no bias by default; `nn.MaxPool1d` has stride 1 by default; `nn.LSTM` is called as
`lstm(x)` only; in graph mode every Cell method's first parameter must be `self`.

CPU speed: `ids/__init__.py` caps oneDNN at AVX2 (see there): about 6x faster Conv1d here. The
BiLSTM is `ids.model.lstm.UnrolledBiLSTM` by default (same parameters as `nn.LSTM`, faster on CPU);
`model.lstm_impl=fused` builds `nn.LSTM` instead (the bench compares both).
"""

from __future__ import annotations

from typing import Any

from mindspore import nn, ops

from ids.model.lstm import UnrolledBiLSTM

LSTM_KINDS = ("unrolled", "fused")
ROW_PAD = 16  # zero windows appended to a batch when scoring (see CNNBiLSTM.construct)


def sequence_lengths(window: int, conv_layers: int, pool_size: int) -> list[int]:
    """Sequence length after each conv block (input `window`).

    A block pools (kernel = stride = `pool_size`, "valid": L -> L // pool_size) only when its
    input is at least `pool_size` long, so the length never drops below 1; otherwise it keeps
    the length. `pool_size == 1` never changes it.
    """
    if window < 1 or conv_layers < 0 or pool_size < 1:
        raise ValueError(
            "window >= 1, conv_layers >= 0 and pool_size >= 1 must hold, but got "
            f"(window={window}, conv_layers={conv_layers}, pool_size={pool_size})"
        )
    lengths, length = [], window
    for _ in range(conv_layers):
        if length >= pool_size:
            length //= pool_size
        lengths.append(length)
    return lengths


class ConvBlock(nn.Cell):
    """Conv1d("same") + ReLU + optional MaxPool1d + Dropout on (N, C, L)."""

    def __init__(self, in_channels: int, filters: int, kernel_size: int, pool_size: int,
                 pool: bool, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, kernel_size, pad_mode="same", has_bias=True)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(kernel_size=pool_size, stride=pool_size) if pool else None
        self.dropout = nn.Dropout(p=dropout)

    def construct(self, x):
        x = self.relu(self.conv(x))  # (N, C_in, L) -> (N, filters, L)
        if self.pool is not None:
            x = self.pool(x)  # (N, filters, L) -> (N, filters, L // pool_size)
        return self.dropout(x)


class CNNBiLSTM(nn.Cell):
    """CNN-BiLSTM binary classifier over windows of flows: (N, T, F) float32 -> (N,) logits.

    Any window length works, including T=1: whether each conv block pools is decided here,
    from `window`, with `sequence_lengths` (a block whose input is shorter than `pool_size`
    skips its pooling), and so is the unrolled BiLSTM's length: build one model per window
    length (the weights do not depend on it, so they load into a model of any window).
    """

    def __init__(self, n_features: int, window: int, conv_layers: int = 2, filters: int = 64,
                 kernel_size: int = 3, pool_size: int = 2, dropout: float = 0.2,
                 lstm_units: int = 64, lstm_layers: int = 1, dense_units: int = 0,
                 lstm: str = "unrolled") -> None:
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features >= 1 must hold, but got {n_features}")
        if lstm not in LSTM_KINDS:
            raise ValueError(f"lstm must be one of {LSTM_KINDS}, but got {lstm!r}")
        self.lengths = sequence_lengths(window, conv_layers, pool_size)
        blocks, in_channels, length = [], n_features, window
        for out_length in self.lengths:
            pool = pool_size > 1 and out_length < length
            blocks.append(ConvBlock(in_channels, filters, kernel_size, pool_size, pool, dropout))
            in_channels, length = filters, out_length
        self.conv_layers = conv_layers
        self.blocks = nn.SequentialCell(blocks) if blocks else None
        self.unrolled = lstm == "unrolled"
        if self.unrolled:
            self.lstm = UnrolledBiLSTM(in_channels, lstm_units, lstm_layers, length)
        else:
            self.lstm = nn.LSTM(in_channels, lstm_units, num_layers=lstm_layers,
                                batch_first=True, bidirectional=True)
        head: list[nn.Cell] = []
        head_in = 2 * lstm_units
        if dense_units > 0:
            head += [nn.Dense(head_in, dense_units), nn.ReLU()]
            head_in = dense_units
        head.append(nn.Dense(head_in, 1))
        self.head = nn.SequentialCell(head)

    def features(self, x):
        """(N, T, F) -> (N, 2 * lstm_units): last layer's final forward and backward states."""
        if self.blocks is not None:
            x = ops.transpose(x, (0, 2, 1))  # (N, T, F) -> (N, F, T): Conv1d convolves over T
            x = self.blocks(x)  # (N, F, T) -> (N, filters, L)
            x = ops.transpose(x, (0, 2, 1))  # (N, filters, L) -> (N, L, filters)
        if self.unrolled:
            return self.lstm(x)  # (N, L, C) -> (N, 2 * lstm_units)
        _, (h_n, _) = self.lstm(x)  # h_n: (2 * lstm_layers, N, lstm_units)
        return ops.concat((h_n[-2], h_n[-1]), axis=1)  # (N, 2 * lstm_units)

    def construct(self, x):
        if self.training:
            return self.head(self.features(x)).squeeze(-1)  # (N, T, F) -> (N,)
        # Scoring: ROW_PAD zero windows go after the batch and are dropped again. MindSpore's CPU
        # MatMul computes the last rows of its input (a tail shorter than its row tile) with
        # another kernel, so a window's score would depend on its place in the batch; with the
        # padding every real row is in a full tile, and a flow scores the same bits whether it
        # is scored alone, in a chunk of a stream or in a whole file.
        n = x.shape[0]
        x = ops.concat((x, ops.zeros((ROW_PAD, *x.shape[1:]), x.dtype)), axis=0)
        return self.head(self.features(x)).squeeze(-1)[:n]


class Bag(nn.Cell):
    """The fold models of a cross-validated run as one network: (N, T, F) -> (N,) logits of
    the members' mean probability, so everything that scores a CNNBiLSTM (sigmoid of its
    output) scores the bag's mean probability. Parameters are named `members.<i>.<name>`."""

    def __init__(self, members: list[nn.Cell]) -> None:
        super().__init__()
        self.members = nn.CellList(members)
        self.count = len(members)

    def construct(self, x):
        p = ops.sigmoid(self.members[0](x))
        for i in range(1, self.count):
            p = p + ops.sigmoid(self.members[i](x))
        p = ops.clip_by_value(p / self.count, 1e-7, 1 - 1e-7)
        return ops.log(p) - ops.log(1 - p)


def build_model(n_features: int, window: int, model_cfg: Any) -> nn.Cell:
    """A `CNNBiLSTM` from a ModelConfig-like object (DictConfig or dataclass); a config without
    `lstm_impl` (a model saved before it existed) gets the default. A model file's settings
    with `members` = k > 1 (a cross-validated run's bag) build a `Bag` of k of them."""
    members = int(getattr(model_cfg, "members", 1) or 1)
    if members > 1:
        return Bag([_network(n_features, window, model_cfg) for _ in range(members)])
    return _network(n_features, window, model_cfg)


def _network(n_features: int, window: int, model_cfg: Any) -> CNNBiLSTM:
    return CNNBiLSTM(
        n_features=int(n_features),
        window=int(window),
        conv_layers=int(model_cfg.conv_layers),
        filters=int(model_cfg.filters),
        kernel_size=int(model_cfg.kernel_size),
        pool_size=int(model_cfg.pool_size),
        dropout=float(model_cfg.dropout),
        lstm_units=int(model_cfg.lstm_units),
        lstm_layers=int(model_cfg.lstm_layers),
        dense_units=int(model_cfg.dense_units),
        lstm=str(getattr(model_cfg, "lstm_impl", "unrolled")),
    )

