"""Recurrent Dale's-principle layers: `EIRNNCell`, `INormRNNCell` and `INormRNN`.

A recurrent step reads `u_t = [x_t, h_{t-1}]`, the concatenation of the step's input
`(batch, d)` and the previous state `(batch, units)`, with one weight per population over
that concatenation: `W_EE = [W_EE^x, W_EE^h]` `(units, d + units)`, `W_IE = [W_IE^x,
W_IE^h]` `(ni, d + units)` (and `B_IE` for the divisive population). Each step is then
exactly the dense layer (`EIDense`, `INormDense`) applied to `u_t`: same equations, same
initialisation, same gradient isolation, with `h_{t-1}` as more inputs.
"""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers.ei_dense import EIDense
from ei_keras.layers.inorm_dense import INormDense

RNN_NORMALIZATIONS = (None, "layer_norm")


class _RecurrentStep:
    """What the two cells share: the input width, the concatenated step input and the
    Keras-style `kernel` / `recurrent_kernel` views."""

    input_dim = None

    def input_width(self, input_shape) -> int:
        """The width of `u_t = [x_t, h_{t-1}]`: the step input's plus `units`."""
        self.input_dim = super().input_width(input_shape)
        return self.input_dim + self.units

    def step_input(self, inputs, h_prev, dtype):
        """`u_t = [x_t, h_{t-1}]` in `dtype`."""
        return ops.concatenate([ops.cast(inputs, dtype), ops.cast(h_prev, dtype)], axis=-1)

    @property
    def kernel(self):
        """Read-only: the effective input kernel `(W_EE^x - W_EI W_IE^x)^T`, `(d, units)`
        as `keras.layers.SimpleRNNCell.kernel` (for `INormRNNCell`: the affine part before
        the normalization)."""
        return super().kernel[: self.input_dim]

    @property
    def recurrent_kernel(self):
        """Read-only: the effective recurrent kernel `(W_EE^h - W_EI W_IE^h)^T`,
        `(units, units)`, as `keras.layers.SimpleRNNCell.recurrent_kernel`: `h_{t-1} @
        recurrent_kernel` is the state's part of the (numerator of the) pre-activation."""
        return super().kernel[self.input_dim:]

    def recurrent_weight_matrix(self):
        """The effective recurrent weight `W_EE^h - W_EI W_IE^h`, `(units, units)` (rows:
        the units receiving, columns: the state read), in float64 NumPy from the weights'
        current values, for measures outside the compiled step (`recurrent_kernel` is its
        transpose, as a float32 tensor).

        For `INormRNNCell` it is the recurrent part of the normalization's numerator
        `e_t - s_t`; the pre-activation is that divided by `delta_t` unit by unit (see
        `ei_keras.measures.recurrent_spectrum` for what that means for its spectrum)."""
        import numpy as np

        def part(name):
            return np.asarray(ops.convert_to_numpy(getattr(self, name)), np.float64)

        w_ee, w_ie, w_ei = part("W_EE"), part("W_IE"), part("W_EI")
        return w_ee[:, self.input_dim:] - w_ei @ w_ie[:, self.input_dim:]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)


