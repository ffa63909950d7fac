"""EINetwork: the paper's multilayer perceptron of Dale's-principle layers."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers import DetachedLayerNormalization, EDense, EIDense, INormDense, _dale
from ei_keras.models.trainers import DualLossTrainer, portable_compile_config  # noqa: F401
from ei_keras.ops import error_normalization as _errnorm

HIDDEN_LAYERS = ("ei", "e", "inorm")
NORMALIZATIONS = (None, "layer_norm", "layer_norm_detached")


class HiddenNormWeight:
    """What the dense and convolutional networks share over their hidden stack
    (`self.hidden`, `self.norms`): `norm_weight`, `lambda` of the hidden I-Norm layers
    (setting it, e.g. from a callback, changes the normalization loss of the next step on every
    backend; without I-Norm layers it is the stored value), and the hidden pre-activations."""

    def hidden_input(self, inputs):
        """What the first hidden layer sees (the conv network reshapes to images)."""
        return inputs

    def hidden_preactivations(self, inputs, training: bool = False) -> list:
        """The input of each hidden ReLU (after LayerNorm / I-Norm division), one per layer
        (`(batch, units)`; conv: `(batch, H, W, C)` maps)."""
        x, out = self.hidden_input(inputs), []
        for layer, norm in zip(self.hidden, self.norms):
            z = layer(x)
            if norm is not None:
                z = norm(z, training=training)
            out.append(z)
            x = ops.relu(z)
        return out

    @property
    def norm_weight(self) -> float:
        inorm = [layer for layer in self.hidden if isinstance(layer, INormDense)]
        return inorm[0].norm_weight if inorm else self._norm_weight

    @norm_weight.setter
    def norm_weight(self, value) -> None:
        for layer in self.hidden:
            if isinstance(layer, INormDense):  # INormConv2D included
                layer.norm_weight = value
        self._norm_weight = float(value)


@keras.saving.register_keras_serializable(package="ei_keras")
class EINetwork(HiddenNormWeight, DualLossTrainer, keras.Model):
    """`input -> [hidden layer -> (LayerNorm) -> ReLU] x depth -> EIDense(10, ni=1) logits`.

    Training is Keras' own `fit` with the dual-loss step of
    `ei_keras.models.DualLossModel` (one `train_step` per backend): the task loss
    trains the excitatory variables and the readout, each I-Norm layer's normalization loss
    trains that layer's inhibitory variables, each at its `dale_sgd` group's learning rate.
    `History` has `loss`, `task_loss` and `norm_loss`; `compile` also takes the
    inhibitory plasticity schedule (`inhibitory_steps`, `inhibitory_every`).

    Args:
        hidden_units: widths of the hidden layers (paper: two layers).
        hidden_layer: `"ei"` (`EIDense`), `"e"` (`EDense`) or `"inorm"`
            (`INormDense`).
        normalization: `None`, `"layer_norm"` (`keras.layers.LayerNormalization` without
            gain or bias, before the ReLU) or `"layer_norm_detached"` (its forward with the
            identity backward: `ei_keras.layers.DetachedLayerNormalization`); not used
            with `"inorm"`.
        error_normalization: I-Norm layers' error-normalization mode.
        gradnorm_on: `"y"` (default, LayerNorm's backward) or `"z"` (the paper code's
            formula) for the `full`/`decorrelate` modes (`INormDense`).
        task_trains_inhibitory: the I-Norm layers' isolation ablation: the task loss also
            trains their inhibitory weights (`INormDense`; default False).
        norm_trains_excitatory: the I-Norm layers' isolation ablation: their normalization
            loss also trains their `W_EE` and bias (`INormDense`; default False).
        subtractive_only: I-Norm layers without the divisive population.
        norm_weight: `lambda` of the I-Norm normalization loss.
        trainable_ei: whether the hidden I-Norm layers' `W_EI`/`B_EI` learn.
        output_units: labels to tell apart (10 for Fashion-MNIST, 20 with the
            contrast-as-signal labels).
        init_distribution: `"exponential"` or `"lognormal"`.
        epsilon: LayerNorm / I-Norm epsilon.
        seed: seed of the NumPy initialisation: the same seed gives the same weights on every
            backend.
        split_bias: every layer's bias as `bias_positive - bias_negative`, two non-negative
            variables (for exponentiated-gradient training: `DaleDense`).
        **kwargs: `keras.Model` arguments (`name`, ...).

    Input shape:
        2-D tensor `(batch_size, input_dim)` (784 for Fashion-MNIST).

    Output shape:
        2-D tensor `(batch_size, output_units)`: logits.

    Call arguments:
        - `inputs`: the input tensor.
        - `training`: Keras' training flag, passed to the LayerNorm layers (which behave
          the same either way).

    Example:

    >>> import numpy as np
    >>> from ei_keras.models import EINetwork
    >>> net = EINetwork(hidden_units=(32, 32), hidden_layer="ei", normalization="layer_norm",
    ...                 seed=0)
    >>> net(np.random.rand(4, 784).astype("float32")).shape
    (4, 10)
    """

    def __init__(
        self,
        hidden_units=(234, 234),
        hidden_layer: str = "ei",
        normalization: str | None = None,
        error_normalization: str = "none",
        subtractive_only: bool = False,
        norm_weight: float = 0.01,
        trainable_ei: bool = True,
        output_units: int = 10,
        init_distribution: str = "exponential",
        epsilon: float = 1e-5,
        seed: int | None = None,
        split_bias: bool = False,
        gradnorm_on: str = "y",
        task_trains_inhibitory: bool = False,
        norm_trains_excitatory: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_layer not in HIDDEN_LAYERS:
            raise ValueError(
                f"Expected `hidden_layer` to be one of {HIDDEN_LAYERS}. "
                f"Received: hidden_layer={hidden_layer!r}"
            )
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"Expected `normalization` to be one of {NORMALIZATIONS}. "
                f"Received: normalization={normalization!r}"
            )
        if hidden_layer == "inorm" and normalization is not None:
            raise ValueError("I-Norm layers normalize themselves: use normalization=None with "
                             "hidden_layer='inorm'.")
        if hidden_layer != "inorm" and error_normalization not in (None, "none"):
            raise ValueError("`error_normalization` applies to hidden_layer='inorm' only. "
                             f"Received: error_normalization={error_normalization!r} with "
                             f"hidden_layer={hidden_layer!r}.")
        self.hidden_units = tuple(_dale.check_units(u, "hidden_units") for u in hidden_units)
        if not self.hidden_units:
            raise ValueError("Expected at least one hidden layer. Received: hidden_units=()")
        self.hidden_layer = hidden_layer
        self.normalization = normalization
        self.error_normalization = _errnorm.validate_mode(
            error_normalization, "error_normalization")
        self.gradnorm_on = _errnorm.validate_gradnorm_on(gradnorm_on)
        self.task_trains_inhibitory = bool(task_trains_inhibitory)
        self.norm_trains_excitatory = bool(norm_trains_excitatory)
        if hidden_layer != "inorm" and (self.task_trains_inhibitory or
                                     self.norm_trains_excitatory):
            raise ValueError("`task_trains_inhibitory` and `norm_trains_excitatory` apply to "
                             "hidden_layer='inorm' only (there is no normalization loss "
                             f"otherwise). Received: hidden_layer={hidden_layer!r}.")
        self.subtractive_only = bool(subtractive_only)
        self._norm_weight = float(norm_weight)
        self.trainable_ei = bool(trainable_ei)
        self.output_units = _dale.check_units(output_units, "output_units")
        self.init_distribution = init_distribution
        self.epsilon = float(epsilon)
        self.seed = seed
        self.split_bias = bool(split_bias)
        bias = {"split_bias": True} if self.split_bias else {}
        base = _dale._seed_or_draw(seed)

        self.hidden = []
        self.norms = []
        for i, units in enumerate(self.hidden_units):
            name = f"hidden_{i + 1}"
            layer_seed = base + 1000 * (i + 1)
            if hidden_layer == "ei":
                layer = EIDense(units, init_distribution=init_distribution, seed=layer_seed,
                                name=name, **bias)
            elif hidden_layer == "e":
                layer = EDense(units, init_distribution=init_distribution, seed=layer_seed,
                               name=name, **bias)
            else:
                layer = INormDense(
                    units, error_normalization=self.error_normalization,
                    gradnorm_on=self.gradnorm_on,
                    task_trains_inhibitory=self.task_trains_inhibitory,
                    norm_trains_excitatory=self.norm_trains_excitatory,
                    subtractive_only=subtractive_only, norm_weight=norm_weight,
                    trainable_ei=trainable_ei, epsilon=epsilon,
                    init_distribution=init_distribution, seed=layer_seed, name=name, **bias,
                )
            self.hidden.append(layer)
            if normalization == "layer_norm":
                norm = keras.layers.LayerNormalization(center=False, scale=False,
                                                       epsilon=epsilon, name=f"layer_norm_{i + 1}")
            elif normalization == "layer_norm_detached":
                norm = DetachedLayerNormalization(epsilon=epsilon, name=f"layer_norm_{i + 1}")
            else:
                norm = None
            self.norms.append(norm)
        self.readout = EIDense(self.output_units, inhibitory_units=1,
                               init_distribution=init_distribution, seed=base, name="readout",
                               **bias)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer, norm in zip(self.hidden, self.norms):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
            if norm is not None:
                norm.build(shape)
        self.readout.build(shape)
        self.built = True

    # -- forward ----------------------------------------------------------------------------
    def call(self, inputs, training: bool = False):
        x = inputs
        for i, (layer, norm) in enumerate(zip(self.hidden, self.norms)):
            # The first layer goes through Layer.__call__ (it checks the input); the trainer
            # may call the others' `call` directly (same numbers, same add_loss bookkeeping).
            z = self._sublayer(layer, x) if i else layer(x)
            if norm is not None:
                z = self._sublayer(norm, z, training=training)
            x = ops.relu(z)
        return self._sublayer(self.readout, x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_units)

    # -- config -----------------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "hidden_units": list(self.hidden_units),
            "hidden_layer": self.hidden_layer,
            "normalization": self.normalization,
            "error_normalization": self.error_normalization,
            "subtractive_only": self.subtractive_only,
            "norm_weight": self.norm_weight,
            "trainable_ei": self.trainable_ei,
            "output_units": self.output_units,
            "init_distribution": self.init_distribution,
            "epsilon": self.epsilon,
            "seed": self.seed,
            "split_bias": self.split_bias,
            "gradnorm_on": self.gradnorm_on,
            "task_trains_inhibitory": self.task_trains_inhibitory,
            "norm_trains_excitatory": self.norm_trains_excitatory,
        }
