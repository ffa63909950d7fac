"""INormConv2D: learned inhibitory normalization of convolutional feature maps."""

from __future__ import annotations

import math

import keras
from keras import ops

from ei_keras.layers._dale_conv import DaleConv2D
from ei_keras.layers.inorm_dense import INormDense
from ei_keras.ops import error_normalization as _errnorm

STATISTICS = ("map", "location")


@keras.saving.register_keras_serializable(package="ei_keras")
class INormConv2D(DaleConv2D, INormDense):
    """2-D convolution normalized by two learned inhibitory populations (`INormDense` on
    patches).

    At every output location, with `x_p` the flattened `(kh, kw, in_channels)` patch and
    `xs = stop_gradient(x)`: `e = x_p W_EE^T + b`, subtractive `s = (xs_p W_IE^T) W_EI^T`,
    divisive `p = ((xs_p B_IE^T)^2) B_EI^T` -- every input-side weight is a convolution,
    `W_EI` and `B_EI` mix channels at one location. Then `z = (e - sg(s)) / sg(delta)`,
    error normalization, `activation`. Gradient isolation as in `INormDense`: the task
    loss reaches `W_EE`, `b` and the input; the normalization loss (added with
    `add_loss`) only `W_IE`, `W_EI`, `B_IE`, `B_EI`. Initialisation as
    `INormDense` on the flattened kernels (the SVD needs `kh * kw * in_channels >=
    filters`, or `subtractive_only=True`).

    `statistics` chooses what the normalization is taken over:

    - `"map"` (default): per sample over the whole `(height, width, channels)` map, as
      `keras.layers.LayerNormalization(axis=(-3, -2, -1))`. `delta^2 = mean_{h,w} p + eps`
      (each channel's divisive inhibition pooled over the map); `L_norm` and error
      normalization take their mean and variance over `(H, W, C)`. The SVD initialisation
      then gives `delta^2 = mean_{h,w,c} (W x_p)_c^2 + eps`: exactly LayerNorm's statistics.
    - `"location"`: every output location is a sample, normalized over its channels (the
      dense layer applied to `(..., units)` inputs). A location whose patch is all zero
      (Fashion-MNIST's background) gets `delta = sqrt(eps)` whatever the weights, so any
      bias is multiplied by `1/sqrt(eps)` (316) there.

    Why `"map"` is the default, measured on Fashion-MNIST (README, "Convolutional I-Norm"):
    26 % of the first layer's 5x5 stride-2 'same' patches of the test images are all zero:
    there `"location"` has `z = 0` and a per-location variance of 0 that no inhibitory
    weight can move (`L_norm` starts at 2.8e-3 instead of 2e-11 with the default
    `norm_weight`), and sends `b / sqrt(eps)` forward once the bias has moved. In training
    (4096 images, 2 epochs, 3 seeds, the presets' defaults) `"location"` diverged in 3/3
    `conv_inorm_gradnorm` and 2/3 `conv_inorm` runs, `"map"` in none of the 6.

    Channels-last only: inputs `(batch, height, width, channels)`; `"map"` with
    `error_normalization="lateral"` needs known height and width (one lateral weight per
    unit of the map).

    Args:
        filters: excitatory output channels `ne`.
        kernel_size: as in `EIConv2D`.
        *args: Conv2D's positional arguments after `kernel_size`, in Conv2D's order
            (`strides`, `padding`, `data_format`, `dilation_rate`, `groups`, `activation`,
            `use_bias`, the initializers, regularizers and constraints), as in `EIConv2D`.
        statistics: keyword-only, `"map"` or `"location"` (above).
        **kwargs: the keyword-only arguments of `INormDense` (`inhibitory_units`,
            `error_normalization`, `gradnorm_on`, `subtractive_only`, `norm_weight`,
            `trainable_ei`, `epsilon`, `init_distribution`, `seed`,
            `inhibitory_regularizer`, `inhibitory_constraint`) and base
            `keras.layers.Layer` arguments.

    Attributes:
        kernel: read-only, the affine part before the normalization, `W_EE - W_EI W_IE` in
            Conv2D's `(kh, kw, in_channels, filters)` orientation (`keras.ops.conv` of the
            input with it, plus the bias, is the numerator `e - s`).

    Input shape:
        4-D tensor with shape `(batch_size, height, width, channels)` (channels last).

    Output shape:
        4-D tensor with shape `(batch_size, new_height, new_width, filters)`, as
        `keras.layers.Conv2D` gives for the same `kernel_size`, `strides`, `padding` and
        `dilation_rate`.

    Call arguments:
        - `inputs`: the input tensor. Every call adds the layer's normalization loss with
          `add_loss`, as `INormDense` does.

    Example: at initialisation the map has zero mean and unit second moment per sample.

    >>> import numpy as np, keras
    >>> from ei_keras.layers import INormConv2D
    >>> layer = INormConv2D(16, 5, strides=2, padding="same", error_normalization="full",
    ...                     seed=0)
    >>> x = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> z = keras.ops.convert_to_numpy(layer(x)).astype("float64")
    >>> z.shape, len(layer.losses)
    ((2, 14, 14, 16), 1)
    >>> np.round((z**2).mean(axis=(1, 2, 3)), 3).tolist()
    [1.0, 1.0]

    Reference:
        Eyono et al. (2026), "Learned inhibitory normalization"; LayerNorm for convolutional
        maps: Ba et al. (2016).
    """

    def __init__(self, filters, kernel_size, *args, statistics: str = "map", **kwargs):
        # *args: Conv2D's positional arguments after kernel_size (DaleConv2D).
        if statistics not in STATISTICS:
            raise ValueError(f"Expected `statistics` to be one of {STATISTICS}. "
                             f"Received: statistics={statistics!r}")
        super().__init__(filters, kernel_size, *args, **kwargs)
        self.statistics = statistics

    @property
    def statistics_axis(self):
        return (1, 2, 3) if self.statistics == "map" else -1

    def pool_divisive(self, p):
        if self.statistics == "map":
            return ops.mean(p, axis=(1, 2), keepdims=True)
        return p

    def normalize_error(self, z):
        if self.statistics == "location" or self.error_normalization == "none":
            return super().normalize_error(z)
        shape = ops.shape(z)  # height and width may be known only when called
        flat = ops.reshape(z, (shape[0], -1))
        flat = _errnorm.normalize_error(flat, self.error_normalization, self.lateral_weights,
                                        self.epsilon, self.gradnorm_on)
        return ops.reshape(flat, shape)

    def error_normalization_width(self, input_shape) -> int:
        if self.statistics == "location":
            return self.units
        shape = self.compute_output_shape(input_shape)
        if None in shape[1:]:
            raise ValueError(
                "INormConv2D(statistics='map', error_normalization='lateral') needs inputs of "
                "known height and width (one lateral weight per unit of the map). Received: "
                f"input_shape={tuple(input_shape)}. Give keras.Input a full shape or use "
                "statistics='location'.")
        return math.prod(shape[1:])

    def get_config(self):
        return {**super().get_config(), "statistics": self.statistics}
