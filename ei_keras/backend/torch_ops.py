"""Small ops of the Dale layers on eager PyTorch: one kernel call instead of several
`keras.ops` dispatches (each converts and checks its arguments on every step)."""

from __future__ import annotations

import keras
import torch

from ei_keras.backend import generic_ops


def dense_t(x, w):
    """`x @ w.T` (`torch.nn.functional.linear`: the same `mm` on a transposed view)."""
    if isinstance(w, keras.Variable):
        w = w.value
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)) or x.dtype != w.dtype:
        return generic_ops.dense_t(x, w)
    return torch.nn.functional.linear(x, w)
