"""Windows of consecutive flows, and the one check of a window length against the data.

The sample for flow i is flows i-T+1..i of the same split (T = `data.window`); the first T-1
flows of a split are zero-padded, so every flow gets exactly one prediction. A window is a
zero-copy strided view over one padded copy of the split.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ids.data.flows import DataError


def check_window(T: int, sizes: dict[str, int] | None = None) -> int:
    """T as an int; DataError if T < 1 or longer than the smallest of `sizes` ({split: flows})."""
    T = int(T)
    if T < 1:
        raise DataError(f"data.window must be >= 1, got {T}")
    if sizes:
        name = min(sizes, key=sizes.get)
        if T > sizes[name]:
            where = f"the {name} split" if name else "the split"
            raise DataError(f"data.window={T} is longer than {where} ({sizes[name]} flows): "
                            "lower data.window or use more flows")
    return T


def windows(X: np.ndarray, T: int) -> np.ndarray:
    """(n, T, F) read-only view: windows(X, T)[i] == X[i-T+1..i], zero rows before index 0."""
    T = check_window(T)
    n, f = X.shape
    padded = np.zeros((n + T - 1, f), dtype=X.dtype)
    padded[T - 1:] = X
    if len(padded) < T:  # no flows at all
        return np.zeros((0, T, f), X.dtype)
    return sliding_window_view(padded, T, axis=0).transpose(0, 2, 1)
