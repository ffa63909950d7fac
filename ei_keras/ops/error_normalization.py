"""Error-signal normalization ("GradNorm" and its ablations): identity forward, normalized backward.

SPEC section 2. Per sample, on a layer's (normalized) pre-activation `z` with upstream error
`g = dL/dz`, `mu = mean_j z`, `sigma = sqrt(var_j z + eps)`, `y = (z - mu) / sigma`:

| mode | backward `g ->` | paper name |
|:---|:---|:---|
| `full` | `(g - mean_j g - y mean_j(g y)) / sigma` | GradNorm (= LayerNorm's backward) |
| `center` | `g - mean_j g` | centering only |
| `scale` | `g / sigma` | scaling only |
| `decorrelate` | `g - y mean_j(g y)` | orthogonalize only |
| `lateral` | `g - sum_j w_j g_j` (fixed `w > 0`) | lateral inhibition (Theorem 1) |
| `none` | `g` | I-Norm without GradNorm |

The reference code uses `z` in place of `y` for `full`/`decorrelate`; by default
(`gradnorm_on="y"`) we use `y` so that `full` equals the gradient of a LayerNorm at `z`
for *any* `z` (tested). `gradnorm_on="z"` is the paper's formula, for the ablation:

* `full`: `(g - mean_j g - y mean_j(g y)) / sigma` (`y`) or
  `(g - mean_j g - z mean_j(g z)) / sigma` (`z`);
* `decorrelate`: `g - y mean_j(g y)` (`y`) or `g - z mean_j(g z)` (`z`).

The two agree when `z` is already normalized (`mean_j z = 0`, `var_j z = 1`); the other
modes do not use `y` and are the same under both.
"""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.backend import custom_gradient

ERROR_NORMALIZATION_MODES = ("full", "center", "scale", "decorrelate", "lateral", "none")
"""The error-normalization modes of SPEC section 2, in the paper's order."""

GRADNORM_ON = ("y", "z")
"""Where ``full``/``decorrelate`` project the error out: ``y`` (normalized ``z``, ours: exactly
LayerNorm's backward) or ``z`` itself (the paper code's formula)."""


def validate_gradnorm_on(gradnorm_on: str) -> str:
    """Return `gradnorm_on` if it is `"y"` or `"z"`, else raise `ValueError`."""
    if not isinstance(gradnorm_on, str) or gradnorm_on not in GRADNORM_ON:
        raise ValueError(f"Expected `gradnorm_on` to be one of {GRADNORM_ON}. "
                         f"Received: gradnorm_on={gradnorm_on!r}")
    return gradnorm_on


def validate_mode(mode: str, name: str = "mode") -> str:
    """Return `mode` if it is a known error-normalization mode, else raise `ValueError`
    naming the argument `name` the caller was given it as (`error_normalization` for the
    layers and models)."""
    if mode is None:
        return "none"
    if not isinstance(mode, str) or mode not in ERROR_NORMALIZATION_MODES:
        raise ValueError(
            f"Expected `{name}` to be one of {ERROR_NORMALIZATION_MODES}. Received: "
            f"{name}={mode!r}"
        )
    return mode


def _moments_last_axis(z, epsilon):
    mean = ops.mean(z, axis=-1, keepdims=True)
    centered = z - mean
    var = ops.mean(ops.square(centered), axis=-1, keepdims=True)
    inv_sigma = ops.rsqrt(var + epsilon)
    return centered * inv_sigma, inv_sigma


