"""Tests of the `ei_keras.layers` (SPEC section 1), under the backend chosen by KERAS_BACKEND.

- EI initialisation: signs, row sums, balanced inhibition, seeded NumPy draws identical on every
  backend (exponential and lognormal); on real Fashion-MNIST inputs the per-sample mean of `z`
  across units is ~0 (E-only: far from 0).
- I-Norm initialisation: `delta^2 = mean_j (W x)_j^2 + eps` (SVD init), so the pre-activation
  starts with per-sample second moment ~1 on real inputs.
- Gradient isolation: the task loss never reaches the inhibitory weights of INormDense, the
  normalization loss never reaches `W_EE`, the bias or the input.
- Same numbers everywhere: outputs, task gradients (every error-normalization mode) and
  normalization-loss gradients equal a float64 NumPy reference (`tests/numpy_reference.py`,
  itself checked by finite differences) to 1e-5 relative, on each backend.
- Layer-test-grade checks per layer (symbolic/eager calls, shapes, one `fit` step, config and
  `.keras` round trips, mixed precision) and clear errors for bad arguments.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import keras
import numpy as np
import numpy_reference as ref
import pytest

from ei_keras.initializers import (
    DaleExcitatory,
    RowStochastic,
    balanced_inhibition,
    dale_scale,
)
from ei_keras.layers import EDense, EIDense, ErrorNormalization, INormDense
from ei_keras.models.gradients import gradients
from ei_keras.ops import ERROR_NORMALIZATION_MODES, lateral_pooling_weights

FASHION_MNIST_TEST_IMAGES = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
TOLERANCE = 1e-5  # max |backend - float64 reference| / max |reference|
EPS32 = float(np.finfo(np.float32).eps)  # 2**-23


# --------------------------------------------------------------------------------------------
# Helpers


def max_rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected|."""
    expected = np.asarray(expected, np.float64)
    diff = np.abs(np.asarray(actual, np.float64) - expected).max()
    return float(diff / max(np.abs(expected).max(), 1e-30))


def to_numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def fashion_images() -> np.ndarray:
    """The first 512 Fashion-MNIST test images, flattened, pixels / 255 (float32, 512 x 784)."""
    if not FASHION_MNIST_TEST_IMAGES.exists():
        pytest.fail(f"{FASHION_MNIST_TEST_IMAGES} not installed: run `make test` (its set-up "
                    "installs Debian's dataset-fashion-mnist); these tests need the real data")
    n = 512
    with gzip.open(FASHION_MNIST_TEST_IMAGES, "rb") as f:
        header = np.frombuffer(f.read(16), dtype=">u4")
        assert header[0] == 0x0803 and tuple(header[2:]) == (28, 28)
        pixels = np.frombuffer(f.read(n * 784), dtype=np.uint8)
    return (pixels.reshape(n, 784) / 255.0).astype("float32")


def assign(layer, **values) -> None:
    """Sets a layer's variables by name from NumPy arrays."""
    for name, value in values.items():
        getattr(layer, name).assign(np.asarray(value, "float32"))


def weights_of(layer, names) -> dict:
    return {n: to_numpy(getattr(layer, n)).astype(np.float64) for n in names}


# --------------------------------------------------------------------------------------------
# 3. EI initialisation


