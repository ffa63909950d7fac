"""ErrorNormalization: the error-normalization op of `ei_keras.ops` as a Keras layer."""

from __future__ import annotations

import keras

from ei_keras import roles
from ei_keras.ops import error_normalization as _errnorm


def add_lateral_weights(layer, units: int, seed: int):
    """Fixed lateral-inhibition pooling weights: a non-trainable variable, saved with the model."""
    w0 = _errnorm.lateral_pooling_weights(units, seed)
    return roles.declare(layer.add_weight(
        name="lateral_weights",
        shape=(units,),
        initializer=lambda shape, dtype=None: keras.ops.cast(w0, dtype or "float32"),
        trainable=False,
    ), roles.NORMALIZATION)


@keras.saving.register_keras_serializable(package="ei_keras")
class ErrorNormalization(keras.layers.Layer):
    """Identity forward; normalizes the error signal in the backward pass (SPEC section 2).

    Args:
        mode: `"full"` (GradNorm: LayerNorm's backward), `"center"`, `"scale"`,
            `"decorrelate"`, `"lateral"` (fixed random positive pooling weights, Theorem 1)
            or `"none"`.
        epsilon: added to the per-sample variance.
        gradnorm_on: `"y"` (default: `full` is LayerNorm's backward) or `"z"` (the
            paper code's formula, `z` in place of `y` in `full`/`decorrelate`).
        seed: seed of the lateral pooling weights (`"lateral"` only); they are drawn once,
            stored as a non-trainable variable and saved with the model.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape:
        Any tensor `(batch_size, ..., units)`; the error is normalized over the last axis.

    Output shape:
        Same as the input (the forward pass is the identity).

    Call arguments:
        - `inputs`: the input tensor.

    Example:

    >>> import numpy as np
    >>> from ei_keras.layers import ErrorNormalization
    >>> x = np.random.rand(4, 10).astype("float32")
    >>> bool(np.allclose(ErrorNormalization("full")(x), x))
    True

    Reference:
        Eyono et al. (2026), "Error-signal normalization" and Theorem 1.
    """

    def __init__(self, mode: str = "full", epsilon: float = 1e-5, seed: int | None = None,
                 gradnorm_on: str = "y", **kwargs):
        super().__init__(**kwargs)
        self.mode = _errnorm.validate_mode(mode)
        if not epsilon > 0:
            raise ValueError(f"Expected `epsilon` > 0. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.seed = seed
        self.gradnorm_on = _errnorm.validate_gradnorm_on(gradnorm_on)
        self.lateral_weights = None

    def build(self, input_shape):
        if self.mode == "lateral":
            from ei_keras.initializers import _seed_or_draw

            self.lateral_weights = add_lateral_weights(
                self, int(input_shape[-1]), _seed_or_draw(self.seed)
            )

    def call(self, inputs):
        return _errnorm.normalize_error(inputs, self.mode, self.lateral_weights, self.epsilon,
                                        self.gradnorm_on)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "epsilon": self.epsilon,
                "seed": self.seed, "gradnorm_on": self.gradnorm_on}