def normalized_error(g, z, mode: str, lateral_weights=None, epsilon: float = 1e-5,
                     gradnorm_on: str = "y"):
    """The backward map of SPEC section 2 applied to an error `g` at the point `z`.

    This is the plain formula (no custom gradient) — what `normalize_error` sends back.
    Computed in float32 whatever the inputs' dtype, returned in `g`'s dtype.

    Args:
        g: upstream error, shape `(batch, units)`.
        z: the pre-activation at which the error is normalized, same shape.
        mode: one of `ERROR_NORMALIZATION_MODES`.
        lateral_weights: shape `(units,)`, positive, summing to 1 (`lateral` mode only).
        epsilon: added to the per-sample variance.
        gradnorm_on: `"y"` (default) or `"z"`: the vector `full`/`decorrelate` project
            the error out of (module docstring).

    Returns:
        The normalized error, same shape and dtype as `g`.
    """
    mode = validate_mode(mode)
    gradnorm_on = validate_gradnorm_on(gradnorm_on)
    dtype = g.dtype
    g32 = ops.cast(g, "float32")
    if mode == "none":
        return g
    if mode == "center":
        out = g32 - ops.mean(g32, axis=-1, keepdims=True)
    elif mode == "lateral":
        if lateral_weights is None:
            raise ValueError("mode='lateral' needs `lateral_weights` (positive, summing to 1).")
        w = ops.cast(lateral_weights, "float32")
        out = g32 - ops.sum(g32 * w, axis=-1, keepdims=True)
    else:
        z32 = ops.cast(z, "float32")
        y, inv_sigma = _moments_last_axis(z32, epsilon)
        if gradnorm_on == "z":
            y = z32  # the paper code's formula: project out z itself, not the normalized y
        if mode == "scale":
            out = g32 * inv_sigma
        else:
            gy = ops.mean(g32 * y, axis=-1, keepdims=True)
            if mode == "decorrelate":
                out = g32 - y * gy
            else:  # full
                out = (g32 - ops.mean(g32, axis=-1, keepdims=True) - y * gy) * inv_sigma
    return ops.cast(out, dtype)


def normalize_error(z, mode: str = "full", lateral_weights=None, epsilon: float = 1e-5,
                    gradnorm_on: str = "y"):
    """Identity in the forward pass; normalizes the error signal in the backward pass.

    Args:
        z: pre-activation, shape `(batch, units)`.
        mode: one of `"full"` (GradNorm), `"center"`, `"scale"`, `"decorrelate"`,
            `"lateral"`, `"none"`.
        lateral_weights: fixed positive pooling weights of shape `(units,)` summing to 1,
            required for `"lateral"`; they receive no gradient.
        epsilon: added to the per-sample variance in `full` and `scale`/`decorrelate`.
        gradnorm_on: `"y"` (default: `full` is LayerNorm's backward) or `"z"` (the paper
            code's formula); only `full` and `decorrelate` depend on it.

    Returns:
        A tensor equal to `z`.

    Example:

    >>> import numpy as np, keras
    >>> from ei_keras.ops import normalize_error
    >>> z = keras.ops.convert_to_tensor(np.random.rand(4, 8).astype("float32"))
    >>> bool(keras.ops.all(normalize_error(z, "full") == z))
    True

    Reference:
        Eyono et al. (2026), section "Error-signal normalization".
    """
    mode = validate_mode(mode)
    gradnorm_on = validate_gradnorm_on(gradnorm_on)
    if mode == "none":
        return z
    if isinstance(z, keras.Variable):
        # A custom gradient needs a tensor: TF rejects a variable, torch silently drops it.
        z = ops.copy(z)
    eps = float(epsilon)

    if mode == "lateral":
        if lateral_weights is None:
            raise ValueError("mode='lateral' needs `lateral_weights` (positive, summing to 1).")

        @custom_gradient
        def _lateral(x, w):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return normalized_error(upstream, x, "lateral", w, eps), ops.zeros_like(w)

            return ops.copy(x), grad

        return _lateral(z, ops.stop_gradient(ops.convert_to_tensor(lateral_weights)))

    @custom_gradient
    def _normalize(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return normalized_error(upstream, x, mode, None, eps, gradnorm_on)

        return ops.copy(x), grad

    return _normalize(z)


def lateral_pooling_weights(units: int, seed: int | None = None, dtype: str = "float32"):
    """Fixed random lateral-inhibition weights: uniform draws normalized to sum to 1.

    Drawn with NumPy from `seed` so the same seed gives the same weights on every backend.
    """
    import numpy as np

    if units < 1:
        raise ValueError(f"Expected `units` >= 1. Received: units={units}")
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 1.0, size=units) + 1e-12  # strictly positive
    return keras.ops.convert_to_tensor((a / a.sum()).astype(dtype))
