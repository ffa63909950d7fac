"""Tests of `ei_keras.ops` error normalization and the `ErrorNormalization` layer (SPEC section 2).

Every check runs under the backend chosen by KERAS_BACKEND (one pytest process per backend):
- the forward pass of every mode is exactly the identity;
- `full` sends back exactly what a true `keras.layers.LayerNormalization` sends back, at any
  (un-normalized) point; every mode matches its SPEC formula computed in float64 NumPy;
  `none` passes the error through unchanged;
- `lateral`: positive weights summing to 1, kept by `.keras` saving; Theorem 1 (weighted pooling
  by normalized i.i.d. positive weights converges to the mean, at about 1/sqrt(width));
- `gradnorm_on="z"` (the paper code's formula, z in place of y) matches its float64 formula in
  the op, the layer and the I-Norm layers, differs from `y` away from a normalized point and
  agrees with it at one, and is reachable from the `model.gradnorm_on` config key;
- unknown modes are rejected with an error naming them.
"""

from __future__ import annotations

import keras
import numpy as np
import numpy_reference as ref
import pytest

from ei_keras.layers import ErrorNormalization
from ei_keras.models.gradients import gradients
from ei_keras.ops import (
    ERROR_NORMALIZATION_MODES,
    lateral_pooling_weights,
    normalize_error,
    normalized_error,
)

BATCH, UNITS = 6, 24


