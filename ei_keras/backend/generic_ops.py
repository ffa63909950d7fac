"""Small ops of the Dale layers, through `keras.ops` (TensorFlow, JAX: traced once)."""

from __future__ import annotations

from keras import ops


def dense_t(x, w):
    """`x @ w.T` for weights stored in the paper's (out, in) orientation."""
    return ops.matmul(x, ops.transpose(w))


#: Keras' own (TensorFlow, JAX).
custom_gradient = ops.custom_gradient
