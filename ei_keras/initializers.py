"""Initializers of Dale's-principle layers (SPEC section 1).

All draws use NumPy from an integer seed, so the same seed gives bit-identical initial weights
under TensorFlow, JAX and PyTorch (the backends' own RNGs differ). Weights follow the paper's
shapes: `W_EE` is `(ne, d)`, `W_IE` `(ni, d)`, `W_EI` `(ne, ni)`.
"""

from __future__ import annotations

import math

import keras
import numpy as np

DISTRIBUTIONS = ("exponential", "lognormal")


def dale_scale(fan_in: int, units: int) -> float:
    """`sigma = sqrt(2 ne / (d (ne - 1)))`: the scale of the balanced EI initialisation.

    For `ne = 1` (no variance to balance) `ne - 1` is taken as 1.
    """
    return math.sqrt(2.0 * units / (fan_in * max(units - 1, 1)))


def _seed_or_draw(seed: int | None) -> int:
    # Unseeded draws come from NumPy's global state, which keras.utils.set_random_seed sets.
    return int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)


def draw_positive(shape, scale: float, distribution: str, rng: np.random.Generator) -> np.ndarray:
    """Positive weights: Exponential(scale), or lognormal with mean = std = `scale`."""
    if distribution == "exponential":
        return rng.exponential(scale, size=shape)
    if distribution == "lognormal":
        sigma = math.sqrt(math.log(2.0))  # variance = mean^2
        mu = math.log(scale) - 0.5 * sigma * sigma
        return rng.lognormal(mu, sigma, size=shape)
    raise ValueError(
        f"Expected `distribution` to be one of {DISTRIBUTIONS}. "
        f"Received: distribution={distribution!r}"
    )


class _NumpySeeded(keras.initializers.Initializer):
    def __init__(self, distribution: str = "exponential", seed: int | None = None):
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"Expected `distribution` to be one of {DISTRIBUTIONS}. "
                f"Received: distribution={distribution!r}"
            )
        self.distribution = distribution
        self.seed = seed

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(_seed_or_draw(self.seed))

    def get_config(self) -> dict:
        return {"distribution": self.distribution, "seed": self.seed}


@keras.saving.register_keras_serializable(package="ei_keras")
class DaleExcitatory(_NumpySeeded):
    """Positive excitatory weights `W_EE ~ Exponential(sigma)` (or lognormal), shape `(ne, d)`.

    `sigma = sqrt(2 ne / (d (ne - 1)))` unless `scale` is given.

    Example:

    >>> import keras
    >>> from ei_keras.initializers import DaleExcitatory
    >>> w = DaleExcitatory(seed=0)((100, 784))
    >>> bool(keras.ops.all(w >= 0))
    True
    """

    def __init__(self, scale: float | None = None, distribution: str = "exponential",
                 seed: int | None = None):
        super().__init__(distribution, seed)
        self.scale = scale

    def sample(self, shape) -> np.ndarray:
        """The initial values as a float64 NumPy array."""
        ne, d = shape
        scale = self.scale if self.scale is not None else dale_scale(d, ne)
        return draw_positive(shape, scale, self.distribution, self._rng())

    def __call__(self, shape, dtype=None):
        return keras.ops.convert_to_tensor(self.sample(shape), dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="ei_keras")
class RowStochastic(_NumpySeeded):
    """Positive weights whose rows sum to 1 (the `W_EI` initialisation): positive draws from
    the same law as `W_EE`, each row divided by its sum."""

    def sample(self, shape) -> np.ndarray:
        """The initial values as a float64 NumPy array."""
        w = draw_positive(shape, 1.0, self.distribution, self._rng())
        return w / w.sum(axis=-1, keepdims=True)

    def __call__(self, shape, dtype=None):
        return keras.ops.convert_to_tensor(self.sample(shape), dtype=dtype or "float32")


def balanced_inhibition(w_ee: np.ndarray, ni: int) -> np.ndarray:
    """`W_IE`: every one of its `ni` rows is the mean row of `W_EE` (column means), so
    that with row-stochastic `W_EI` the inhibitory path subtracts the mean excitatory drive."""
    return np.repeat(w_ee.mean(axis=0, keepdims=True), ni, axis=0)


def divisive_svd_init(w_ee: np.ndarray, w_ie: np.ndarray, w_ei: np.ndarray):
    """SVD initialisation of the divisive population (SPEC section 1).

    `W = W_EE - W_EI W_IE = U S V^T`; `B_IE = diag(S) V[:, :ne]^T` and `B_EI = 1/ne`, so
    that `((x B_IE^T)^2) B_EI^T = mean_j (W x)_j^2` exactly (`U` is orthogonal).

    Returns:
        `(B_IE, B_EI)` as float64 arrays of shapes `(ne, d)` and `(ne, ne)`.
    """
    ne, d = w_ee.shape
    if d < ne:
        raise ValueError(
            "The SVD initialisation of the divisive population needs input width d >= units "
            f"ne. Received: d={d}, ne={ne}. Use fewer units or subtractive_only=True."
        )
    w = w_ee.astype(np.float64) - w_ei.astype(np.float64) @ w_ie.astype(np.float64)
    _, s, vt = np.linalg.svd(w, full_matrices=False)  # vt: (ne, d)
    b_ie = s[:, None] * vt
    b_ei = np.full((ne, ne), 1.0 / ne)
    return b_ie, b_ei
