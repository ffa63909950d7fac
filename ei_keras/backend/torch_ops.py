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


class _CustomGradient(torch.autograd.Function):
    """`keras.ops.custom_gradient`'s contract as a `torch.autograd.Function` that
    `torch.func` can transform: the forward and `setup_context` are separate and the vmap
    rule is generated (Keras' own keeps the gradient closure from the forward in `ctx`, which
    `torch.func` rejects). The backward calls the forward again for its gradient closure: the
    functions it wraps return a copy of their input, so that costs one copy."""

    generate_vmap_rule = True

    @staticmethod
    def forward(fn, *args):
        return fn(*args)[0]

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.fn = inputs[0]
        ctx.save_for_backward(*inputs[1:])

    @staticmethod
    def backward(ctx, upstream):
        args = ctx.saved_tensors
        grads = ctx.fn(*args)[1](*args, upstream=upstream)
        return (None, *(grads if isinstance(grads, tuple) else (grads,)))


def custom_gradient(fn):
    """`keras.ops.custom_gradient` for tensors given positionally (`fn(*tensors)` returns
    `(output, grad)` with `grad(*args, upstream=...)` giving one gradient per tensor)."""

    def wrapped(*args):
        return _CustomGradient.apply(fn, *args)

    return wrapped
