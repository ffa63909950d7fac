"""EIRecurrentNetwork: a recurrent Dale's-principle network on row-sequential images."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers import EIDense, EIRNNCell, INormRNN, INormRNNCell, _dale
from ei_keras.layers.ei_rnn import RNN_NORMALIZATIONS
from ei_keras.models.trainers import DualLossTrainer
from ei_keras.ops import error_normalization as _errnorm

RNN_CELLS = ("ei", "inorm")


@keras.saving.register_keras_serializable(package="ei_keras")
class EIRecurrentNetwork(DualLossTrainer, keras.Model):
    """`flat image -> (timesteps, features) -> recurrent E-I layer -> last state ->
    EIDense(classes, ni=1) logits`, trained like `EINetwork` (the dual-loss step: the
    task loss trains the excitatory variables and the readout, the I-Norm cell's
    normalization loss its inhibitory variables).

    Inputs arrive flat (784 values for Fashion-MNIST, as `ei_keras.data` gives them, so
    the data pipeline and its luminosity / contrast shifts are unchanged) and are reshaped
    inside the model to `timesteps` steps of `input_dim / timesteps` values: 28 rows of 28
    pixels, read top to bottom (row-sequential Fashion-MNIST).

    Args:
        units: state size of the recurrent layer.
        cell: `"ei"` (`EIRNNCell` in `keras.layers.RNN`) or `"inorm"`
            (`INormRNNCell` in `INormRNN`).
        normalization: `None` or `"layer_norm"` (LayerNorm of the recurrent
            pre-activation at every step, `EIRNNCell`; not with `"inorm"`).
        error_normalization: the I-Norm cell's arguments (`INormRNNCell`).
        gradnorm_on: as `error_normalization` says.
        subtractive_only: as `error_normalization` says.
        norm_weight: as `error_normalization` says.
        trainable_ei: whether the cell's `W_EI` (and `B_EI`) learn.
        timesteps: steps the flat input is cut into (28: one image row per step).
        output_units: classes.
        init_distribution: `"exponential"` or `"lognormal"`.
        epsilon: LayerNorm / I-Norm epsilon.
        seed: NumPy seed of the initialisation (same weights on every backend).
        split_bias: every layer's bias as two non-negative parts (`DaleDense`).
        **kwargs: `keras.Model` arguments (`name`, ...).

    Input shape:
        2-D tensor `(batch_size, timesteps * features)`.

    Output shape:
        2-D tensor `(batch_size, output_units)`: logits.

    Example:

    >>> import numpy as np
    >>> from ei_keras.models import EIRecurrentNetwork
    >>> net = EIRecurrentNetwork(units=16, cell="inorm", error_normalization="full", seed=0)
    >>> net(np.random.rand(4, 784).astype("float32")).shape
    (4, 10)
    """

    #: No LayerNorm twin for the alignment measures (`ei_keras.measures`: defined per
    #: feed-forward layer); the runs record the hidden moments only.
    layer_norm_twin = False

    def __init__(self, units: int = 128, cell: str = "ei", normalization: str | None = None,
                 error_normalization: str = "none", gradnorm_on: str = "y",
                 subtractive_only: bool = False, norm_weight: float = 0.01,
                 trainable_ei: bool = True, timesteps: int = 28, output_units: int = 10,
                 init_distribution: str = "exponential", epsilon: float = 1e-5,
                 seed: int | None = None, split_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        if cell not in RNN_CELLS:
            raise ValueError(f"Expected `cell` to be one of {RNN_CELLS}. Received: cell={cell!r}")
        if normalization not in RNN_NORMALIZATIONS:
            raise ValueError(f"Expected `normalization` to be one of {RNN_NORMALIZATIONS}. "
                             f"Received: normalization={normalization!r}")
        if cell == "inorm" and normalization is not None:
            raise ValueError("The I-Norm cell normalizes itself: use normalization=None with "
                             "cell='inorm'.")
        if cell != "inorm" and error_normalization not in (None, "none"):
            raise ValueError("`error_normalization` applies to cell='inorm' only. Received: "
                             f"error_normalization={error_normalization!r} with cell={cell!r}.")
        self.units = _dale.check_units(units, "units")
        self.cell_type = cell
        self.normalization = normalization
        self.error_normalization = _errnorm.validate_mode(error_normalization,
                                                          "error_normalization")
        self.gradnorm_on = _errnorm.validate_gradnorm_on(gradnorm_on)
        self.subtractive_only = bool(subtractive_only)
        self._norm_weight = float(norm_weight)
        self.trainable_ei = bool(trainable_ei)
        self.timesteps = _dale.check_units(timesteps, "timesteps")
        self.output_units = _dale.check_units(output_units, "output_units")
        self.init_distribution = init_distribution
        self.epsilon = float(epsilon)
        self.seed = seed
        self.split_bias = bool(split_bias)
        bias = {"split_bias": True} if self.split_bias else {}
        base = _dale._seed_or_draw(seed)
        if cell == "ei":
            self.recurrent = keras.layers.RNN(
                EIRNNCell(self.units, normalization=normalization, epsilon=epsilon,
                          init_distribution=init_distribution, trainable_ei=trainable_ei,
                          seed=base + 1000, name="cell", **bias), name="recurrent")
        else:
            self.recurrent = INormRNN(
                INormRNNCell(self.units, error_normalization=self.error_normalization,
                             gradnorm_on=self.gradnorm_on, subtractive_only=subtractive_only,
                             norm_weight=norm_weight, trainable_ei=trainable_ei,
                             epsilon=epsilon, init_distribution=init_distribution,
                             seed=base + 1000, name="cell", **bias), name="recurrent")
        #: The hidden layers (one), as the other networks list theirs.
        self.hidden = [self.recurrent]
        self.readout = EIDense(self.output_units, inhibitory_units=1,
                               init_distribution=init_distribution, seed=base, name="readout",
                               **bias)

    def features(self, input_dim: int) -> int:
        """Values per step: `input_dim / timesteps` (a clear error if it does not divide)."""
        if input_dim is None or input_dim % self.timesteps:
            raise ValueError(f"{type(self).__name__} cuts its flat input into timesteps="
                             f"{self.timesteps} steps; the input width {input_dim} is not a "
                             "multiple of it. Pass timesteps dividing the input width (28 for "
                             "784-pixel images).")
        return input_dim // self.timesteps

    def sequence(self, inputs):
        """The flat input as `(batch, timesteps, features)`: one image row per step."""
        return ops.reshape(inputs, (-1, self.timesteps, self.features(inputs.shape[-1])))

    def build(self, input_shape):
        shape = (input_shape[0], self.timesteps, self.features(input_shape[-1]))
        self.recurrent.build(shape)
        self.readout.build((input_shape[0], self.units))
        self.built = True

    def call(self, inputs, training: bool = False):
        h = self.recurrent(self.sequence(inputs), training=training)
        return self._sublayer(self.readout, h)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_units)

    @property
    def cell(self):
        """The recurrent cell (`EIRNNCell` or `INormRNNCell`)."""
        return self.recurrent.cell

    def recurrent_weights(self) -> list:
        """The effective recurrent weight matrix of each recurrent layer (one here), float64
        NumPy `(units, units)` (`EIRNNCell.recurrent_weight_matrix`): what
        `ei_keras.measures.recurrent_spectrum` measures (a model that declares this method
        is measured; the feed-forward networks do not)."""
        return [self.cell.recurrent_weight_matrix()]

    def hidden_preactivations(self, inputs, training: bool = False) -> list:
        """The input of the state's activation at every step, `(batch * timesteps, units)`
        (one entry: the recurrent layer), for the per-layer measures (moments)."""
        x = self.sequence(ops.convert_to_tensor(inputs))
        h = ops.zeros((ops.shape(x)[0], self.units), "float32")
        out = []
        for t in range(self.timesteps):
            step = self.cell.step(x[:, t], h)
            z = step[0] if isinstance(step, tuple) else step
            out.append(z)
            h = self.cell.activation(z)
        return [ops.reshape(ops.stack(out, axis=1), (-1, self.units))]

    @property
    def norm_weight(self) -> float:
        """`lambda` of the I-Norm cell (settable, as `EINetwork.norm_weight`)."""
        return self.recurrent.norm_weight if self.cell_type == "inorm" else self._norm_weight

    @norm_weight.setter
    def norm_weight(self, value) -> None:
        if self.cell_type == "inorm":
            self.recurrent.norm_weight = value
        self._norm_weight = float(value)

    def get_config(self):
        return {"name": self.name, "units": self.units, "cell": self.cell_type,
                "normalization": self.normalization,
                "error_normalization": self.error_normalization,
                "gradnorm_on": self.gradnorm_on, "subtractive_only": self.subtractive_only,
                "norm_weight": self.norm_weight, "trainable_ei": self.trainable_ei,
                "timesteps": self.timesteps, "output_units": self.output_units,
                "init_distribution": self.init_distribution, "epsilon": self.epsilon,
                "seed": self.seed, "split_bias": self.split_bias}