@pytest.mark.parametrize("distribution", ["exponential", "lognormal"])
def test_ei_init_signs_balance_and_seeded_numpy_draws(distribution):
    ne, d, seed = 30, 50, 123
    layer = EIDense(ne, init_distribution=distribution, seed=seed)
    layer.build((None, d))
    ni = layer.inhibitory_units
    assert ni == 3  # max(1, floor(0.1 ne))
    w_ee, w_ie, w_ei = (to_numpy(v) for v in (layer.W_EE, layer.W_IE, layer.W_EI))
    assert w_ee.shape == (ne, d) and w_ie.shape == (ni, d) and w_ei.shape == (ne, ni)
    assert (w_ee >= 0).all() and (w_ie >= 0).all() and (w_ei >= 0).all()
    np.testing.assert_allclose(w_ei.astype(np.float64).sum(axis=1), 1.0, rtol=0, atol=1e-6)
    for row in w_ie:  # every row of W_IE is the mean row of W_EE
        np.testing.assert_allclose(row, w_ee.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(layer.bias), np.zeros(ne, "float32"))
    # Bit-identical to the NumPy draws from the same seed, whatever the backend.
    expected_ee = DaleExcitatory(distribution=distribution, seed=seed).sample((ne, d))
    np.testing.assert_array_equal(w_ee, expected_ee.astype("float32"))
    np.testing.assert_array_equal(w_ie, balanced_inhibition(expected_ee, ni).astype("float32"))
    expected_ei = RowStochastic(distribution=distribution, seed=seed + 1).sample((ne, ni))
    np.testing.assert_array_equal(w_ei, expected_ei.astype("float32"))
    # E-only and I-Norm layers share W_EE (and I-Norm the inhibitory weights) for one seed.
    e_layer = EDense(ne, init_distribution=distribution, seed=seed)
    e_layer.build((None, d))
    np.testing.assert_array_equal(to_numpy(e_layer.W_EE), w_ee)
    inorm = INormDense(ne, init_distribution=distribution, error_normalization="lateral",
                       seed=seed)
    inorm.build((None, d))
    for name, value in (("W_EE", w_ee), ("W_IE", w_ie), ("W_EI", w_ei)):
        np.testing.assert_array_equal(to_numpy(getattr(inorm, name)), value)
    assert_divisive_svd_init(to_numpy(inorm.B_IE), to_numpy(inorm.B_EI), expected_ee,
                             expected_ei)
    np.testing.assert_array_equal(to_numpy(inorm.lateral_weights),
                                  to_numpy(lateral_pooling_weights(ne, seed + 2)))


def assert_divisive_svd_init(b_ie, b_ei, w_ee, w_ei):
    """The divisive population as the paper initialises it, checked without the package's
    initializer and without an SVD: with ``W = W_EE - W_EI W_IE`` (float64, ``W_IE`` every row
    the mean row of ``W_EE``) and ``W = U S V^T``, ``B_IE = diag(S) V[:, :ne]^T`` is the unique
    matrix (up to the sign of each row) whose Gram matrix is that of ``W``,
    ``B_IE^T B_IE = V S^2 V^T = W^T W`` (so ``delta^2 = mean_j (W x)_j^2`` for every x), and
    whose rows are orthogonal with squared norms the eigenvalues of ``W W^T`` in decreasing
    order, ``B_IE B_IE^T = S^2``; ``B_EI = 1/ne`` everywhere.

    ``B_IE`` is stored in float32 (each entry within eps32/2 relatively): a Gram entry sums
    products that each move by at most eps32 |b_i b_j|, at most eps32 x the largest squared
    row or column norm in all (Cauchy-Schwarz); twice that is the tolerance.
    """
    w_ee = np.asarray(w_ee, np.float64)
    ne = w_ee.shape[0]
    w_ie = np.tile(w_ee.mean(axis=0), (np.asarray(w_ei).shape[1], 1))
    w = w_ee - np.asarray(w_ei, np.float64) @ w_ie
    b = np.asarray(b_ie, np.float64)
    assert b.shape == w.shape
    eps32 = float(np.finfo(np.float32).eps)
    gram = b.T @ b
    np.testing.assert_allclose(gram, w.T @ w, rtol=0, atol=2 * eps32 * np.diag(gram).max())
    s2 = np.linalg.eigvalsh(w @ w.T)[::-1]  # squared singular values, decreasing
    rows = b @ b.T
    np.testing.assert_allclose(rows, np.diag(s2), rtol=0, atol=2 * eps32 * s2.max())
    np.testing.assert_array_equal(b_ei, np.full((ne, ne), np.float32(1.0 / ne)))