def max_rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected|."""
    expected = np.asarray(expected, np.float64)
    diff = np.abs(np.asarray(actual, np.float64) - expected).max()
    return float(diff / max(np.abs(expected).max(), 1e-30))


def unnormalized_point(seed: int = 0):
    """An arbitrary, far-from-normalized pre-activation ``z = 5 randn + 3`` and an upstream
    error ``c`` (the loss is ``sum(c * f(z))``), float32."""
    rng = np.random.default_rng(seed)
    z = (5.0 * rng.standard_normal((BATCH, UNITS)) + 3.0).astype("float32")
    c = rng.standard_normal((BATCH, UNITS)).astype("float32")
    return z, c


def backward_of(fn, z, c):
    """``(f(z), d sum(c * f(z)) / dz)`` as float32 NumPy arrays."""
    zv = keras.Variable(z, name="z")
    cc = keras.ops.convert_to_tensor(c)
    # `zv * 1.0`: a tensor computed from the variable, as a layer's pre-activation is
    _, (gz,) = gradients(lambda: keras.ops.sum(cc * fn(zv * 1.0)), [zv])
    return keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(z))), gz


def layer_norm_backward(z, c):
    ln = keras.layers.LayerNormalization(center=False, scale=False, epsilon=1e-5)
    ln.build(z.shape)
    return backward_of(ln, z, c)[1]


# --------------------------------------------------------------------------------------------
# Forward identity, backward = SPEC formulas


@pytest.mark.parametrize("mode", ERROR_NORMALIZATION_MODES)
def test_op_forward_identity_and_backward_formula(mode):
    z, c = unnormalized_point(1)
    w = lateral_pooling_weights(UNITS, seed=3) if mode == "lateral" else None
    out, gz = backward_of(lambda t: normalize_error(t, mode, w), z, c)
    np.testing.assert_array_equal(out, z)  # exactly the identity
    w64 = None if w is None else keras.ops.convert_to_numpy(w)
    expected = ref.normalized_error(c, z, mode, w64)
    if mode == "none":
        np.testing.assert_array_equal(gz, c)  # the error passes through unchanged
    assert max_rel_err(gz, expected) <= 1e-5, (mode, max_rel_err(gz, expected))


@pytest.mark.parametrize("mode", ERROR_NORMALIZATION_MODES)
def test_layer_forward_identity_and_backward_formula(mode):
    z, c = unnormalized_point(2)
    layer = ErrorNormalization(mode, seed=5)
    layer.build(z.shape)
    out, gz = backward_of(layer, z, c)
    np.testing.assert_array_equal(out, z)
    w = None
    if mode == "lateral":
        w = keras.ops.convert_to_numpy(layer.lateral_weights)
        assert [v.path for v in layer.non_trainable_weights] == [layer.lateral_weights.path]
        assert not layer.trainable_weights  # the pooling weights are fixed
    if mode == "none":
        np.testing.assert_array_equal(gz, c)
    expected = ref.normalized_error(c, z, mode, w)
    assert max_rel_err(gz, expected) <= 1e-5, (mode, max_rel_err(gz, expected))


def test_full_backward_equals_layer_normalization_backward():
    # GradNorm at any z sends back what LayerNorm(center=False, scale=False, eps=1e-5) sends
    # back at z: both in float32, so they agree to float32 rounding.
    for seed in range(3):
        z, c = unnormalized_point(10 + seed)
        expected = layer_norm_backward(z, c)
        _, op_grad = backward_of(lambda t: normalize_error(t, "full"), z, c)
        layer = ErrorNormalization("full")
        _, layer_grad = backward_of(layer, z, c)
        assert max_rel_err(op_grad, expected) <= 1e-5
        assert max_rel_err(layer_grad, expected) <= 1e-5
        # and the float64 formula is LayerNorm's exact derivative (finite differences)
        z64, c64 = z.astype(np.float64), c.astype(np.float64)
        fd = ref.numerical_gradient(lambda z64=z64, c64=c64: (c64 * ref.layer_norm(z64)).sum(), z64)
        assert max_rel_err(ref.normalized_error(c64, z64, "full"), fd) <= 1e-6


def test_plain_formula_matches_custom_gradient_and_keeps_dtype():
    z, c = unnormalized_point(4)
    for mode in ("full", "center", "scale", "decorrelate"):
        _, gz = backward_of(lambda t, m=mode: normalize_error(t, m), z, c)
        direct = keras.ops.convert_to_numpy(normalized_error(c, z, mode))
        np.testing.assert_allclose(direct, gz, rtol=0, atol=1e-6 * np.abs(gz).max())
    half = normalized_error(keras.ops.cast(c, "float16"), z, "full")
    assert keras.backend.standardize_dtype(half.dtype) == "float16"


@pytest.mark.parametrize("mode", ["center", "lateral"])
def test_op_and_layer_accept_a_keras_variable(mode):
    # Keras ops accept variables; the custom gradient must too. Before the fix, TF raised
    # "@tf.custom_gradient grad_fn must accept keyword argument 'variables'" and torch silently
    # disconnected the variable (no gradient at all).
    z, c = unnormalized_point(6)
    w = lateral_pooling_weights(UNITS, seed=3) if mode == "lateral" else None
    layer = ErrorNormalization(mode, seed=3)
    layer.build(z.shape)
    w64 = None if w is None else keras.ops.convert_to_numpy(w)
    expected = ref.normalized_error(c, z, mode, w64)
    cc = keras.ops.convert_to_tensor(c)
    for fn in (lambda t: normalize_error(t, mode, w), layer):
        zv = keras.Variable(z, name="z")
        _, (gz,) = gradients(lambda fn=fn, zv=zv: keras.ops.sum(cc * fn(zv)), [zv])
        assert max_rel_err(gz, expected) <= 1e-5


def test_mode_none_and_none_value_pass_through():
    z, c = unnormalized_point(5)
    _, gz = backward_of(lambda t: normalize_error(t, None), z, c)
    np.testing.assert_array_equal(gz, c)


# --------------------------------------------------------------------------------------------
# GradNorm on z (the paper code's formula) beside y (ours)

F32_EPS = float(np.finfo(np.float32).eps)


def z_formula_tolerance(z, c):
    """An absolute float32 rounding bound for the ``z`` formulas: every term of
    ``(g - mean g - z mean(g z)) / sigma`` is within ``|g| + mean|g| + |z| mean|g z|`` (times
    ``1/sigma``, at most 1/sqrt(eps) for ``full``), each computed in a few float32 operations
    (a mean over 24 terms rounds at most ~24 eps relative): 32 eps of that sum is a safe bound,
    far below the difference between the ``y`` and ``z`` formulas tested below."""
    z64, c64 = z.astype(np.float64), c.astype(np.float64)
    sigma = z64.std(axis=-1, keepdims=True)
    terms = (np.abs(c64) + np.abs(c64).mean(axis=-1, keepdims=True)
             + np.abs(z64) * np.abs(c64 * z64).mean(axis=-1, keepdims=True))
    return 32 * F32_EPS * float((terms * np.maximum(1.0, 1.0 / sigma)).max())


@pytest.mark.parametrize("mode", ["full", "decorrelate", "center", "scale"])
def test_gradnorm_on_z_backward_is_the_paper_formula(mode):
    z, c = unnormalized_point(21)
    expected = ref.normalized_error(c, z, mode, gradnorm_on="z")
    tol = z_formula_tolerance(z, c)
    out, op_grad = backward_of(lambda t: normalize_error(t, mode, gradnorm_on="z"), z, c)
    np.testing.assert_array_equal(out, z)  # still exactly the identity forward
    layer = ErrorNormalization(mode, gradnorm_on="z")
    _, layer_grad = backward_of(layer, z, c)
    direct = keras.ops.convert_to_numpy(normalized_error(c, z, mode, gradnorm_on="z"))
    for got in (op_grad, layer_grad, direct):
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
    y_formula = ref.normalized_error(c, z, mode)
    if mode in ("full", "decorrelate"):  # z = 5 randn + 3 is far from normalized: they differ
        assert np.abs(y_formula - expected).max() > 1000 * tol
    else:  # center and scale do not use y
        np.testing.assert_allclose(expected, y_formula, rtol=1e-12)


def test_gradnorm_on_y_and_z_agree_where_z_is_normalized():
    # At a point with mean 0 and variance 1 per sample, y = z / sqrt(1 + eps): the two
    # formulas differ by O(eps) = 1e-5 relative, the float64 references show it.
    z, c = unnormalized_point(22)
    zn = ref.layer_norm(z.astype(np.float64), epsilon=0.0)
    for mode in ("full", "decorrelate"):
        y_out = ref.normalized_error(c, zn, mode)
        z_out = ref.normalized_error(c, zn, mode, gradnorm_on="z")
        assert max_rel_err(z_out, y_out) <= 3e-5, mode


def test_inorm_layers_send_back_the_chosen_formula():
    from ei_keras.layers import INormConv2D, INormDense

    z, c = unnormalized_point(23)
    for on in ("y", "z"):
        dense = INormDense(UNITS, error_normalization="full", gradnorm_on=on, seed=0)
        assert dense.get_config()["gradnorm_on"] == on
        assert INormDense.from_config(dense.get_config()).gradnorm_on == on
        _, gz = backward_of(dense.normalize_error, z, c)
        np.testing.assert_allclose(gz, ref.normalized_error(c, z, "full", gradnorm_on=on),
                                   rtol=0, atol=z_formula_tolerance(z, c))
    # the conv layer normalizes each sample's whole map: the formula on the flattened map
    zmap, cmap = z.reshape(BATCH, 2, 3, 4), c.reshape(BATCH, 2, 3, 4)
    conv = INormConv2D(4, 3, error_normalization="full", gradnorm_on="z", seed=0)
    assert INormConv2D.from_config(conv.get_config()).gradnorm_on == "z"
    _, gmap = backward_of(conv.normalize_error, zmap, cmap)
    np.testing.assert_allclose(gmap.reshape(BATCH, -1),
                               ref.normalized_error(c, z, "full", gradnorm_on="z"),
                               rtol=0, atol=z_formula_tolerance(z, c))
    with pytest.raises(ValueError, match="gradnorm_on"):
        INormDense(4, error_normalization="full", gradnorm_on="x")
    with pytest.raises(ValueError, match="gradnorm_on"):
        normalize_error(keras.ops.ones((2, 3)), "full", gradnorm_on="w")


def test_gradnorm_on_is_a_config_key_that_reaches_the_network():
    from ei_keras import zoo
    from ei_keras.config import ConfigError, RunConfig, unused_keys
    from ei_keras.models import EINetwork

    cfg = RunConfig().with_overrides(["preset=inorm_gradnorm", "model.gradnorm_on=z"])
    assert cfg.model.gradnorm_on == "z"
    assert "model.gradnorm_on" not in unused_keys(cfg.flat())  # z changes the fingerprint
    assert "model.gradnorm_on" in unused_keys(RunConfig().flat())  # y: runs before it keep theirs
    with pytest.raises(ConfigError, match="gradnorm_on"):
        RunConfig().with_overrides(["model.gradnorm_on=w"])
    net = zoo.build("inorm_gradnorm", width=12, seed=0, model_overrides={"gradnorm_on": "z"})
    assert [layer.gradnorm_on for layer in net.hidden] == ["z", "z"]
    again = EINetwork.from_config(net.get_config())
    assert [layer.gradnorm_on for layer in again.hidden] == ["z", "z"]


# --------------------------------------------------------------------------------------------
# Lateral inhibition


def test_lateral_pooling_weights_positive_normalized_and_seeded():
    for units in (1, 7, 300):
        w = keras.ops.convert_to_numpy(lateral_pooling_weights(units, seed=11))
        assert w.shape == (units,) and w.dtype == np.float32
        assert (w > 0).all()
        assert abs(float(w.astype(np.float64).sum()) - 1.0) <= 1e-6
    a = keras.ops.convert_to_numpy(lateral_pooling_weights(50, seed=1))
    b = keras.ops.convert_to_numpy(lateral_pooling_weights(50, seed=1))
    np.testing.assert_array_equal(a, b)
    # the same draw as NumPy's, so every backend gets the same weights
    draw = np.random.default_rng(1).uniform(0.0, 1.0, size=50) + 1e-12
    np.testing.assert_allclose(a, draw / draw.sum(), rtol=1e-6)
    assert not np.array_equal(a, keras.ops.convert_to_numpy(lateral_pooling_weights(50, seed=2)))
    with pytest.raises(ValueError, match="units"):
        lateral_pooling_weights(0)


def test_lateral_needs_weights():
    z = keras.ops.ones((2, 3))
    with pytest.raises(ValueError, match="lateral_weights"):
        normalize_error(z, "lateral")


def test_lateral_weights_survive_keras_saving(tmp_path):
    inputs = keras.Input((UNITS,))
    outputs = keras.layers.Dense(3)(ErrorNormalization("lateral")(inputs))  # unseeded draw
    model = keras.Model(inputs, outputs)
    w = keras.ops.convert_to_numpy(model.layers[1].lateral_weights)
    assert (w > 0).all() and abs(float(w.astype(np.float64).sum()) - 1.0) <= 1e-6
    path = tmp_path / "lateral.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.layers[1].lateral_weights), w)
    x = np.random.default_rng(0).random((4, UNITS)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)),
                                  keras.ops.convert_to_numpy(loaded(x)))


def test_theorem_1_lateral_pooling_converges_to_the_mean():
    # Theorem 1: w_j = a_j / sum_k a_k with a_j i.i.d. positive (here the layers' own uniform
    # draws); for bounded g, sum_j w_j g_j -> mean_j g. The error is sum_j (w_j - 1/n) g_j, of
    # standard deviation about std(g) * std(a) / (mean(a) sqrt(n)) = 1 / (3 sqrt(n)) for
    # a ~ U(0, 1) and g ~ U(-1, 1) + 0.5: measure the mean |error| over 40 draws per width.
    rng = np.random.default_rng(0)
    widths = (10, 100, 1000, 10000)
    errors = []
    for n in widths:
        errs = []
        for draw in range(40):
            w = keras.ops.convert_to_numpy(lateral_pooling_weights(n, seed=1000 * n + draw))
            g = rng.uniform(-1.0, 1.0, size=n) + 0.5  # bounded, non-zero mean
            errs.append(abs(float(w.astype(np.float64) @ g) - g.mean()))
        errors.append(float(np.mean(errs)))
    assert all(a > b for a, b in zip(errors[:-1], errors[1:], strict=True)), errors
    scaled = np.asarray(errors) * np.sqrt(widths)  # ~ constant if error ~ 1/sqrt(n)
    # E|N(0, 1/(9n))| * sqrt(n) = sqrt(2/pi) / 3 = 0.266
    assert np.all((scaled > 0.266 / 2) & (scaled < 0.266 * 2)), scaled
    assert scaled.max() / scaled.min() < 2.0, scaled
    assert errors[-1] < errors[0] / 10  # 1000x the width: ~30x smaller error


# --------------------------------------------------------------------------------------------
# Bad arguments


def test_unknown_mode_is_rejected_by_name():
    z = keras.ops.ones((2, 3))
    with pytest.raises(ValueError, match="'groupnorm'"):
        normalize_error(z, "groupnorm")
    with pytest.raises(ValueError, match="'groupnorm'"):
        normalized_error(z, z, "groupnorm")
    with pytest.raises(ValueError, match="'groupnorm'"):
        ErrorNormalization("groupnorm")
    with pytest.raises(ValueError, match="epsilon"):
        ErrorNormalization("full", epsilon=0.0)