@keras.saving.register_keras_serializable(package="ei_keras")
class EIRNNCell(_RecurrentStep, EIDense):
    """A Dale's-principle recurrent cell, for `keras.layers.RNN`.

    With `u_t = [x_t, h_{t-1}]` (input `x_t` `(batch, d)`, state `h_{t-1}`
    `(batch, units)`):

    `z_t = W_EE^x x_t + W_EE^h h_{t-1} + b - W_EI (W_IE^x x_t + W_IE^h h_{t-1})`
    (that is `EIDense`'s `z` on `u_t`: `u_t W_EE^T - (u_t W_IE^T) W_EI^T + b`),
    `h_t = activation(z_t)`, or with `normalization="layer_norm"`
    `h_t = activation(LayerNorm(z_t))` (`keras.layers.LayerNormalization(center=False,
    scale=False)` over the units, as `EINetwork`'s LN). The output is `h_t`, the state
    `h_t`; `h_0 = 0` unless an initial state is given.

    `W_EE = [W_EE^x, W_EE^h]` `(units, d + units)`, `W_IE = [W_IE^x, W_IE^h]`
    `(ni, d + units)` and `W_EI` `(units, ni)` stay >= 0 (`NonNeg` after every update, as
    `EIDense`); `b` is free. With the default ReLU, `h_t >= 0`, so `W_EE^h` is excitatory
    and `W_IE^h` drives the inhibitory population, as Dale's principle asks.

    Initialisation: `EIDense`'s on `u_t` (fan-in `d + units`): `W_EE ~
    Exponential(sigma)`, `sigma = sqrt(2 units / ((d + units)(units - 1)))`, every row of
    `W_IE` the mean row of `W_EE`, rows of `W_EI` summing to 1. Why the dense
    initialisation carries over: the step is a dense layer on `u_t`, so its two guarantees
    hold for the concatenation — `z_t` starts centred over the units for any `u_t` (the
    inhibitory path subtracts the mean excitatory drive), and the effective weight
    `W_EE - W_EI W_IE` has zero-mean entries of variance `sigma^2 ~ 2 / (d + units)`, He's
    scale for a ReLU layer with fan-in `d + units`: the input and the state share the
    pre-activation's variance, and the centred recurrent block `W^h` (units x units) has
    spectral radius about `sqrt(2 units / (d + units))` (below `sqrt(2)`), halved in
    energy by the ReLU, so activity neither dies nor explodes at the start (measured: the
    `rnn_ei` preset trains on row-sequential Fashion-MNIST at its defaults).

    Takes `EIDense`'s arguments (`kernel_*` act on `W_EE`, and `kernel_initializer` is
    called with the `(d + units, units)` kernel shape), plus:

    Args:
        units: state size = output size (excitatory units).
        activation: the state's nonlinearity (default `"relu"`: keeps `h >= 0`).
        use_bias: as in `EIDense`.
        kernel_initializer: as in `EIDense`.
        bias_initializer: as in `EIDense`.
        kernel_regularizer: as in `EIDense`.
        bias_regularizer: as in `EIDense`.
        kernel_constraint: as in `EIDense`.
        bias_constraint: as in `EIDense`.
        normalization: keyword-only, `None` or `"layer_norm"` (LayerNorm of `z_t` before the
            activation, no gain or bias).
        epsilon: keyword-only, LayerNorm's epsilon.
        **kwargs: `EIDense`'s keyword-only arguments (`inhibitory_units`,
            `init_distribution`, `trainable_ei`, `seed`, `split_bias`, ...) and base
            `keras.layers.Layer` arguments.

    Attributes:
        kernel: read-only, the effective input kernel `(d, units)`.
        recurrent_kernel: read-only, the effective recurrent kernel `(units, units)`.

    Input shape:
        One step, as a Keras RNN cell: `(batch_size, d)` (`keras.layers.RNN` feeds it
        `(batch_size, timesteps, d)` sequences).

    Output shape:
        `(batch_size, units)`, the new state `h_t` (also the one state).

    Call arguments:
        - `inputs`: the step's input `x_t`.
        - `states`: `[h_{t-1}]`.
        - `training`: unused (Keras' cell signature).

    Example:

    >>> import numpy as np, keras
    >>> from ei_keras.layers import EIRNNCell
    >>> rnn = keras.layers.RNN(EIRNNCell(16, seed=0), return_sequences=True)
    >>> rnn(np.random.rand(4, 7, 28).astype("float32")).shape
    (4, 7, 16)

    Reference:
        Cornford et al. (2021) (the EI layer); Li et al. (2023), "Learning better with
        Dale's Law: a spectral perspective" (recurrent Dale networks).
    """

    def __init__(self, units: int, activation="relu", use_bias: bool = True,
                 kernel_initializer=None, bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None, *,
                 normalization: str | None = None, epsilon: float = 1e-5, **kwargs):
        super().__init__(units, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, None, kernel_constraint,
                         bias_constraint, **kwargs)
        if normalization not in RNN_NORMALIZATIONS:
            raise ValueError(f"Expected `normalization` to be one of {RNN_NORMALIZATIONS}. "
                             f"Received: normalization={normalization!r}")
        if not epsilon > 0:
            raise ValueError(f"Expected `epsilon` > 0. Received: epsilon={epsilon!r}")
        self.normalization = normalization
        self.epsilon = float(epsilon)
        self.layer_norm = (keras.layers.LayerNormalization(
            center=False, scale=False, epsilon=self.epsilon, name="layer_norm")
            if normalization == "layer_norm" else None)

    @property
    def state_size(self) -> int:
        return self.units

    @property
    def output_size(self) -> int:
        return self.units

    def build(self, input_shape):
        super().build(input_shape)
        if self.layer_norm is not None:
            self.layer_norm.build((input_shape[0], self.units))

    def step(self, inputs, h_prev):
        """`z_t`, the input of the activation (after LayerNorm when
        `normalization="layer_norm"`)."""
        z = self.raw_preactivation(self.step_input(inputs, h_prev, self.compute_dtype))
        return z if self.layer_norm is None else self.layer_norm(z)

    def call(self, inputs, states, training=None):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        h = self.activation(self.step(inputs, h_prev))
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "normalization": self.normalization,
                "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="ei_keras")
