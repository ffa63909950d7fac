"""What the convolutional Dale layers add to the dense ones (`EIConv2D`, `INormConv2D`).

A 2-D convolution is a dense layer applied to every patch of the input: each output location
reads a `(kh, kw, in_channels)` patch, flattened to `d = kh * kw * in_channels` values in
that order. The convolutional layers therefore keep the dense layers' weights, in the paper's
`(out, d)` orientation (`W_EE` `(filters, d)`, `W_IE` `(ni, d)`, `B_IE`
`(filters, d)`; `W_EI` and `B_EI` act on channels), their initialisations (applied to the
flattened kernel: fan-in `d`) and their argument handling; only the projection of the input
(`DaleConv2D.project`: a convolution instead of a matrix product), the input checks and
the output shape change. Channels-last only.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ei_keras.layers._dale import check_units

PADDINGS = ("valid", "same")


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints >= 1, as a pair (Conv2D's `kernel_size`, `strides`, ...)."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                 for v in pair):
        raise ValueError(f"Expected `{name}` to be an integer >= 1 or a pair of them. "
                         f"Received: {name}={value!r}")
    return pair


def conv_output_length(length, kernel: int, stride: int, dilation: int, padding: str):
    """Output length of one spatial axis (`None` stays `None`), as Keras' Conv2D."""
    if length is None:
        return None
    if padding == "same":
        return math.ceil(length / stride)
    return (length - (kernel - 1) * dilation - 1) // stride + 1


class DaleConv2D:
    """Mixin turning a Dale dense layer into a 2-D convolution (put it first in the bases).

    Conv2D's arguments in Conv2D's order: `filters`, `kernel_size`, `strides`,
    `padding`, `data_format` (`"channels_last"` only), `dilation_rate`, `groups` (1
    only), `activation`, `use_bias`, the initializers, regularizers and constraints; the
    E-I specifics are keyword-only and go to the dense layer (`units` = `filters`).
    `kernel_initializer` is called with Conv2D's kernel shape
    `(kh, kw, in_channels, filters)`.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer=None, bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        if groups != 1:
            raise ValueError(
                f"{type(self).__name__} supports only groups=1 (every filter reads every input "
                f"channel). Received: groups={groups!r}")
        filters = check_units(filters, "filters")
        kernel_size = _pair(kernel_size, "kernel_size")
        strides = _pair(strides, "strides")
        dilation_rate = _pair(dilation_rate, "dilation_rate")
        if max(strides) > 1 and max(dilation_rate) > 1:
            raise ValueError("`strides` > 1 and `dilation_rate` > 1 cannot be combined (as in "
                             f"keras.layers.Conv2D). Received: strides={strides}, "
                             f"dilation_rate={dilation_rate}")
        padding = padding.lower() if isinstance(padding, str) else padding
        if padding not in PADDINGS:
            raise ValueError(f"Expected `padding` to be one of {PADDINGS}. "
                             f"Received: padding={padding!r}")
        if data_format not in (None, "channels_last"):
            raise ValueError(
                f"{type(self).__name__} supports only data_format='channels_last' (inputs "
                f"(batch, height, width, channels)). Received: data_format={data_format!r}. "
                "Transpose the input with keras.layers.Permute((2, 3, 1)) first.")
        super().__init__(filters, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        self.kernel_size, self.strides, self.dilation_rate = kernel_size, strides, dilation_rate
        self.padding = padding
        self.in_channels = None

    _width_hint = " (for a convolution: kh * kw * in_channels)"

    def input_width(self, input_shape) -> int:
        """The patch width `d = kh * kw * in_channels`; a clear error for non-image inputs."""
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects channels-last images (batch, height, width, "
                "channels) with a known number of channels, like keras.layers.Conv2D. "
                f"Received: input_shape={tuple(input_shape)}.")
        self.in_channels = int(input_shape[-1])
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: self.in_channels})
        return self.kernel_size[0] * self.kernel_size[1] * self.in_channels

    def kernel_shape(self, d: int) -> tuple:
        """Conv2D's kernel shape `(kh, kw, in_channels, filters)`."""
        kh, kw = self.kernel_size
        return (kh, kw, d // (kh * kw), self.units)

    def kernel_from_rows(self, w):
        """Patch weights `w` `(out, d)` as Conv2D's kernel `(kh, kw, in_channels, out)`."""
        return ops.reshape(ops.transpose(w), (*self.kernel_size, self.in_channels, w.shape[0]))

    def project(self, x, w):
        """The convolution of `x` with the patch weights `w` `(out, d)`."""
        kernel = self.kernel_from_rows(w)
        return ops.conv(x, kernel, strides=self.strides, padding=self.padding,
                        data_format="channels_last", dilation_rate=self.dilation_rate)

    def compute_output_shape(self, input_shape):
        lengths = (conv_output_length(input_shape[i + 1], self.kernel_size[i], self.strides[i],
                                      self.dilation_rate[i], self.padding) for i in range(2))
        return (input_shape[0], *lengths, self.units)

    def get_config(self):
        config = super().get_config()
        config["filters"] = config.pop("units")
        config.update({"kernel_size": self.kernel_size, "strides": self.strides,
                       "padding": self.padding, "data_format": "channels_last",
                       "dilation_rate": self.dilation_rate})
        return config
