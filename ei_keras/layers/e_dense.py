"""EDense: an excitatory-only dense layer (positive weights, no inhibitory population)."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers import _dale


@keras.saving.register_keras_serializable(package="ei_keras")
class EDense(keras.layers.Layer):
    """Excitatory-only dense layer: ``z = x W_EE^T + b`` with ``W_EE >= 0``.

    Same initialisation as :class:`EIDense`'s ``W_EE``. Without inhibition ``z`` is not
    centred, so the paper uses it only followed by LayerNorm (Fig. 2b, preset ``e_ln``).

    Args:
        units: number of output units (>= 1).
        activation: Keras activation applied to ``z`` (default: none).
        init_distribution: ``"exponential"`` (paper) or ``"lognormal"``.
        seed: integer seed of the NumPy initialisation (same weights on every backend).
        **kwargs: base ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> from ei_keras.layers import EDense
    >>> EDense(16, seed=0)(np.ones((2, 32), "float32")).shape
    (2, 16)

    Reference:
        Eyono et al. (2026), Fig. 2b.
    """

    def __init__(self, units: int, activation=None, init_distribution: str = "exponential",
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = _dale.check_units(units)
        self.activation = keras.activations.get(activation)
        self.init_distribution = _dale.check_distribution(init_distribution)
        self.seed = seed

    def build(self, input_shape):
        d = _dale.input_width(self, input_shape)
        _dale.add_excitatory_weights(self, d, _dale.build_seed(self))
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: d})

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        return self.activation(_dale.dense_t(x, self.W_EE) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "init_distribution": self.init_distribution,
            "seed": self.seed,
        }
