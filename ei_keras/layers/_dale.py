"""Shared argument checks and weight construction of the Dale's-principle layers (private)."""

from __future__ import annotations

import keras
import numpy as np

from ei_keras import backend as _backend
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
    """``ni = max(1, floor(0.1 ne))`` (SPEC section 1)."""
    return max(1, units // 10)


def check_distribution(distribution: str) -> str:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Expected `init_distribution` to be one of {DISTRIBUTIONS}. "
            f"Received: init_distribution={distribution!r}"
        )
    return distribution


def input_width(layer: keras.layers.Layer, input_shape) -> int:
    """The feature width ``d`` of a ``(batch, d)`` input; a clear error for anything else."""
    if len(input_shape) != 2 or input_shape[-1] is None:
        raise ValueError(
            f"{type(layer).__name__} expects a 2D input (batch, features) with a known feature "
            f"width. Received: input_shape={tuple(input_shape)}. Flatten images first "
            "(e.g. keras.layers.Flatten())."
        )
    return int(input_shape[-1])


def build_seed(layer) -> int:
    """One integer seed per layer build: the layer's own, or a draw from NumPy's global state."""
    return _seed_or_draw(layer.seed)


def _constant(value: np.ndarray):
    return lambda shape, dtype=None: keras.ops.convert_to_tensor(value, dtype=dtype or "float32")


def add_excitatory_weights(layer, d: int, seed: int, use_bias: bool = True) -> np.ndarray:
    """``W_EE`` (ne, d) >= 0 and the free bias ``b`` (ne,). Returns ``W_EE``'s initial values
    (float64, NumPy) for the initialisations that depend on it."""
    w_ee = DaleExcitatory(distribution=layer.init_distribution, seed=seed).sample((layer.units, d))
    layer.W_EE = layer.add_weight(
        name="W_EE",
        shape=(layer.units, d),
        initializer=_constant(w_ee),
        constraint=keras.constraints.NonNeg(),
    )
    layer.bias = (
        layer.add_weight(name="bias", shape=(layer.units,), initializer="zeros")
        if use_bias
        else None
    )
    return w_ee


def add_inhibitory_weights(layer, w_ee: np.ndarray, seed: int, trainable_ei: bool = True):
    """``W_IE`` (ni, d) = mean row of ``W_EE``, ``W_EI`` (ne, ni) row-stochastic; both >= 0.
    Returns their initial values (float64, NumPy)."""
    ni, d = layer.inhibitory_units, w_ee.shape[1]
    w_ie = balanced_inhibition(w_ee, ni)
    w_ei = RowStochastic(distribution=layer.init_distribution, seed=seed + 1).sample(
        (layer.units, ni)
    )
    layer.W_IE = layer.add_weight(
        name="W_IE", shape=(ni, d), initializer=_constant(w_ie),
        constraint=keras.constraints.NonNeg(),
    )
    layer.W_EI = layer.add_weight(
        name="W_EI", shape=(layer.units, ni), initializer=_constant(w_ei),
        constraint=keras.constraints.NonNeg(), trainable=trainable_ei,
    )
    return w_ie, w_ei


def dense_t(x, w):
    """``x @ w.T`` for weights stored in the paper's (out, in) orientation (one kernel on
    eager PyTorch, ``keras.ops`` elsewhere: ``ei_keras.backend``)."""
    return _backend.dense_t(x, w)