@pytest.mark.parametrize("distribution", ["exponential", "lognormal"])
def test_excitatory_law_has_mean_and_std_sigma(distribution):
    # sigma = sqrt(2 ne / (d (ne - 1))); exponential: mean = std = sigma; the lognormal option
    # is parametrized to mean = std = sigma too. 200 x 784 draws: mean to ~0.3 %, std to ~1-3 %.
    ne, d = 200, 784
    w = DaleExcitatory(distribution=distribution, seed=0).sample((ne, d))
    sigma = dale_scale(d, ne)
    assert sigma == pytest.approx(np.sqrt(2 * ne / (d * (ne - 1))))
    assert (w > 0).all()
    assert w.mean() == pytest.approx(sigma, rel=0.02)
    assert w.std() == pytest.approx(sigma, rel=0.05)
    if distribution == "lognormal":
        np.testing.assert_allclose(np.log(w).std(), np.sqrt(np.log(2.0)), rtol=0.02)


def test_unseeded_init_follows_numpy_global_seed():
    # Unseeded layers draw their seed from NumPy's global state (which
    # keras.utils.set_random_seed also sets; not called here: it imports TensorFlow, ~3 s).
    drawn = []
    for _ in range(2):
        np.random.seed(7)
        layer = EIDense(5)
        layer.build((None, 9))
        drawn.append(to_numpy(layer.W_EE))
    np.testing.assert_array_equal(drawn[0], drawn[1])


def test_ei_init_centres_z_on_real_inputs(fashion_images):
    x = fashion_images
    z = to_numpy(EIDense(100, seed=0)(x)).astype(np.float64)
    z_e = to_numpy(EDense(100, seed=0)(x)).astype(np.float64)
    mean_ei, mean_e = np.abs(z.mean(axis=1)), np.abs(z_e.mean(axis=1))
    # W_IE = mean row of W_EE and rows of W_EI sum to 1, so mean_j z = 0 in exact arithmetic.
    # Measured (all three backends): max_batch |mean_j z| = 4e-6..5.4e-6 (float32 rounding of
    # drives ~10), while the E-only layer's per-sample mean is 1.5..27. Tolerance: 1e-4, i.e.
    # at least 1e4 times closer to 0 than the E-only layer on every sample.
    assert mean_ei.max() < 1e-4, mean_ei.max()
    assert mean_e.min() > 1.0, mean_e.min()
    assert z.std(axis=1).mean() > 0.1  # the units are not all equal: centred, not silenced


# --------------------------------------------------------------------------------------------
# 4. I-Norm initialisation


