"""EIConvNetwork: a small convolutional network of Dale's-principle layers."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers import EIConv2D, EIDense, INormConv2D, _dale
from ei_keras.layers._dale_conv import _pair
from ei_keras.models.ei_network import HiddenNormWeight
from ei_keras.models.trainers import DualLossTrainer
from ei_keras.ops import error_normalization as _errnorm

CONV_LAYERS = ("ei", "inorm")
NORMALIZATIONS = (None, "layer_norm")


@keras.saving.register_keras_serializable(package="ei_keras")
class EIConvNetwork(HiddenNormWeight, DualLossTrainer, keras.Model):
    """`flat image -> reshape -> [conv (stride 2, 'same') -> (LayerNorm) -> ReLU] x layers ->
    flatten -> EIDense(10, ni=1) logits`, trained like `EINetwork` (the dual-loss step:
    task loss to the excitatory variables and the readout, each I-Norm layer's normalization
    loss to its inhibitory variables).

    Inputs arrive as flattened images (784 values for Fashion-MNIST, as `ei_keras.data`
    gives them) and are reshaped to `image_shape` (channels last) inside the model.

    Args:
        filters: output channels of each conv layer (default: 16 then 32).
        kernel_size: kernel of every conv layer (default 5).
        strides: strides of every conv layer (default 2, padding `'same'`).
        conv_layer: `"ei"` (`EIConv2D`) or `"inorm"` (`INormConv2D`).
        normalization: `None` or `"layer_norm"`: `keras.layers.LayerNormalization` over
            `(H, W, C)` without gain or bias, before the ReLU (not with `"inorm"`).
        error_normalization: the
            I-Norm layers' arguments (`INormConv2D`).
        gradnorm_on: as `error_normalization` says.
        task_trains_inhibitory: as `error_normalization` says (isolation ablation).
        norm_trains_excitatory: as `error_normalization` says (isolation ablation).
        subtractive_only: as `error_normalization` says.
        norm_weight: as `error_normalization` says.
        trainable_ei: as `error_normalization` says.
        statistics: as `error_normalization` says.
        image_shape: `(height, width, channels)` of the flattened input.
        output_units: classes.
        init_distribution: `"exponential"` or `"lognormal"`.
        epsilon: LayerNorm / I-Norm epsilon.
        seed: NumPy seed of the initialisation (same weights on every backend).
        split_bias: every layer's bias as two non-negative parts (`DaleDense`), for
            exponentiated-gradient training.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Input shape:
        2-D tensor `(batch_size, height * width * channels)`: flattened images, reshaped
        to `image_shape` inside the model.

    Output shape:
        2-D tensor `(batch_size, output_units)`: logits.

    Call arguments:
        - `inputs`: the input tensor.
        - `training`: Keras' training flag, passed to the LayerNorm layers (which behave
          the same either way).

    Example:

    >>> import numpy as np
    >>> from ei_keras.models import EIConvNetwork
    >>> net = EIConvNetwork(filters=(4, 8), conv_layer="inorm", error_normalization="full",
    ...                     seed=0)
    >>> net(np.random.rand(2, 784).astype("float32")).shape
    (2, 10)
    """

    def __init__(self, filters=(16, 32), kernel_size=5, strides=2, conv_layer: str = "ei",
                 normalization: str | None = None, error_normalization: str = "none",
                 subtractive_only: bool = False, norm_weight: float = 0.01,
                 trainable_ei: bool = True, statistics: str = "map", image_shape=(28, 28, 1),
                 output_units: int = 10, init_distribution: str = "exponential",
                 epsilon: float = 1e-5, seed: int | None = None, split_bias: bool = False,
                 gradnorm_on: str = "y", task_trains_inhibitory: bool = False,
                 norm_trains_excitatory: bool = False, **kwargs):
        super().__init__(**kwargs)
        if conv_layer not in CONV_LAYERS:
            raise ValueError(f"Expected `conv_layer` to be one of {CONV_LAYERS}. "
                             f"Received: conv_layer={conv_layer!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Expected `normalization` to be one of {NORMALIZATIONS}. "
                             f"Received: normalization={normalization!r}")
        if conv_layer == "inorm" and normalization is not None:
            raise ValueError("I-Norm layers normalize themselves: use normalization=None with "
                             "conv_layer='inorm'.")
        self.filters = tuple(_dale.check_units(f, "filters") for f in filters)
        if not self.filters:
            raise ValueError("Expected at least one conv layer. Received: filters=()")
        self.kernel_size, self.strides = _pair(kernel_size, "kernel_size"), _pair(strides,
                                                                                    "strides")
        self.conv_layer, self.normalization = conv_layer, normalization
        self.error_normalization = _errnorm.validate_mode(
            error_normalization, "error_normalization")
        self.gradnorm_on = _errnorm.validate_gradnorm_on(gradnorm_on)
        self.task_trains_inhibitory = bool(task_trains_inhibitory)
        self.norm_trains_excitatory = bool(norm_trains_excitatory)
        if conv_layer != "inorm" and (self.task_trains_inhibitory or
                                     self.norm_trains_excitatory):
            raise ValueError("`task_trains_inhibitory` and `norm_trains_excitatory` apply to "
                             "conv_layer='inorm' only (there is no normalization loss "
                             f"otherwise). Received: conv_layer={conv_layer!r}.")
        self.subtractive_only, self.trainable_ei = bool(subtractive_only), bool(trainable_ei)
        self.statistics = statistics
        self.image_shape = tuple(int(s) for s in image_shape)
        self.output_units = _dale.check_units(output_units, "output_units")
        self.init_distribution, self.epsilon, self.seed = init_distribution, float(epsilon), seed
        self._norm_weight = float(norm_weight)
        self.split_bias = bool(split_bias)
        bias = {"split_bias": True} if self.split_bias else {}
        base = _dale._seed_or_draw(seed)
        common = {"kernel_size": self.kernel_size, "strides": self.strides, "padding": "same",
                  "init_distribution": init_distribution, **bias}
        self.hidden, self.norms = [], []
        for i, f in enumerate(self.filters):
            name, layer_seed = f"conv_{i + 1}", base + 1000 * (i + 1)
            if conv_layer == "ei":
                layer = EIConv2D(f, seed=layer_seed, name=name, **common)
            else:
                layer = INormConv2D(f, error_normalization=self.error_normalization,
                                    gradnorm_on=self.gradnorm_on,
                                    task_trains_inhibitory=self.task_trains_inhibitory,
                                    norm_trains_excitatory=self.norm_trains_excitatory,
                                    subtractive_only=subtractive_only, norm_weight=norm_weight,
                                    trainable_ei=trainable_ei, statistics=statistics,
                                    epsilon=epsilon, seed=layer_seed, name=name, **common)
            self.hidden.append(layer)
            self.norms.append(keras.layers.LayerNormalization(
                axis=(-3, -2, -1), center=False, scale=False, epsilon=epsilon,
                name=f"layer_norm_{i + 1}") if normalization == "layer_norm" else None)
        self.readout = EIDense(self.output_units, inhibitory_units=1,
                               init_distribution=init_distribution, seed=base, name="readout",
                               **bias)

    def build(self, input_shape):
        shape = (input_shape[0], *self.image_shape)
        for layer, norm in zip(self.hidden, self.norms):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
            if norm is not None:
                norm.build(shape)
        self.readout.build((shape[0], shape[1] * shape[2] * shape[3]))
        self.built = True

    def image(self, inputs):
        """The flattened inputs as (batch, *image_shape) images."""
        return ops.reshape(inputs, (-1, *self.image_shape))

    def hidden_input(self, inputs):
        return self.image(inputs)

    def call(self, inputs, training: bool = False):
        x = self.image(inputs)
        for i, (layer, norm) in enumerate(zip(self.hidden, self.norms)):
            z = self._sublayer(layer, x) if i else layer(x)
            if norm is not None:
                z = self._sublayer(norm, z, training=training)
            x = ops.relu(z)
        return self._sublayer(self.readout, ops.reshape(x, (ops.shape(x)[0], -1)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_units)

    def get_config(self):
        return {"name": self.name, "filters": list(self.filters),
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "conv_layer": self.conv_layer, "normalization": self.normalization,
                "error_normalization": self.error_normalization,
                "subtractive_only": self.subtractive_only, "norm_weight": self.norm_weight,
                "trainable_ei": self.trainable_ei, "statistics": self.statistics,
                "image_shape": list(self.image_shape), "output_units": self.output_units,
                "init_distribution": self.init_distribution, "epsilon": self.epsilon,
                "seed": self.seed, "split_bias": self.split_bias,
                "gradnorm_on": self.gradnorm_on,
                "task_trains_inhibitory": self.task_trains_inhibitory,
                "norm_trains_excitatory": self.norm_trains_excitatory}
