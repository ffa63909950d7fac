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

The reference code uses `z` in place of `y` for `full`/`decorrelate`; we use `y` so
that `full` equals the gradient of a LayerNorm at `z` for *any* `z` (tested).
"""

from __future__ import annotations

import keras
from keras import ops

ERROR_NORMALIZATION_MODES = ("full", "center", "scale", "decorrelate", "lateral", "none")
"""The error-normalization modes of SPEC section 2, in the paper's order."""


def validate_mode(mode: str) -> str:
    """Return `mode` if it is a known error-normalization mode, else raise `ValueError`."""
    if mode is None:
        return "none"
    if not isinstance(mode, str) or mode not in ERROR_NORMALIZATION_MODES:
        raise ValueError(
            f"Expected `mode` to be one of {ERROR_NORMALIZATION_MODES}. Received: mode={mode!r}"
        )
    return mode


def _moments_last_axis(z, epsilon):
    mean = ops.mean(z, axis=-1, keepdims=True)
    centered = z - mean
    var = ops.mean(ops.square(centered), axis=-1, keepdims=True)
    inv_sigma = ops.rsqrt(var + epsilon)
    return centered * inv_sigma, inv_sigma


def normalized_error(g, z, mode: str, lateral_weights=None, epsilon: float = 1e-5):
    """The backward map of SPEC section 2 applied to an error `g` at the point `z`.

    This is the plain formula (no custom gradient) — what `normalize_error` sends back.
    Computed in float32 whatever the inputs' dtype, returned in `g`'s dtype.

    Args:
        g: upstream error, shape `(batch, units)`.
        z: the pre-activation at which the error is normalized, same shape.
        mode: one of `ERROR_NORMALIZATION_MODES`.
        lateral_weights: shape `(units,)`, positive, summing to 1 (`lateral` mode only).
        epsilon: added to the per-sample variance.

    Returns:
        The normalized error, same shape and dtype as `g`.
    """
    mode = validate_mode(mode)
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
        y, inv_sigma = _moments_last_axis(ops.cast(z, "float32"), epsilon)
        if mode == "scale":
            out = g32 * inv_sigma
        else:
            gy = ops.mean(g32 * y, axis=-1, keepdims=True)
            if mode == "decorrelate":
                out = g32 - y * gy
            else:  # full
                out = (g32 - ops.mean(g32, axis=-1, keepdims=True) - y * gy) * inv_sigma
    return ops.cast(out, dtype)


def normalize_error(z, mode: str = "full", lateral_weights=None, epsilon: float = 1e-5):
    """Identity in the forward pass; normalizes the error signal in the backward pass.

    Args:
        z: pre-activation, shape `(batch, units)`.
        mode: one of `"full"` (GradNorm), `"center"`, `"scale"`, `"decorrelate"`,
            `"lateral"`, `"none"`.
        lateral_weights: fixed positive pooling weights of shape `(units,)` summing to 1,
            required for `"lateral"`; they receive no gradient.
        epsilon: added to the per-sample variance in `full` and `scale`/`decorrelate`.

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
    if mode == "none":
        return z
    if isinstance(z, keras.Variable):
        # A custom gradient needs a tensor: TF rejects a variable, torch silently drops it.
        z = ops.copy(z)
    eps = float(epsilon)

    if mode == "lateral":
        if lateral_weights is None:
            raise ValueError("mode='lateral' needs `lateral_weights` (positive, summing to 1).")

        @ops.custom_gradient
        def _lateral(x, w):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return normalized_error(upstream, x, "lateral", w, eps), ops.zeros_like(w)

            return ops.copy(x), grad

        return _lateral(z, ops.stop_gradient(ops.convert_to_tensor(lateral_weights)))

    @ops.custom_gradient
    def _normalize(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return normalized_error(upstream, x, mode, None, eps)

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
