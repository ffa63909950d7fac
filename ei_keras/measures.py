"""Measures of SPEC section 5, as functions and as per-epoch Keras callbacks.

- moments: per hidden layer, `mean_batch(mean_j z)` and `mean_batch(var_j z)` of the input
  of the ReLU (after LayerNorm or I-Norm division); LayerNorm's target is `(0, 1)`. For a
  convolutional layer `j` runs over the whole `(H, W, C)` map, and LayerNorm below is taken
  over it too (`keras.layers.LayerNormalization(axis=(-3, -2, -1))`).
- output alignment: per hidden layer, the cosine between `relu(LN(z_raw))` and the layer's own
  output `relu(z)` over a probe batch, where `z_raw` is the layer's un-normalized Dale
  pre-activation (`x W_EE^T + b - (x W_IE^T) W_EI^T`).
- gradient alignment: per hidden layer, the cosine between the task-loss gradient w.r.t.
  `W_EE` under the network's own backward and under a "LayerNorm twin" with the same weights
  in which every hidden layer computes `relu(LN(z_raw))`.

- recurrent spectrum: per recurrent layer, the normalized SVD entropy (and the spectral
  radius) of its effective recurrent weight matrix (`recurrent_spectrum`), for models that
  declare `recurrent_weights()` (`RecurrentModel`); a run records it at initialization and
  at the end of training.

The callbacks write their values into the epoch's `logs` (so `History`, `CSVLogger` and
`history.csv` get them) as `hidden_<k>_mean`, `hidden_<k>_var`,
`output_alignment_<k>`, `gradient_alignment_<k>`. They evaluate a fixed probe batch once
per epoch, outside the compiled training step.
"""

from __future__ import annotations

import typing

import keras
import numpy as np
from keras import ops

from ei_keras import roles
from ei_keras.constraints import is_dale_constraint
from ei_keras.models.gradients import gradients


