"""The private base class of the Dale's-principle dense layers: their shared arguments, checks
and weights (`EDense`, `EIDense`, `INormDense`)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ei_keras import backend as _backend
from ei_keras import roles
from ei_keras.constraints import dale_constraint
from ei_keras.initializers import (
    DISTRIBUTIONS,
    DaleExcitatory,
    RowStochastic,
    _seed_or_draw,
    balanced_inhibition,
)


def check_units(units, name: str = "units") -> int:
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
        raise ValueError(f"Expected `{name}` to be an integer >= 1. Received: {name}={units!r}")
    return int(units)


def default_inhibitory_units(units: int) -> int:
    """`ni = max(1, floor(0.1 ne))` (SPEC section 1)."""
    return max(1, units // 10)


def check_distribution(distribution: str) -> str:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Expected `init_distribution` to be one of {DISTRIBUTIONS}. "
            f"Received: init_distribution={distribution!r}"
        )
    return distribution


def _constant(value: np.ndarray):
    return lambda shape, dtype=None: keras.ops.convert_to_tensor(value, dtype=dtype or "float32")


def dense_t(x, w):
    """`x @ w.T` for weights stored in the paper's (out, in) orientation (one kernel on
    eager PyTorch, `keras.ops` elsewhere: `ei_keras.backend`)."""
    return _backend.dense_t(x, w)


class DaleDense(keras.layers.Layer):
    """What the Dale dense layers share: Dense's standard arguments, input handling and the
    excitatory weights `W_EE` `(units, d)` and bias; `init_inhibition` and
    `add_inhibitory_weights` add the subtractive population `W_IE`, `W_EI`.

    Arguments as in `keras.layers.Dense` (`use_bias`, `kernel_initializer`, ...), with
    Dale's principle kept whatever is passed:

    - `kernel_*` act on `W_EE`. `kernel_initializer` (default: the paper's
      `ei_keras.initializers.DaleExcitatory`) is called with Dense's kernel shape
      `(d, units)` (so fan-in based initializers scale as in Dense) and must draw values
      `>= 0`; a negative draw is a `ValueError` naming the fix.
    - `inhibitory_regularizer` / `inhibitory_constraint` act on every inhibitory weight.
      Their initial values follow from `W_EE` (the balanced initialisation), so they take no
      initializer.
    - A `*_constraint` on a non-negative weight is applied first and Dale's sign after it
      (`ei_keras.constraints.dale_constraint`), so no constraint can flip a sign.
    - `split_bias=True` makes the bias `b = bias_positive - bias_negative`, two
      non-negative variables (as the paper code's `split_bias`, for sign-preserving
      exponentiated-gradient training: each part keeps its sign, their difference does not).
      `bias_initializer`'s draw `b0` starts them at `1 + max(b0, 0)` and
      `1 + max(-b0, 0)` (the paper code: 1 and 1); `bias_regularizer` and
      `bias_constraint` act on each part.

    Inputs are `(..., d)` like `keras.layers.Dense`: every leading position is a sample.
    """

    def __init__(self, units, activation=None, use_bias: bool = True, kernel_initializer=None,
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, *,
                 init_distribution: str = "exponential", seed: int | None = None,
                 split_bias: bool = False, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = check_units(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        if not isinstance(split_bias, bool):
            raise ValueError(f"Expected `split_bias` to be a bool. Received: "
                             f"split_bias={split_bias!r}")
        self.split_bias = split_bias
        self.kernel_initializer = (None if kernel_initializer is None
                                   else keras.initializers.get(kernel_initializer))
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.init_distribution = check_distribution(init_distribution)
        self.seed = seed
        self.inhibitory_units = None

    def init_inhibition(self, inhibitory_units=None, trainable_ei: bool = True,
                        inhibitory_regularizer=None, inhibitory_constraint=None) -> None:
        """The subtractive population's arguments (`__init__` of the EI layers)."""
        self.inhibitory_units = (default_inhibitory_units(self.units)
                                 if inhibitory_units is None
                                 else check_units(inhibitory_units, "inhibitory_units"))
        self.trainable_ei = bool(trainable_ei)
        self.inhibitory_regularizer = keras.regularizers.get(inhibitory_regularizer)
        self.inhibitory_constraint = keras.constraints.get(inhibitory_constraint)

    # -- build -----------------------------------------------------------------------------
    def input_width(self, input_shape) -> int:
        """The feature width `d` of a `(..., d)` input; a clear error for anything else."""
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, ..., features) with a "
                f"known feature width, like keras.layers.Dense. Received: "
                f"input_shape={tuple(input_shape)}.")
        d = int(input_shape[-1])
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: d})
        return d

    def build_seed(self) -> int:
        """One integer seed per build: the layer's own, or a draw from NumPy's global state."""
        return _seed_or_draw(self.seed)

    def kernel_shape(self, d: int) -> tuple:
        """The Keras kernel shape `kernel_initializer` is called with: Dense's `(d, units)`."""
        return (d, self.units)

    def _initial_kernel(self, d: int, seed: int) -> np.ndarray:
        if self.kernel_initializer is None:
            return DaleExcitatory(distribution=self.init_distribution, seed=seed).sample(
                (self.units, d))
        w = np.asarray(keras.ops.convert_to_numpy(
            self.kernel_initializer(self.kernel_shape(d), dtype="float32")),
            np.float64).reshape(d, self.units).T
        if not np.isfinite(w).all() or w.min() < 0:
            raise ValueError(
                f"{type(self).__name__}'s kernel_initializer drew negative or non-finite values "
                f"(min {w.min():.3g}), but Dale's principle needs W_EE >= 0. Pass a "
                "non-negative initializer (e.g. keras.initializers.RandomUniform(0.0, 0.05)) "
                "or leave kernel_initializer=None for the paper's DaleExcitatory.")
        return w

    def add_excitatory_weights(self, d: int, seed: int) -> np.ndarray:
        """`W_EE` (units, d) >= 0 and the bias `b` (units,) (or none: `use_bias=False`).
        Returns `W_EE`'s initial values (float64, NumPy) for the initialisations that
        depend on it."""
        w_ee = self._initial_kernel(d, seed)
        self.W_EE = self.add_weight(
            name="W_EE", shape=(self.units, d), initializer=_constant(w_ee),
            regularizer=self.kernel_regularizer,
            constraint=dale_constraint(self.kernel_constraint))
        roles.declare(self.W_EE, roles.EXCITATORY)
        self.bias = self.bias_positive = self.bias_negative = None
        if self.use_bias and self.split_bias:
            b0 = np.asarray(keras.ops.convert_to_numpy(
                self.bias_initializer((self.units,), dtype="float32")), np.float64)
            for name, part in (("bias_positive", b0), ("bias_negative", -b0)):
                setattr(self, name, self.add_weight(
                    name=name, shape=(self.units,),
                    initializer=_constant(1.0 + np.maximum(part, 0.0)),
                    regularizer=self.bias_regularizer,
                    constraint=dale_constraint(self.bias_constraint)))
                roles.declare(getattr(self, name), roles.EXCITATORY)
        elif self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint)
            roles.declare(self.bias, roles.EXCITATORY)
        return w_ee

    def bias_term(self):
        """The bias `b` (`bias_positive - bias_negative` with `split_bias`), or None."""
        if self.bias_positive is not None:
            return self.bias_positive - self.bias_negative
        return self.bias

    def add_inhibitory_weight(self, name: str, value: np.ndarray, role: str,
                              non_negative: bool = True, trainable: bool = True):
        """One inhibitory weight with the layer's inhibitory regularizer and constraint,
        declared as `role` (`roles.INHIBITORY_INPUT`: onto the inhibitory population;
        `roles.INHIBITORY_OUTPUT`: from it), which routes its learning rate."""
        constraint = (dale_constraint(self.inhibitory_constraint) if non_negative
                      else self.inhibitory_constraint)
        return roles.declare(
            self.add_weight(name=name, shape=value.shape, initializer=_constant(value),
                            regularizer=self.inhibitory_regularizer, constraint=constraint,
                            trainable=trainable), role)

    def add_inhibitory_weights(self, w_ee: np.ndarray, seed: int):
        """`W_IE` (ni, d) = mean row of `W_EE`, `W_EI` (ne, ni) row-stochastic, both
        non-negative. Returns their initial values (float64, NumPy)."""
        w_ie = balanced_inhibition(w_ee, self.inhibitory_units)
        w_ei = RowStochastic(distribution=self.init_distribution, seed=seed + 1).sample(
            (self.units, self.inhibitory_units))
        self.W_IE = self.add_inhibitory_weight("W_IE", w_ie, roles.INHIBITORY_INPUT)
        self.W_EI = self.add_inhibitory_weight("W_EI", w_ei, roles.INHIBITORY_OUTPUT,
                                               trainable=self.trainable_ei)
        return w_ie, w_ei

    # -- call ------------------------------------------------------------------------------
    def project(self, x, w):
        """`x w^T` for a weight `w` (out, d) that reads the layer's input (`W_EE`,
        `W_IE`, `B_IE`); the convolutional layers apply it to every patch instead."""
        return dense_t(x, w)

    def excitatory_drive(self, x):
        """`x W_EE^T + b`."""
        e = self.project(x, self.W_EE)
        b = self.bias_term()
        return e if b is None else e + b

    @property
    def kernel(self):
        """The layer's effective kernel, read-only, in `keras.layers.Dense`'s `(d, units)`
        orientation: `W_EE^T` for `EDense`, `(W_EE - W_EI W_IE)^T` for the layers with a
        subtractive inhibitory population (`EIDense`; for `INormDense` the affine part before
        the normalization). `x @ layer.kernel + layer.bias` is `EDense`'s and `EIDense`'s
        pre-activation and `INormDense`'s numerator `e - s` (with `split_bias=True` the bias
        is `layer.bias_term()`). Convolutional layers give it in
        `keras.layers.Conv2D`'s `(kh, kw, in_channels, filters)` orientation.

        A tensor computed from the weights (it follows training); to change the weights,
        assign `W_EE`, `W_IE`, `W_EI`.
        """
        if getattr(self, "W_EE", None) is None:
            raise AttributeError(
                f"{type(self).__name__} '{self.name}' has no kernel before it is built. Call "
                "it on an input (or `layer.build(input_shape)`) first.")
        w = ops.convert_to_tensor(self.W_EE)
        if self.inhibitory_units is not None:
            w = w - ops.matmul(ops.convert_to_tensor(self.W_EI),
                               ops.convert_to_tensor(self.W_IE))
        return self.kernel_from_rows(w)

    def kernel_from_rows(self, w):
        """A weight in the paper's `(units, d)` orientation as a Keras kernel (Dense's
        `(d, units)`)."""
        return ops.transpose(w)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "init_distribution": self.init_distribution,
            "seed": self.seed,
            "use_bias": self.use_bias,
            "split_bias": self.split_bias,
            "kernel_initializer": (None if self.kernel_initializer is None
                                   else keras.initializers.serialize(self.kernel_initializer)),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
        }
        if self.inhibitory_units is not None:
            config.update({
                "inhibitory_units": self.inhibitory_units,
                "trainable_ei": self.trainable_ei,
                "inhibitory_regularizer": keras.regularizers.serialize(
                    self.inhibitory_regularizer),
                "inhibitory_constraint": keras.constraints.serialize(
                    self.inhibitory_constraint),
            })
        return config