def test_inorm_svd_init_delta_and_unit_second_moment(fashion_images):
    x = fashion_images
    d = x.shape[1]
    layer = INormDense(64, seed=0)
    layer.build((None, d))
    parts = layer._parts(keras.ops.convert_to_tensor(x))
    e, s, delta = (to_numpy(t).astype(np.float64) for t in parts)
    w = weights_of(layer, ["W_EE", "W_IE", "W_EI"])
    wx = x.astype(np.float64) @ (w["W_EE"] - w["W_EI"] @ w["W_IE"]).T  # (batch, ne)
    expected = (wx**2).mean(axis=1, keepdims=True) + layer.epsilon
    # delta^2 is the same for every unit (B_EI = 1/ne) and equals mean_j (W x)_j^2 + eps to
    # float32 rounding: measured max relative error 2.4e-7..4.2e-7 (2-4 eps32); tolerance 1e-5.
    assert max_rel_err(delta**2, np.broadcast_to(expected, delta.shape)) <= 1e-5
    # e = W_EE x and s = W_EI (W_IE x) are float32 sums of d = 784 non-negative products (x and
    # the Dale weights are >= 0), and W x = e - s cancels most of them (|e|, |s| up to 30 here,
    # |W x| <= 2.9). So the rounding of e - s scales with |e| + |s|, not with |W x|. Rounding
    # errors of a sum add up like a random walk: added in sequence (the least accurate order a
    # BLAS uses; blocked and vectorized orders do better) the error's standard deviation is
    # about u sqrt(d) / 3 of the sum (u = eps32 / 2), 6.6 u (|e| + |s|) here. Tolerance per
    # element: sqrt(d) eps32 (|e| + |s|) = 56 u (|e| + |s|), 8 such standard deviations. Measured
    # max |error| / (u (|e| + |s|)): 7.8 (XLA, AVX-512), 20.5 (NumPy summing in sequence).
    bound = np.sqrt(d) * EPS32 * (np.abs(e) + np.abs(s))
    np.testing.assert_array_less(np.abs((e - s) - wx), bound)
    z, loss = layer.preactivation(x)
    z = to_numpy(z).astype(np.float64)
    second_moment = (z**2).mean(axis=1)
    # In exact arithmetic mean_j z = 0 (W_IE is the mean row of W_EE, rows of W_EI sum to 1)
    # and mean_j z^2 = m / (m + eps) with m = mean_j (W x)_j^2: it falls short of 1 by eps / m
    # (measured m = 0.024..1.08 on these images, max |mean_j z^2 - 1| = 4.2e-4). In float32,
    # z = (e - s) / delta carries the drive error (bound / delta, above) and delta's relative
    # error (half of delta^2's 1e-5, checked above) plus the division's eps32:
    # - mean_j z: the drive errors may all have one sign (s_j shares the few W_IE x sums), so
    #   they add: tolerance mean_j z_bound (6.6e-5..2.0e-4 per sample here);
    # - mean_j z^2 moves by delta's error times mean_j z^2, plus 2 mean_j z_j dz_j, in which an
    #   error common to all units cancels (mean_j z = 0) and the rest adds in quadrature.
    # Measured: max |mean_j z| 4e-6..1.1e-5, mean_j z^2 within 3.7e-6 of m / (m + eps); summing
    # in sequence (NumPy, float32): 3.0e-5 and 5.6e-6.
    drive_bound = bound / delta
    z_bound = drive_bound + np.abs(z) * (0.5e-5 + EPS32)
    m = (wx**2).mean(axis=1)
    np.testing.assert_array_less(np.abs(z.mean(axis=1)), z_bound.mean(axis=1))
    ne = z.shape[1]
    moment_bound = (second_moment * (1e-5 + 2 * EPS32)
                    + 2 * np.sqrt(((z * drive_bound) ** 2).sum(axis=1)) / ne)
    np.testing.assert_array_less(np.abs(second_moment - m / (m + layer.epsilon)), moment_bound)
    assert np.abs(second_moment - 1.0).max() <= 1e-3, np.abs(second_moment - 1.0).max()
    assert float(to_numpy(loss)) <= 1e-8  # L_norm starts at its minimum


# --------------------------------------------------------------------------------------------
# A fixed point away from initialisation, shared by sections 5 and 6 (one set of shapes, so
# JAX's op-by-op dispatch compiles each kernel once)

INHIBITORY = ("W_IE", "W_EI", "B_IE", "B_EI")
EXCITATORY = ("W_EE", "bias")


def random_weights(d=16, ne=10, ni=3, seed=0) -> dict:
    """Dale-signed weights (``B_IE`` free) away from the balanced initialisation, float64."""
    rng = np.random.default_rng(seed)
    w_ee = rng.exponential(dale_scale(d, ne), (ne, d))
    return {
        "W_EE": w_ee,
        "bias": rng.normal(0.0, 0.1, ne),
        "W_IE": np.repeat(w_ee.mean(axis=0, keepdims=True), ni, 0) * rng.uniform(0.6, 1.4, (ni, d)),
        "W_EI": rng.uniform(0.1, 1.0, (ne, ni)) / ni,
        "B_IE": rng.normal(0.0, 0.5, (ne, d)),
        "B_EI": rng.uniform(0.5, 1.5, (ne, ne)) / ne,
    }


