"""EDense: an excitatory-only dense layer (positive weights, no inhibitory population)."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers._dale import DaleDense


@keras.saving.register_keras_serializable(package="ei_keras")
class EDense(DaleDense):
    """Excitatory-only dense layer: `z = x W_EE^T + b` with `W_EE >= 0`.

    Same initialisation as `EIDense`'s `W_EE`. Without inhibition `z` is not
    centred, so the paper uses it only followed by LayerNorm (Fig. 2b, preset `e_ln`).

    Args:
        units: number of output units (>= 1).
        activation: Keras activation applied to `z` (default: none).
        use_bias: whether the layer has the bias `b` (default True).
        kernel_initializer: initializer of `W_EE`, called with Dense's kernel shape
            `(d, units)`; its values must be >= 0 (default: the paper's `DaleExcitatory`).
        bias_initializer: as in `keras.layers.Dense` (default zeros).
        kernel_regularizer: regularizer of `W_EE`.
        bias_regularizer: regularizer of `b`.
        kernel_constraint: applied to `W_EE` before Dale's sign (`NonNeg`), which always
            holds.
        bias_constraint: constraint of `b`.
        init_distribution: `"exponential"` (paper) or `"lognormal"`.
        seed: integer seed of the NumPy initialisation (same weights on every backend).
        split_bias: the bias as `bias_positive - bias_negative`, two non-negative variables
            (for sign-preserving exponentiated-gradient training).
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape:
        N-D tensor with shape `(batch_size, ..., d)`, like `keras.layers.Dense`'s input:
        every leading position is a sample.

    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`.

    Call arguments:
        - `inputs`: the input tensor.

    Example:

    >>> import numpy as np
    >>> from ei_keras.layers import EDense
    >>> EDense(16, seed=0)(np.ones((2, 32), "float32")).shape
    (2, 16)

    Reference:
        Eyono et al. (2026), Fig. 2b.
    """

    def build(self, input_shape):
        self.add_excitatory_weights(self.input_width(input_shape), self.build_seed())

    def raw_preactivation(self, inputs):
        """The pre-activation `x W_EE^T + b` (before `activation`): what
        `ei_keras.measures` compares with LayerNorm."""
        return self.excitatory_drive(ops.cast(inputs, self.compute_dtype))

    def call(self, inputs):
        return self.activation(self.raw_preactivation(inputs))
