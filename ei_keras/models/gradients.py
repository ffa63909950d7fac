"""Gradients of an arbitrary loss with respect to Keras variables, in each backend's idiom.

Training itself runs through Keras' trainers; this helper serves the measures (gradient
alignment with LayerNorm) and the tests that check the trainer's updates against independently
computed gradients. It is the only backend-specific code of the package, chosen once at import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

_BACKEND = keras.backend.backend()


def gradients(loss_fn: Callable[[], object], variables: Sequence) -> tuple[float, list]:
    """`(loss, [d loss / d v for v in variables])` as NumPy values.

    Args:
        loss_fn: a function of no arguments that computes a scalar loss from the current values
            of `variables` (it may call layers and models).
        variables: Keras variables.

    Returns:
        The loss as a float and one NumPy array per variable (zeros where the loss does not
        depend on it).
    """
    variables = list(variables)
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            for v in variables:
                tape.watch(v.value)
            loss = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
    elif _BACKEND == "jax":
        import jax

        def pure(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        loss, grads = jax.value_and_grad(pure)([v.value for v in variables])
    elif _BACKEND == "torch":
        import torch

        values = [v.value for v in variables]
        loss = loss_fn()
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            grads = torch.autograd.grad(loss, values, allow_unused=True)
        else:  # the loss reaches none of the variables (e.g. only stop-gradient paths)
            grads = [None] * len(values)
    else:  # pragma: no cover - numpy/openvino backends cannot differentiate
        raise NotImplementedError(f"Gradients are not available on the {_BACKEND!r} backend.")
    out = [
        np.zeros(tuple(v.shape), "float32") if g is None else keras.ops.convert_to_numpy(g)
        for v, g in zip(variables, grads)
    ]
    return float(keras.ops.convert_to_numpy(loss)), out