def float32_point(d=16, ne=10, ni=3, batch=7, seed=0):
    """float32 weights (returned as float64 copies of the float32 values), inputs and c."""
    w = random_weights(d, ne, ni, seed)
    w = {k: v.astype("float32").astype(np.float64) for k, v in w.items()}
    rng = np.random.default_rng(seed + 100)
    x = rng.uniform(0.0, 1.0, (batch, d)).astype("float32")
    c = rng.normal(size=(batch, ne)).astype("float32")
    lateral = to_numpy(lateral_pooling_weights(ne, seed=seed)).astype(np.float64)
    return w, x, c, lateral


def off_init_inorm(mode, subtractive_only=False, **kwargs):
    """An INormDense (d=16, ne=10, ni=3) set to the weights of `float32_point` (away from its
    initialisation, where L_norm ~ 0), with that point's input and upstream error."""
    w, x, c, _ = float32_point()
    layer = INormDense(10, inhibitory_units=3, error_normalization=mode,
                       subtractive_only=subtractive_only, seed=0, **kwargs)
    layer.build((None, 16))
    assign(layer, **{k: w[k] for k in EXCITATORY + (INHIBITORY[:2] if subtractive_only
                                                   else INHIBITORY)})
    return layer, x, c


# --------------------------------------------------------------------------------------------
# 5. Gradient isolation


@pytest.mark.parametrize("subtractive_only", [False, True], ids=["divisive", "subtractive"])
@pytest.mark.parametrize("mode", ERROR_NORMALIZATION_MODES)
def test_task_and_normalization_gradients_are_disjoint(mode, subtractive_only):
    layer, x, c = off_init_inorm(mode, subtractive_only)
    names = EXCITATORY + (INHIBITORY[:2] if subtractive_only else INHIBITORY)
    xv = keras.Variable(x, name="x")
    variables = [getattr(layer, n) for n in names] + [xv]
    c = keras.ops.convert_to_tensor(c)

    _, task = gradients(lambda: keras.ops.sum(c * layer(xv)), variables)
    task = dict(zip((*names, "x"), task, strict=True))
    for n in names:
        if n in INHIBITORY:
            np.testing.assert_array_equal(task[n], 0.0, err_msg=f"task loss reached {n}")
        else:
            assert np.abs(task[n]).max() > 0, n
    assert np.abs(task["x"]).max() > 0

    _, norm = gradients(lambda: layer.preactivation(xv)[1], variables)
    norm = dict(zip((*names, "x"), norm, strict=True))
    for n in (*EXCITATORY, "x"):
        np.testing.assert_array_equal(norm[n], 0.0, err_msg=f"L_norm reached {n}")
    for n in names:
        if n in INHIBITORY:
            assert np.abs(norm[n]).max() > 0, n


def test_add_loss_is_the_normalization_loss():
    layer, x, _ = off_init_inorm("full")
    layer(x)
    assert len(layer.losses) == 1
    w = weights_of(layer, ["W_EE", "bias", "W_IE", "W_EI", "B_IE", "B_EI"])
    expected = ref.inorm_norm_loss(x, w["W_EE"], w["bias"], w["W_IE"], w["W_EI"], w["B_IE"],
                                   w["B_EI"], norm_weight=layer.norm_weight)
    assert float(to_numpy(layer.losses[0])) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------------
# 6. The float64 NumPy reference: checked by finite differences, then every backend against it