def _np(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def moments(model, x) -> list[tuple[float, float]]:
    """`[(mean_batch(mean_j z), mean_batch(var_j z)) for each hidden layer]`."""
    out = []
    for z in model.hidden_preactivations(x):
        z = _np(z)
        z = z.reshape(len(z), -1)  # a conv map: every unit of (H, W, C)
        out.append((float(z.mean(axis=1).mean()), float(z.var(axis=1).mean())))
    return out


def _layer_norm(z, epsilon=1e-5):
    axes = tuple(range(1, len(z.shape)))  # the units: the last axis, or a conv map's (H, W, C)
    mean = ops.mean(z, axis=axes, keepdims=True)
    var = ops.var(z, axis=axes, keepdims=True)
    return (z - mean) * ops.rsqrt(var + epsilon)


def raw_preactivation(layer, x):
    """The un-normalized Dale pre-activation `x W_EE^T + b - (x W_IE^T) W_EI^T`: the
    layer's own `raw_preactivation(x)` (`MeasuredLayer`)."""
    return _measured(layer).raw_preactivation(x)


@typing.runtime_checkable
class MeasuredLayer(typing.Protocol):
    """What a hidden layer provides to be measured (the E-I layers of `ei_keras.layers` do):

    - `raw_preactivation(x)`: its pre-activation before any normalization and activation
      (the Dale pre-activation `x W_EE^T + b - (x W_IE^T) W_EI^T`), which the LayerNorm
      twin normalizes;
    - `W_EE`: the excitatory weight whose task gradient `gradient_alignment` compares.
    """

    W_EE: typing.Any

    def raw_preactivation(self, x): ...


def _measured(layer) -> MeasuredLayer:
    if not isinstance(layer, MeasuredLayer):
        raise TypeError(
            f"Hidden layer {layer.name!r} ({type(layer).__name__}) cannot be measured: the "
            "LayerNorm-alignment measures need a layer with a `raw_preactivation(x)` method "
            "and a `W_EE` weight (ei_keras.measures.MeasuredLayer). Give the layer those, or "
            "leave the alignment measures off for this model.")
    return layer


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def output_alignment(model, x) -> list[float]:
    """Per hidden layer: cosine between `relu(LN(z_raw))` and the layer's own output."""
    out = []
    h = _network_input(model, x)
    for layer, z in zip(model.hidden, model.hidden_preactivations(x)):
        own = ops.relu(z)
        ln = ops.relu(_layer_norm(raw_preactivation(layer, h), model.epsilon))
        out.append(_cosine(_np(own), _np(ln)))
        h = own
    return out


def _network_input(model, x):
    """What the first hidden layer reads: `x`, or the image a conv network reshapes it to."""
    return model.image(x) if hasattr(model, "image") else x


def _twin_logits(model, x):
    h = _network_input(model, x)
    for layer in model.hidden:
        h = ops.relu(_layer_norm(raw_preactivation(layer, h), model.epsilon))
    return model.readout(ops.reshape(h, (ops.shape(h)[0], -1)))


def gradient_alignment(model, x, y) -> list[float]:
    """Per hidden layer: cosine between the task-loss gradients w.r.t. `W_EE` of the network
    and of its LayerNorm twin (same weights)."""
    loss_fn = model.loss
    variables = [_measured(layer).W_EE for layer in model.hidden]
    _, own = gradients(lambda: loss_fn(y, model(x)), variables)
    _, twin = gradients(lambda: loss_fn(y, _twin_logits(model, x)), variables)
    return [_cosine(a, b) for a, b in zip(own, twin)]


class HiddenMoments(keras.callbacks.Callback):
    """Logs `hidden_<k>_mean` and `hidden_<k>_var` on a probe batch at each epoch's end.

    Args:
        probe_x: a fixed batch of inputs (e.g. 512 shifted test images).
    """

    def __init__(self, probe_x):
        super().__init__()
        self.probe_x = ops.convert_to_tensor(np.asarray(probe_x, "float32"))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for k, (m, v) in enumerate(moments(self.model, self.probe_x), start=1):
            logs[f"hidden_{k}_mean"] = m
            logs[f"hidden_{k}_var"] = v


class LayerNormAlignment(keras.callbacks.Callback):
    """Logs `output_alignment_<k>` and `gradient_alignment_<k>` at each epoch's end.

    Args:
        probe_x: a fixed batch of inputs.
        probe_y: their integer labels.
    """

    def __init__(self, probe_x, probe_y):
        super().__init__()
        self.probe_x = ops.convert_to_tensor(np.asarray(probe_x, "float32"))
        self.probe_y = ops.convert_to_tensor(np.asarray(probe_y, "int32"))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for k, c in enumerate(output_alignment(self.model, self.probe_x), start=1):
            logs[f"output_alignment_{k}"] = c
        grads = gradient_alignment(self.model, self.probe_x, self.probe_y)
        for k, c in enumerate(grads, start=1):
            logs[f"gradient_alignment_{k}"] = c


def svd_entropy(matrix) -> float:
    """The normalized SVD entropy of a matrix, in float64: with `s_1..s_n` its singular
    values (`n = min` of its shape), `p_i = s_i / sum_j s_j` and
    `H = -sum_i p_i log p_i / log n` (`0 log 0 = 0`).

    `H` lies in `[0, 1]`: 1 when every singular value is the same (an orthogonal matrix up
    to scale: a clustered, unimodal spectrum), towards 0 when one singular value dominates
    (a dispersed spectrum, near rank one). It is scale-free: `H(c W) = H(W)` for `c != 0`.
    This is the "normalised SVD entropy" of Li et al. (2023), "Learning better with
    Dale's Law: a spectral perspective" (NeurIPS), which they found to predict how well
    a recurrent E-I network learns from its spectrum at initialization; like them, the
    distribution is of the singular values `s_i` themselves, not of `s_i^2`.

    Raises:
        ValueError: the matrix is not 2-D, is empty or all zero, or is not finite.
    """
    w = np.asarray(matrix, dtype=np.float64)
    if w.ndim != 2 or min(w.shape) < 1 or not np.isfinite(w).all():
        raise ValueError(f"svd_entropy needs a finite, non-empty 2-D matrix; got shape "
                         f"{w.shape}" + ("" if np.isfinite(w).all() else " with non-finite values"))
    s = np.linalg.svd(w, compute_uv=False)
    total = s.sum()
    if total <= 0:
        raise ValueError("svd_entropy of an all-zero matrix is undefined (no spectrum)")
    if len(s) == 1:
        return 1.0  # one singular value: evenly spread over the one it has
    p = s[s > 0] / total
    return float(-(p * np.log(p)).sum() / np.log(len(s)))


def spectral_radius(matrix) -> float:
    """The largest eigenvalue modulus of a square matrix, in float64."""
    w = np.asarray(matrix, dtype=np.float64)
    return float(np.abs(np.linalg.eigvals(w)).max())


@typing.runtime_checkable
class RecurrentModel(typing.Protocol):
    """What a model provides to have its recurrent spectrum measured
    (`ei_keras.models.EIRecurrentNetwork` does): `recurrent_weights()`, the effective
    recurrent weight matrix of each recurrent layer, `(units, units)`, as float64 NumPy."""

    def recurrent_weights(self) -> list: ...


def recurrent_spectrum(model) -> list[dict] | None:
    """Per recurrent layer: `{"svd_entropy": H, "spectral_radius": rho}` of its effective
    recurrent weight matrix (`svd_entropy`, `spectral_radius`), or None for a model without
    recurrent layers (no `recurrent_weights()`: `RecurrentModel`). A layer whose weights
    are not finite (a diverged run) gives None values.

    The matrix is `W_rec = W_EE^h - W_EI W_IE^h`, the part of the pre-activation `z_t`
    that reads the previous state: `z_t = W_rec h_{t-1} + (input and bias terms)` for
    `EIRNNCell` (with `normalization="layer_norm"`, before the LayerNorm: the measure is of
    the cell's weights, the same matrix for every preset). For `INormRNNCell`,
    `z_t = (e_t - s_t) / delta_t` and `W_rec` is the recurrent part of the numerator
    `e_t - s_t`: the state's map is `diag(1 / delta_t) W_rec`. At initialization every
    unit's `delta_t` is the same (the divisive population's SVD initialization: `delta_t^2 =
    mean_j (W u_t)_j^2 + eps`), so that map is `W_rec` times a scalar and has `W_rec`'s
    entropy exactly; once `B_EI` has learned, `delta_t` differs by unit and by sample, and
    `W_rec` is the part of the map shared by every sample and step (what the task loss
    trains). Its spectral radius is the numerator's, before the division.
    """
    if not isinstance(model, RecurrentModel):
        return None
    out = []
    for w in model.recurrent_weights():
        w = np.asarray(w, dtype=np.float64)
        if not np.isfinite(w).all() or not w.any():
            out.append({"svd_entropy": None, "spectral_radius": None})
            continue
        out.append({"svd_entropy": svd_entropy(w), "spectral_radius": spectral_radius(w)})
    return out


#: Edges of `weight_distribution`'s histogram of `log10 w`: 10^-7 to 10^1 in quarter decades.
WEIGHT_LOG10_EDGES: tuple[float, ...] = tuple(np.round(np.arange(-7.0, 1.0001, 0.25), 2))
#: The quantiles (percent) of `log10 w` that `weight_distribution` records.
WEIGHT_QUANTILES: tuple[int, ...] = (1, 5, 25, 50, 75, 95, 99)


def _is_sign_constrained(variable) -> bool:
    return (roles.role_of(variable) == roles.EXCITATORY and len(variable.shape) >= 2
            and is_dale_constraint(getattr(variable, "constraint", None)))


def _log_distribution(w: np.ndarray) -> dict:
    """The distribution of the non-negative weights `w` (see `weight_distribution`)."""
    from scipy import stats

    w = w.ravel()
    positive = w[w > 0]
    out = {"n": int(w.size), "zero_fraction": float(np.mean(w <= 0)) if w.size else None}
    if positive.size < 3 or not np.isfinite(positive).all():
        return {**out, "log_mean": None, "log_sd": None, "log_skewness": None,
                "log_excess_kurtosis": None, "log10_quantiles": None, "log10_histogram": None}
    ln = np.log(positive)
    constant = float(ln.std()) == 0.0
    log10 = np.log10(positive)
    edges = np.asarray(WEIGHT_LOG10_EDGES)
    counts, _ = np.histogram(np.clip(log10, edges[0], edges[-1]), bins=edges)
    return {
        **out,
        "log_mean": float(ln.mean()),
        "log_sd": float(ln.std(ddof=1)),
        "log_skewness": None if constant else float(stats.skew(ln)),
        "log_excess_kurtosis": None if constant else float(stats.kurtosis(ln)),
        "log10_quantiles": {str(q): float(v) for q, v in
                            zip(WEIGHT_QUANTILES, np.percentile(log10, WEIGHT_QUANTILES))},
        # The first and last bins also count the weights beyond the edges.
        "log10_histogram": [int(c) for c in counts],
    }


def weight_distribution(model) -> dict:
    """The distribution of `model`'s sign-constrained excitatory weights (`W_EE` of every Dale
    layer: the variables whose role is `ei_keras.roles.EXCITATORY` and whose constraint keeps
    them non-negative, biases left out), for the question whether a learning rule makes them
    log-normal (exponentiated gradient: multiplicative updates) or piles them at 0
    (gradient descent, then the `NonNeg` clip).

    Returns `{"pooled": d, "variables": {path: d}}`, `pooled` over all those variables, each
    `d` with `n` (weights), `zero_fraction` (exactly 0: clipped), and over the positive ones
    the moments of `ln w` (`log_mean`, `log_sd` (ddof 1), `log_skewness`,
    `log_excess_kurtosis`: both 0 for a log-normal), `log10_quantiles` (percent ->
    `log10 w`, `WEIGHT_QUANTILES`) and `log10_histogram` (counts per bin of
    `WEIGHT_LOG10_EDGES`, the outer bins counting what lies beyond). Moments are None with
    fewer than 3 positive weights, or non-finite ones (a diverged run).

    >>> import keras
    >>> from ei_keras.layers import EIDense
    >>> from ei_keras.measures import weight_distribution
    >>> model = keras.Sequential([keras.Input((20,)), EIDense(8, seed=0)])
    >>> d = weight_distribution(model)
    >>> list(d["variables"]), d["pooled"]["n"], d["pooled"]["zero_fraction"]
    (['sequential/ei_dense/W_EE'], 160, 0.0)
    """
    chosen = [v for v in model.variables if _is_sign_constrained(v)]
    values = {v.path: _np(v) for v in chosen}
    pooled = np.concatenate([w.ravel() for w in values.values()]) if values else np.zeros(0)
    return {"pooled": _log_distribution(pooled),
            "variables": {path: _log_distribution(w) for path, w in values.items()}}
