"""EIDense: a Dale's-principle dense layer (Cornford et al. 2021, "DANN"), SPEC section 1."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers import _dale


@keras.saving.register_keras_serializable(package="ei_keras")
class EIDense(keras.layers.Layer):
    """Dense layer with separate excitatory and inhibitory populations (Dale's principle).

    ``z = x W_EE^T - (x W_IE^T) W_EI^T + b``, ``h = activation(z)``. ``W_EE`` ``(units, d)``,
    ``W_IE`` ``(ni, d)`` and ``W_EI`` ``(units, ni)`` stay >= 0 (``keras.constraints.NonNeg``,
    applied by the optimizer after every update); ``b`` is free. At initialisation every row of
    ``W_IE`` is the mean row of ``W_EE`` and rows of ``W_EI`` sum to 1, so the inhibitory path
    subtracts the mean excitatory drive and ``z`` starts near-centred.

    Args:
        units: number of excitatory output units ``ne`` (>= 1).
        inhibitory_units: ``ni``; default ``max(1, floor(0.1 * units))``.
        activation: Keras activation applied to ``z`` (default: none).
        init_distribution: ``"exponential"`` (paper) or ``"lognormal"`` (reference code option).
        trainable_ei: whether ``W_EI`` learns (default True).
        seed: integer seed of the NumPy initialisation (same weights on every backend).
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Example:

    >>> import numpy as np, keras
    >>> from ei_keras.layers import EIDense
    >>> layer = EIDense(32, seed=0)
    >>> layer(np.ones((2, 64), "float32")).shape
    (2, 32)

    Reference:
        Cornford et al. (2021), "Learning to live with Dale's principle: ANNs with separate
        excitatory and inhibitory units"; Eyono et al. (2026), Methods.
    """

    def __init__(
        self,
        units: int,
        inhibitory_units: int | None = None,
        activation=None,
        init_distribution: str = "exponential",
        trainable_ei: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _dale.check_units(units)
        self.inhibitory_units = (
            _dale.default_inhibitory_units(self.units)
            if inhibitory_units is None
            else _dale.check_units(inhibitory_units, "inhibitory_units")
        )
        self.activation = keras.activations.get(activation)
        self.init_distribution = _dale.check_distribution(init_distribution)
        self.trainable_ei = bool(trainable_ei)
        self.seed = seed

    def build(self, input_shape):
        d = _dale.input_width(self, input_shape)
        seed = _dale.build_seed(self)
        w_ee = _dale.add_excitatory_weights(self, d, seed)
        _dale.add_inhibitory_weights(self, w_ee, seed, self.trainable_ei)
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: d})

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        inhibition = _dale.dense_t(_dale.dense_t(x, self.W_IE), self.W_EI)
        z = _dale.dense_t(x, self.W_EE) - inhibition + self.bias
        return self.activation(z)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "inhibitory_units": self.inhibitory_units,
            "activation": keras.activations.serialize(self.activation),
            "init_distribution": self.init_distribution,
            "trainable_ei": self.trainable_ei,
            "seed": self.seed,
        }