def test_numpy_reference_gradients_match_finite_differences():
    w, x, c, _ = float32_point(d=6, ne=5, ni=2, batch=3)
    x, c = x.astype(np.float64), c.astype(np.float64)
    p = {k: v.copy() for k, v in w.items()}

    # EIDense: every variable and the input, through a ReLU.
    ei_args = lambda: (x, p["W_EE"], p["W_IE"], p["W_EI"], p["bias"])  # noqa: E731
    manual = ref.ei_dense_task_gradients(*ei_args(), c, activation="relu")
    for name, array in (("W_EE", p["W_EE"]), ("W_IE", p["W_IE"]), ("W_EI", p["W_EI"]),
                        ("bias", p["bias"]), ("x", x)):
        fd = ref.numerical_gradient(
            lambda: (c * ref.ei_dense_forward(*ei_args(), activation="relu")).sum(), array)
        assert max_rel_err(manual[name], fd) <= 1e-6, name

    # L_norm: the inhibitory variables, divisive and subtractive-only.
    for names in (INHIBITORY, INHIBITORY[:2]):
        div = len(names) == 4
        args = lambda div=div: (  # noqa: E731
            x, p["W_EE"], p["bias"], p["W_IE"], p["W_EI"],
            p["B_IE"] if div else None, p["B_EI"] if div else None)
        manual = ref.inorm_norm_loss_gradients(*args(), norm_weight=0.5)
        for name in names:
            fd = ref.numerical_gradient(lambda a=args: ref.inorm_norm_loss(*a(), norm_weight=0.5),
                                        p[name])
            assert max_rel_err(manual[name], fd) <= 1e-6, (name, div)

    # Task loss through the stop-gradients: s and delta held at their values. Mode "none" is
    # the plain derivative; "full" is the derivative through a LayerNorm at z.
    _, s0, d0 = ref.inorm_parts(x, *(p[k] for k in ("W_EE", "bias", "W_IE", "W_EI", "B_IE",
                                                      "B_EI")))
    z_of = lambda: (x @ p["W_EE"].T + p["bias"] - s0) / d0  # noqa: E731
    for mode, f in (("none", z_of), ("full", lambda: ref.layer_norm(z_of()))):
        manual = ref.inorm_task_gradients(x, *(p[k] for k in ("W_EE", "bias", "W_IE", "W_EI",
                                                                "B_IE", "B_EI")), c=c, mode=mode)
        for name, array in (("W_EE", p["W_EE"]), ("bias", p["bias"]), ("x", x)):
            fd = ref.numerical_gradient(lambda f=f: (c * f()).sum(), array)
            assert max_rel_err(manual[name], fd) <= 1e-6, (mode, name)


@pytest.mark.parametrize("activation", [None, "relu"])
def test_ei_dense_matches_numpy_reference(activation):
    w, x, c, _ = float32_point()
    layer = EIDense(10, inhibitory_units=3, activation=activation)
    layer.build((None, 16))
    assign(layer, **{k: w[k] for k in ("W_EE", "bias", "W_IE", "W_EI")})
    args = (x, w["W_EE"], w["W_IE"], w["W_EI"], w["bias"])
    assert max_rel_err(to_numpy(layer(x)), ref.ei_dense_forward(*args, activation)) <= TOLERANCE
    xv = keras.Variable(x, name="x")
    names = ("W_EE", "W_IE", "W_EI", "bias")
    cc = keras.ops.convert_to_tensor(c)
    _, grads = gradients(lambda: keras.ops.sum(cc * layer(xv)),
                         [getattr(layer, n) for n in names] + [xv])
    expected = ref.ei_dense_task_gradients(*args, c, activation)
    for name, g in zip((*names, "x"), grads, strict=True):
        assert max_rel_err(g, expected[name]) <= TOLERANCE, name

    e_layer = EDense(10, activation=activation)
    e_layer.build((None, 16))
    assign(e_layer, W_EE=w["W_EE"], bias=w["bias"])
    expected = ref.e_dense_forward(x, w["W_EE"], w["bias"], activation)
    assert max_rel_err(to_numpy(e_layer(x)), expected) <= TOLERANCE


