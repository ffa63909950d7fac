"""EIConv2D: a Dale's-principle 2-D convolution (DANN, Cornford et al. 2021, on patches)."""

from __future__ import annotations

import keras

from ei_keras.layers._dale_conv import DaleConv2D
from ei_keras.layers.ei_dense import EIDense


@keras.saving.register_keras_serializable(package="ei_keras")
class EIConv2D(DaleConv2D, EIDense):
    """2-D convolution with separate excitatory and inhibitory populations (Dale's principle).

    `EIDense` applied to every `(kh, kw, in_channels)` patch `x_p` of the input,
    flattened to `d = kh * kw * in_channels` values: `z = x_p W_EE^T - (x_p W_IE^T) W_EI^T
    + b` at every output location. The excitatory kernel `W_EE` `(filters, d)` and the
    inhibitory kernel `W_IE` `(ni, d)` are convolutions; `W_EI` `(filters, ni)` mixes the
    `ni` inhibitory channels into each excitatory channel at the same location. All three
    stay >= 0; `b` is free.

    Balanced initialisation, per patch: `W_EE ~ Exponential(sigma)` with the fan-in `d`,
    every row of `W_IE` the mean row of `W_EE` and rows of `W_EI` summing to 1, so at
    every output location of every sample the mean of `z` over the output channels is `b`'s
    mean (0 at initialisation), whatever the image (zero padding included).

    Channels-last only: inputs `(batch, height, width, channels)`.

    Args:
        filters: number of excitatory output channels `ne` (>= 1).
        kernel_size: as in `keras.layers.Conv2D`.
        strides: as `kernel_size` says.
        padding: as `kernel_size` says.
        data_format: `None` or `"channels_last"` (`"channels_first"` is an error).
        dilation_rate: as in `keras.layers.Conv2D`.
        groups: 1 only (Conv2D's place for it).
        activation: as in
            `keras.layers.Conv2D`, in Conv2D's order (`kernel_initializer` is called with
            Conv2D's kernel shape `(kh, kw, in_channels, filters)` and must draw
            non-negative values).
        use_bias: as `activation` says.
        kernel_initializer: as `activation` says.
        bias_initializer: as `activation` says.
        kernel_regularizer: as `activation` says.
        bias_regularizer: as `activation` says.
        activity_regularizer: as `activation` says.
        kernel_constraint: as `activation` says.
        bias_constraint: as `activation` says.
        **kwargs: `inhibitory_units` (keyword-only, inhibitory channels `ni`; default
            `max(1, floor(0.1 * filters))`), the other keyword-only arguments of `EIDense`
            (`init_distribution`,
            `trainable_ei`, `seed`, `inhibitory_regularizer`, `inhibitory_constraint`)
            and base `keras.layers.Layer` arguments.

    Attributes:
        kernel: read-only, the effective kernel `W_EE - W_EI W_IE` in Conv2D's
            `(kh, kw, in_channels, filters)` orientation: `keras.ops.conv` of the input
            with it, plus the bias, is the pre-activation `z`.

    Input shape:
        4-D tensor with shape `(batch_size, height, width, channels)` (channels last).

    Output shape:
        4-D tensor with shape `(batch_size, new_height, new_width, filters)`, as
        `keras.layers.Conv2D` gives for the same `kernel_size`, `strides`, `padding` and
        `dilation_rate`.

    Call arguments:
        - `inputs`: the input tensor.

    Example: the mean over channels of the pre-activation is 0 at every location.

    >>> import numpy as np, keras
    >>> from ei_keras.layers import EIConv2D
    >>> layer = EIConv2D(16, 5, strides=2, padding="same", seed=0)
    >>> x = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> z = keras.ops.convert_to_numpy(layer(x))
    >>> z.shape
    (2, 14, 14, 16)
    >>> bool(np.abs(z.mean(axis=-1)).max() < 1e-5)
    True

    Reference:
        Cornford et al. (2021), "Learning to live with Dale's principle: ANNs with separate
        excitatory and inhibitory units" (convolutional DANNs).
    """
