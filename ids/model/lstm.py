"""A bidirectional LSTM unrolled over its (short, fixed) sequence: the same network as
`mindspore.nn.LSTM(batch_first=True, bidirectional=True)`, same parameters and names
(`weight_ih_l0`, `weight_hh_l0_reverse`, ...), so checkpoints load in either, but built from
MatMul and element-wise ops instead of the fused CPU `LSTM` kernel.

Why: on CPU, `nn.LSTM` concatenates its four weight tensors into one flat tensor on every call,
reverses the input and output for the backward direction, and its gradient (`LSTMGrad`) then
goes back through `StridedSlice` for every piece. In the default model that was about a quarter
of a training step (`python -m ids.tools.bench --sections profile`). The sequence after the conv
blocks is short (2 steps for window 10), so unrolling costs little to compile: one MatMul
projects every step of both directions at once, then each step adds `h @ W_hh` and the gates.

Gate order i, f, g, o (input, forget, cell, output), as in `nn.LSTM`; initial states are zero.
"""

from __future__ import annotations

import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops


def _uniform(shape: tuple[int, ...], bound: float) -> Tensor:
    return Tensor(np.random.uniform(-bound, bound, shape).astype(np.float32))


class UnrolledBiLSTM(nn.Cell):
    """(N, L, input_size) -> (N, 2 * hidden_size): the last layer's final forward and backward
    hidden states (what `h_n[-2]` and `h_n[-1]` of `nn.LSTM` hold), for a sequence of length
    `seq_len` fixed at construction."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, seq_len: int) -> None:
        super().__init__()
        if min(input_size, hidden_size, num_layers, seq_len) < 1:
            raise ValueError("input_size, hidden_size, num_layers and seq_len must be >= 1, but "
                             f"got ({input_size}, {hidden_size}, {num_layers}, {seq_len})")
        self.hidden, self.num_layers, self.seq_len = hidden_size, num_layers, seq_len
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        gates = 4 * hidden_size
        for layer in range(num_layers):  # nn.LSTM's names, shapes and drawing order: the
            size = input_size if layer == 0 else 2 * hidden_size  # same seed, the same weights
            for suffix in ("", "_reverse"):
                for kind, shape in (("weight_ih", (gates, size)),
                                    ("weight_hh", (gates, hidden_size)),
                                    ("bias_ih", (gates,)), ("bias_hh", (gates,))):
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(_uniform(shape, bound), name=name))
        self.w_ih = [(getattr(self, f"weight_ih_l{i}"), getattr(self, f"weight_ih_l{i}_reverse"))
                     for i in range(num_layers)]
        self.matmul_t = ops.MatMul(transpose_b=True)  # a @ b.T without a transposed copy
        self.w_hh = [(getattr(self, f"weight_hh_l{i}"), getattr(self, f"weight_hh_l{i}_reverse"))
                     for i in range(num_layers)]
        self.b = [(getattr(self, f"bias_ih_l{i}"), getattr(self, f"bias_hh_l{i}"),
                   getattr(self, f"bias_ih_l{i}_reverse"), getattr(self, f"bias_hh_l{i}_reverse"))
                  for i in range(num_layers)]

    def _cell(self, g, c):
        """One step from the summed gate inputs g (N, 4H) and the cell state c (or None = 0)."""
        i, f, gg, o = ops.split(g, self.hidden, axis=1)
        c_new = ops.sigmoid(i) * ops.tanh(gg)
        if c is not None:
            c_new = c_new + ops.sigmoid(f) * c
        return ops.sigmoid(o) * ops.tanh(c_new), c_new

    def _direction(self, steps, w_hh):
        """Run one direction over `steps` (per-step gate inputs, in processing order)."""
        h, c, out = None, None, []
        for g in steps:
            if h is not None:
                g = g + self.matmul_t(h, w_hh)
            h, c = self._cell(g, c)
            out.append(h)
        return out

    def construct(self, x):
        n_steps = self.seq_len
        if x.shape[1] != n_steps:
            raise ValueError(f"UnrolledBiLSTM was built for sequences of {n_steps} steps, "
                             f"but got {x.shape[1]}: build the model for this window")
        h_f = h_b = x  # graph mode: a name set in the loop must exist before it
        for layer in range(self.num_layers):
            n, length, size = x.shape
            rows = ops.reshape(ops.transpose(x, (1, 0, 2)), (length * n, size))  # step-major
            w_f, w_b = self.w_ih[layer]
            bi_f, bh_f, bi_b, bh_b = self.b[layer]
            # every step's input projection in one MatMul per direction, split by step (rows)
            steps_f = ops.split(self.matmul_t(rows, w_f) + (bi_f + bh_f), n, axis=0)
            steps_b = ops.split(self.matmul_t(rows, w_b) + (bi_b + bh_b), n, axis=0)
            fwd = self._direction(list(steps_f), self.w_hh[layer][0])
            bwd = self._direction(list(steps_b)[::-1], self.w_hh[layer][1])
            h_f, h_b = fwd[-1], bwd[-1]
            if layer + 1 < self.num_layers:  # next layer's input: both directions per step
                x = ops.stack([ops.concat((fwd[t], bwd[n_steps - 1 - t]), axis=1)
                               for t in range(n_steps)], axis=1)
        return ops.concat((h_f, h_b), axis=1)