@pytest.mark.parametrize("subtractive_only", [False, True], ids=["divisive", "subtractive"])
@pytest.mark.parametrize("mode", ERROR_NORMALIZATION_MODES)
def test_inorm_dense_matches_numpy_reference(mode, subtractive_only):
    w, _, _, _ = float32_point()
    layer, x, c = off_init_inorm(mode, subtractive_only, norm_weight=0.3, activation="relu")
    names = EXCITATORY + (INHIBITORY[:2] if subtractive_only else INHIBITORY)
    lateral = None if layer.lateral_weights is None else to_numpy(layer.lateral_weights)
    args = (x, w["W_EE"], w["bias"], w["W_IE"], w["W_EI"],
            None if subtractive_only else w["B_IE"], None if subtractive_only else w["B_EI"])
    errors = {}

    errors["output"] = max_rel_err(to_numpy(layer(x)), ref.inorm_forward(*args, "relu"))
    z, loss = layer.preactivation(x)
    errors["z"] = max_rel_err(to_numpy(z), ref.inorm_preactivation(*args))
    errors["L_norm"] = max_rel_err(to_numpy(loss), ref.inorm_norm_loss(*args, norm_weight=0.3))

    xv = keras.Variable(x, name="x")
    variables = [getattr(layer, n) for n in names] + [xv]
    cc = keras.ops.convert_to_tensor(c)
    _, task = gradients(lambda: keras.ops.sum(cc * layer(xv)), variables)
    expected = ref.inorm_task_gradients(*args, c=c, mode=mode, lateral_weights=lateral,
                                        activation="relu")
    for name, g in zip((*names, "x"), task, strict=True):
        errors[f"task/{name}"] = (max_rel_err(g, expected[name]) if np.abs(expected[name]).max()
                                  else float(np.abs(g).max()))
    _, norm = gradients(lambda: layer.preactivation(xv)[1], variables)
    expected = ref.inorm_norm_loss_gradients(*args, norm_weight=0.3)
    for name, g in zip((*names, "x"), norm, strict=True):
        errors[f"L_norm/{name}"] = (max_rel_err(g, expected[name]) if np.abs(expected[name]).max()
                                    else float(np.abs(g).max()))
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, bad


# --------------------------------------------------------------------------------------------
# 7. Layer-test-grade checks

D = 10
LAYER_CASES = {
    "EIDense": (lambda: EIDense(6, activation="relu", seed=1), 6),
    "EDense": (lambda: EDense(6, seed=1), 6),
    "INormDense-full": (lambda: INormDense(6, error_normalization="full", activation="relu",
                                           seed=1), 6),
    "INormDense-lateral": (lambda: INormDense(6, error_normalization="lateral", seed=1), 6),
    "INormDense-center-subtractive": (
        lambda: INormDense(6, error_normalization="center", subtractive_only=True, seed=1), 6),
    "ErrorNormalization-full": (lambda: ErrorNormalization("full"), D),
    "ErrorNormalization-lateral": (lambda: ErrorNormalization("lateral", seed=1), D),
}


def tiny_model(make_layer):
    inputs = keras.Input((D,))
    layer = make_layer()
    hidden = layer(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden)), layer, hidden


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (8, D)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")


