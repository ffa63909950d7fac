"""EIDense: a Dale's-principle dense layer (Cornford et al. 2021, "DANN"), SPEC section 1."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers._dale import DaleDense, dense_t


@keras.saving.register_keras_serializable(package="ei_keras")
class EIDense(DaleDense):
    """Dense layer with separate excitatory and inhibitory populations (Dale's principle).

    `z = x W_EE^T - (x W_IE^T) W_EI^T + b`, `h = activation(z)`. `W_EE` `(units, d)`,
    `W_IE` `(ni, d)` and `W_EI` `(units, ni)` stay >= 0 (`keras.constraints.NonNeg`,
    applied by the optimizer after every update); `b` is free. At initialisation every row of
    `W_IE` is the mean row of `W_EE` and rows of `W_EI` sum to 1, so the inhibitory path
    subtracts the mean excitatory drive and `z` starts near-centred.

    Takes `keras.layers.Dense`'s arguments and `(..., d)` inputs. Dale's sign holds
    whatever is passed: a `kernel_constraint` or `inhibitory_constraint` is applied first
    and `NonNeg` after it; a `kernel_initializer` must draw values >= 0.

    Args:
        units: number of excitatory output units `ne` (>= 1).
        activation: Keras activation applied to `z` (default: none).
        use_bias: as in
            `keras.layers.Dense`, in Dense's order (`kernel_*` act on `W_EE`;
            `kernel_initializer` is called with Dense's kernel shape `(d, units)` and must
            draw values >= 0; default: the paper's `DaleExcitatory`; `W_IE` and `W_EI`
            follow from it).
        kernel_initializer: as `use_bias` says.
        bias_initializer: as `use_bias` says.
        kernel_regularizer: as `use_bias` says.
        bias_regularizer: as `use_bias` says.
        activity_regularizer: as `use_bias` says.
        kernel_constraint: as `use_bias` says.
        bias_constraint: as `use_bias` says.
        inhibitory_units: keyword-only, `ni`; default `max(1, floor(0.1 * units))`.
        init_distribution: keyword-only, `"exponential"` (paper) or `"lognormal"`
            (reference code option).
        trainable_ei: keyword-only, whether `W_EI` learns (default True).
        seed: keyword-only, integer seed of the NumPy initialisation (same weights on every
            backend).
        inhibitory_regularizer: keyword-only, regularizer of `W_IE` and `W_EI`.
        inhibitory_constraint: keyword-only, constraint of `W_IE` and `W_EI`, applied
            before Dale's sign.
        **kwargs: `split_bias` (keyword-only: the bias as two non-negative parts, for EG
            training) and base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Attributes:
        kernel: read-only, the effective kernel `(W_EE - W_EI W_IE)^T` in Dense's
            `(d, units)` orientation: `x @ layer.kernel + layer.bias` is the
            pre-activation `z`.

    Input shape:
        N-D tensor with shape `(batch_size, ..., d)`, like `keras.layers.Dense`'s input:
        every leading position is a sample.

    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`.

    Call arguments:
        - `inputs`: the input tensor.

    Example: a Dale layer in a Sequential model on `(batch, 7, 28)` inputs, with L2 on
    `W_EE` and no bias.

    >>> import numpy as np, keras
    >>> from ei_keras.layers import EIDense
    >>> model = keras.Sequential([keras.Input((7, 28)),
    ...                           EIDense(64, use_bias=False, kernel_regularizer="l2", seed=0),
    ...                           keras.layers.Flatten(), keras.layers.Dense(10)])
    >>> model.output_shape
    (None, 10)
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x, y = np.random.rand(32, 7, 28).astype("float32"), np.arange(32) % 10
    >>> loss = model.fit(x, y, epochs=2, verbose=0).history["loss"]
    >>> bool(loss[1] < loss[0])
    True

    Reference:
        Cornford et al. (2021), "Learning to live with Dale's principle: ANNs with separate
        excitatory and inhibitory units"; Eyono et al. (2026), Methods.
    """

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        *,
        inhibitory_units: int | None = None,
        init_distribution: str = "exponential",
        trainable_ei: bool = True,
        seed: int | None = None,
        inhibitory_regularizer=None,
        inhibitory_constraint=None,
        **kwargs,
    ):
        super().__init__(units, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint,
                         init_distribution=init_distribution, seed=seed, **kwargs)
        self.init_inhibition(inhibitory_units, trainable_ei, inhibitory_regularizer,
                             inhibitory_constraint)

    def build(self, input_shape):
        seed = self.build_seed()
        w_ee = self.add_excitatory_weights(self.input_width(input_shape), seed)
        self.add_inhibitory_weights(w_ee, seed)

    def raw_preactivation(self, inputs):
        """The pre-activation `x W_EE^T - (x W_IE^T) W_EI^T + b` (before `activation`):
        what `ei_keras.measures` compares with LayerNorm."""
        x = ops.cast(inputs, self.compute_dtype)
        z = self.project(x, self.W_EE) - dense_t(self.project(x, self.W_IE), self.W_EI)
        b = self.bias_term()
        return z if b is None else z + b

    def call(self, inputs):
        return self.activation(self.raw_preactivation(inputs))