class INormRNNCell(_RecurrentStep, INormDense):
    """A recurrent cell whose pre-activation is normalized at every step by learned
    subtractive and divisive inhibition; use it in `INormRNN` (a `keras.layers.RNN`
    that adds its normalization loss).

    `INormDense` on `u_t = [x_t, h_{t-1}]` at every step. With `us = stop_gradient(u_t)`:

    - excitatory drive `e_t = W_EE^x x_t + W_EE^h h_{t-1} + b` (`u_t W_EE^T + b`)
    - subtractive `s_t = W_EI (W_IE us)`; divisive
      `delta_t = sqrt(B_EI (B_IE us)^2 + eps)` (1 with `subtractive_only`)
    - `z_t = (e_t - sg(s_t)) / sg(delta_t)`, error normalization of `z_t` (identity forward;
      the `error_normalization` mode acts on the error reaching `z_t` at that step), then
      `h_t = activation(z_t)`.

    Normalization loss, averaged over the steps (and over the batch): with
    `zh_t = (sg(e_t) - s_t) / delta_t` and
    `l_t = (mean_j zh_t)^2 + (var_j zh_t - 1)^2` (subtractive-only: the first term),
    `L_norm = norm_weight * mean_batch[(1/T) sum_t l_t]` over the `T` steps of the
    sequence (under a mask: over each sample's unmasked steps). Its gradient reaches only
    `W_IE`, `W_EI`, `B_IE`, `B_EI` (no error flows through time on it: its inputs are
    stopped); the task loss reaches only `W_EE`, `b`, the input and the earlier states
    (through `e_t`), never the inhibitory weights — exactly `INormDense`'s isolation at
    every step. The cell carries `(sum_t l_t, number of steps)` per sample as a second
    state `(batch, 2)`; `INormRNN` starts it at 0 and turns it into `L_norm`.

    Initialisation: `INormDense`'s on `u_t` (see `EIRNNCell` for why the dense
    initialisation carries over); the SVD initialisation of the divisive population on the
    whole `W = W_EE - W_EI W_IE` `(units, d + units)` (always `d + units >= units`), so
    that at initialisation `delta_t^2 = mean_j (W u_t)_j^2 + eps` at every step.

    Args:
        units: state size = output size (excitatory units).
        activation: the state's nonlinearity (default `"relu"`).
        use_bias: as in `INormDense`.
        kernel_initializer: as in `INormDense`.
        bias_initializer: as in `INormDense`.
        kernel_regularizer: as in `INormDense`.
        bias_regularizer: as in `INormDense`.
        kernel_constraint: as in `INormDense`.
        bias_constraint: as in `INormDense`.
        **kwargs: `INormDense`'s keyword-only arguments (`error_normalization`,
            `gradnorm_on`, `subtractive_only`, `norm_weight`, `inhibitory_units`,
            `trainable_ei`, `epsilon`, `init_distribution`, `seed`, ...) and base
            `keras.layers.Layer` arguments.

    Attributes:
        kernel: read-only, the input part of the affine numerator, `(d, units)`.
        recurrent_kernel: read-only, its recurrent part, `(units, units)`.
        inhibitory_variables: the trainable inhibitory weights (what the normalization loss
            trains; `INormRNN.normalization_variables`).

    Input shape:
        One step, as a Keras RNN cell: `(batch_size, d)`.

    Output shape:
        `(batch_size, units)`, the new state `h_t`; the states are `[h_t, acc_t]` with
        `acc_t` `(batch_size, 2)` the running `(sum of l_t, steps)`.

    Call arguments:
        - `inputs`: the step's input `x_t`.
        - `states`: `[h_{t-1}, acc_{t-1}]`.
        - `training`: unused (Keras' cell signature).

    Example:

    >>> import numpy as np
    >>> from ei_keras.layers import INormRNN, INormRNNCell
    >>> rnn = INormRNN(INormRNNCell(16, error_normalization="full", seed=0))
    >>> rnn(np.random.rand(4, 7, 28).astype("float32")).shape
    (4, 16)
    >>> len(rnn.losses)  # the normalization loss, averaged over the 7 steps
    1

    Reference:
        Eyono et al. (2026), "Learned inhibitory normalization".
    """

    def __init__(self, units: int, activation="relu", use_bias: bool = True,
                 kernel_initializer=None, bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(units, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, None, kernel_constraint,
                         bias_constraint, **kwargs)
        #: Set by the `INormRNN` that runs the cell (the layer that adds its loss).
        self.owned_by_inorm_rnn = False

    @property
    def state_size(self) -> list:
        return [self.units, 2]

    @property
    def output_size(self) -> int:
        return self.units

    @property
    def inhibitory_variables(self) -> list:
        """The trainable inhibitory weights (`INormDense.normalization_variables`)."""
        return INormDense.normalization_variables.fget(self)

    @property
    def normalization_variables(self):
        """Not the cell's: `INormRNN` adds the loss and declares them (one owner, so the
        dual-loss trainer counts each penalty once). `hasattr(cell, ...)` is False."""
        raise AttributeError("INormRNNCell's normalization variables are declared by its "
                             "INormRNN (`INormRNN.normalization_variables`)")

    def step(self, inputs, h_prev):
        """One step: `(z_t, l_t)`, the normalized pre-activation (before error normalization)
        and the unweighted per-sample loss `(batch,)`, in float32."""
        u = self.step_input(inputs, h_prev, "float32")
        e, s, delta = self._parts(u)
        z = e - ops.stop_gradient(s)
        if delta is not None:
            z = z / ops.stop_gradient(delta)
        return z, ops.squeeze(self.normalization_loss_per_sample(e, s, delta), -1)

    def call(self, inputs, states, training=None):
        if not self.owned_by_inorm_rnn:
            raise ValueError(
                "INormRNNCell must run inside ei_keras.layers.INormRNN (a keras.layers.RNN that "
                "adds the cell's normalization loss); keras.layers.RNN(cell) would never train "
                "its inhibitory weights. Use INormRNN(INormRNNCell(...), return_sequences=..., "
                "stateful=...) in place of keras.layers.RNN(INormRNNCell(...)).")
        h_prev, acc = states[0], states[1]
        z, loss = self.step(inputs, h_prev)
        h = self.activation(ops.cast(self.normalize_error(z), self.compute_dtype))
        acc = acc + ops.cast(ops.stack([loss, ops.ones_like(loss)], axis=-1), acc.dtype)
        return h, [h, acc]

    def normalization_loss_from_state(self, acc):
        """`L_norm = norm_weight * mean_batch[sum_t l_t / steps]` from the carried state."""
        acc = ops.cast(acc, "float32")
        per_sample = acc[:, 0] / ops.maximum(acc[:, 1], 1.0)
        return self.norm_weight_tensor() * ops.mean(per_sample)


@keras.saving.register_keras_serializable(package="ei_keras")
class INormRNN(keras.layers.RNN):
    """`keras.layers.RNN` for an `INormRNNCell`: runs the cell and adds its normalization
    loss (`norm_weight * L_norm`, averaged over the steps: `INormRNNCell`) with `add_loss`.

    Takes `keras.layers.RNN`'s arguments and behaves as it does (`return_sequences`,
    `return_state`, `go_backwards`, `stateful`, `unroll`, masks, `initial_state`); the
    returned and the stateful states are the cell's `h` only: the loss accumulator is
    internal and starts at 0 on every call (a stateful layer carries `h` across batches,
    and each batch's loss is its own steps').

    `normalization_variables` are the cell's inhibitory weights, so
    `ei_keras.models.DualLossModel` trains them on this layer's loss and everything else
    on the task loss.

    Args:
        cell: an `INormRNNCell`.
        return_sequences: as in `keras.layers.RNN`.
        return_state: as in `keras.layers.RNN` (returns `h` as the one state).
        go_backwards: as in `keras.layers.RNN`.
        stateful: as in `keras.layers.RNN`.
        unroll: as in `keras.layers.RNN`.
        zero_output_for_mask: as in `keras.layers.RNN`.
        **kwargs: base `keras.layers.Layer` arguments.

    Input shape:
        3-D tensor `(batch_size, timesteps, d)`, as `keras.layers.RNN`.

    Output shape:
        `(batch_size, timesteps, units)` with `return_sequences`, else
        `(batch_size, units)`; with `return_state`, also the last state `(batch_size, units)`.

    Call arguments:
        - `sequences`: the input sequences.
        - `initial_state`: `h_0` (or `[h_0]`); default zeros (stateful: the carried state).
        - `mask`: `(batch_size, timesteps)` booleans; masked steps keep the state and add
          no loss.
        - `training`: Keras' training flag.

    Example:

    >>> import numpy as np
    >>> from ei_keras.layers import INormRNN, INormRNNCell
    >>> rnn = INormRNN(INormRNNCell(8, seed=0), return_sequences=True, return_state=True)
    >>> out, h = rnn(np.random.rand(2, 5, 3).astype("float32"))
    >>> out.shape, h.shape
    ((2, 5, 8), (2, 8))
    """

    def __init__(self, cell, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 zero_output_for_mask: bool = False, **kwargs):
        if not isinstance(cell, INormRNNCell):
            raise ValueError(f"INormRNN runs an INormRNNCell (use keras.layers.RNN for other "
                             f"cells). Received: cell={cell!r}")
        cell.owned_by_inorm_rnn = True
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         zero_output_for_mask=zero_output_for_mask, **kwargs)

    @property
    def normalization_variables(self) -> list:
        """The cell's trainable inhibitory weights `W_IE`, `W_EI`, `B_IE`, `B_EI`: what
        `ei_keras.models.DualLossModel` trains on this layer's loss."""
        return self.cell.inhibitory_variables

    @property
    def norm_weight(self) -> float:
        """`lambda` of the cell's normalization loss; settable during training."""
        return self.cell.norm_weight

    @norm_weight.setter
    def norm_weight(self, value) -> None:
        self.cell.norm_weight = value

    def call(self, sequences, initial_state=None, mask=None, training=False):
        output, loss = self.outputs_and_loss(sequences, initial_state, mask, training)
        self.add_loss(loss)
        return output

    def outputs_and_loss(self, sequences, initial_state=None, mask=None, training=False):
        """What `call` returns and the normalization loss it adds (`norm_weight * L_norm`),
        without adding it (the loss as a value, e.g. to differentiate)."""
        sequences = ops.convert_to_tensor(sequences)
        mask = None if mask is None else ops.convert_to_tensor(mask)
        batch = ops.shape(sequences)[0]
        if initial_state is not None:
            h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        elif self.stateful:
            h0 = self.states[0]
        else:
            h0 = ops.zeros((batch, self.cell.units), self.cell.compute_dtype)
        acc0 = ops.zeros((batch, 2), self.cell.compute_dtype)
        return_state = self.return_state
        self.return_state = True
        try:
            output, h, acc = super().call(sequences, initial_state=[h0, acc0], mask=mask,
                                          training=training)
        finally:
            self.return_state = return_state
        loss = self.cell.normalization_loss_from_state(acc)
        return ((output, h) if return_state else output), loss

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        shape = super().compute_output_shape(sequences_shape)
        return shape[:2] if self.return_state else shape

    def compute_mask(self, _, mask):
        out = super().compute_mask(_, mask)
        return out[:2] if self.return_state else out