def fit_one_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0]


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_behaves_like_a_keras_layer(case, tmp_path):
    make_layer, units = LAYER_CASES[case]
    x, y = tiny_data()
    model, layer, hidden = tiny_model(make_layer)
    # symbolic call and shape inference
    assert tuple(hidden.shape) == (None, units)
    assert tuple(layer.compute_output_shape((None, D))) == (None, units)
    assert tuple(layer.compute_output_shape((4, D))) == (4, units)
    # eager call
    eager = to_numpy(layer(x))
    assert eager.shape == (8, units) and np.isfinite(eager).all()
    before = to_numpy(model(x))
    # get_config / from_config
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    if getattr(layer, "seed", None) is not None:  # seeded: the same initial weights
        clone.build((None, D))
        for a, b in zip(layer.weights, clone.weights, strict=True):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
        np.testing.assert_array_equal(to_numpy(clone(x)), eager)
    # one training step
    old = [to_numpy(v).copy() for v in layer.trainable_weights]
    loss = fit_one_step(model, x, y)
    assert np.isfinite(loss)
    new = [to_numpy(v) for v in layer.trainable_weights]
    if old:
        assert any(not np.array_equal(a, b) for a, b in zip(old, new, strict=True))
    for v in layer.weights:  # Dale's principle kept by the NonNeg constraints
        if v.name in ("W_EE", "W_IE", "W_EI", "B_EI"):
            assert (to_numpy(v) >= 0).all(), v.name
    after = to_numpy(model(x))
    assert not np.array_equal(before, after)
    # compiled predict = eager call, up to float32 rounding (XLA fuses differently)
    np.testing.assert_allclose(model.predict(x, verbose=0), after, rtol=1e-5, atol=1e-6)
    # .keras round trip, no custom_objects
    path = tmp_path / f"{case}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x)), after)
    loaded_layer = loaded.get_layer(layer.name)
    assert type(loaded_layer) is type(layer)
    for a, b in zip(layer.weights, loaded_layer.weights, strict=True):
        assert a.path.split("/")[-1] == b.path.split("/")[-1]
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_every_layer_under_mixed_precision(mixed_float16):
    # One model stacking every case (one compiled train step instead of seven): each layer runs
    # in float16 with float32 variables, forward and backward, one SGD step, nothing non-finite.
    x, y = tiny_data(1)
    inputs = keras.Input((D,))
    hidden, layers = inputs, []
    for make_layer, _ in LAYER_CASES.values():
        layers.append(make_layer())
        hidden = layers[-1](hidden)
        assert keras.backend.standardize_dtype(hidden.dtype) == "float16", layers[-1].name
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    for layer in layers:
        assert layer.compute_dtype == "float16" and layer.variable_dtype == "float32"
        assert all(v.dtype == "float32" for v in layer.weights), layer.name
    out = to_numpy(model(x))
    assert out.dtype == np.float16 and np.isfinite(out).all()
    assert np.isfinite(fit_one_step(model, x, y))
    for v in model.weights:
        assert np.isfinite(to_numpy(v)).all(), v.path
    assert np.isfinite(to_numpy(model(x))).all()


def test_unseeded_lateral_weights_saved_with_inorm_model(tmp_path):
    inputs = keras.Input((D,))
    layer = INormDense(6, error_normalization="lateral")
    model = keras.Model(inputs, layer(inputs))
    w = to_numpy(layer.lateral_weights)
    assert (w > 0).all() and abs(float(w.astype(np.float64).sum()) - 1.0) <= 1e-6
    assert layer.lateral_weights.path not in [v.path for v in layer.trainable_weights]
    model.save(tmp_path / "inorm.keras")
    loaded = keras.models.load_model(tmp_path / "inorm.keras")
    np.testing.assert_array_equal(to_numpy(loaded.layers[-1].lateral_weights), w)


# --------------------------------------------------------------------------------------------
# 8. Bad arguments


@pytest.mark.parametrize("cls", [EIDense, EDense, INormDense])
def test_bad_units_and_distribution(cls):
    for units in (0, -3, 2.5, "4", True, None):
        with pytest.raises(ValueError, match="units"):
            cls(units)
    with pytest.raises(ValueError, match="'gaussian'"):
        cls(4, init_distribution="gaussian")
    if cls is not EDense:
        with pytest.raises(ValueError, match="inhibitory_units"):
            cls(4, inhibitory_units=0)


def test_bad_inorm_arguments():
    with pytest.raises(ValueError, match="'batchnorm'"):
        INormDense(4, error_normalization="batchnorm")
    with pytest.raises(ValueError, match="norm_weight"):
        INormDense(4, norm_weight=-1.0)
    with pytest.raises(ValueError, match="epsilon"):
        INormDense(4, epsilon=0.0)


def test_inorm_divisive_needs_input_at_least_as_wide_as_units():
    with pytest.raises(ValueError) as info:
        INormDense(20)(np.ones((2, 7), "float32"))
    assert "7" in str(info.value) and "20" in str(info.value)
    assert INormDense(20, subtractive_only=True)(np.ones((2, 7), "float32")).shape == (2, 20)


@pytest.mark.parametrize("cls", [EIDense, EDense, INormDense])
def test_input_without_a_feature_axis_is_rejected(cls):
    # (..., features) inputs are accepted like keras.layers.Dense (tests/test_keras_arguments.py);
    # a 1-D input has no batch axis.
    with pytest.raises(ValueError, match=r"\(batch, \.\.\., features\)"):
        cls(2)(np.ones((5,), "float32"))
