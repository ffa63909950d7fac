"""Tests of the convolutional Dale layers ``EIConv2D`` and ``INormConv2D``, under the backend
chosen by KERAS_BACKEND: the dense layers' numeric tests (tests/test_layers.py) on patches.

- A float64 NumPy reference (``tests/conv_reference.py``: im2col with explicit loops, the dense
  reference on every patch, manual backprop), checked by finite differences.
- EI initialisation: seeded NumPy draws on the flattened kernel (identical on every backend);
  on real Fashion-MNIST images the mean of ``z`` over output channels is ~0 at every location
  of every sample (the excitatory drive alone: far from 0).
- I-Norm: outputs, ``L_norm`` and both gradients equal the reference for every
  error-normalization mode and both statistics choices; the task loss never reaches the
  inhibitory weights and ``L_norm`` never reaches ``W_EE``, the bias or the input.
- Keras-layer checks (symbolic call, shapes, config, one ``fit`` step, ``.keras`` round trip)
  and clear errors for bad arguments.
"""

from __future__ import annotations

import conv_reference as cref
import keras
import numpy as np
import numpy_reference as ref
import pytest
from test_layers import (
    TOLERANCE,
    assert_divisive_svd_init,
    assign,
    fashion_images,  # noqa: F401 (fixture)
    max_rel_err,
    to_numpy,
)

from ei_keras.constraints import NonNegAfter
from ei_keras.initializers import (
    DaleExcitatory,
    RowStochastic,
    balanced_inhibition,
    dale_scale,
)
from ei_keras.layers import EIConv2D, EIDense, INormConv2D
from ei_keras.models import DualLossModel
from ei_keras.models.gradients import gradients
from ei_keras.ops import ERROR_NORMALIZATION_MODES, lateral_pooling_weights
from ei_keras.optimizers import dale_sgd

INHIBITORY = ("W_IE", "W_EI", "B_IE", "B_EI")
EXCITATORY = ("W_EE", "bias")
#: (padding, strides, dilation_rate) of the reference comparisons.
GEOMETRIES = {"same-s2": ("same", (2, 2), (1, 1)), "valid-d2": ("valid", (1, 1), (2, 2))}
X_SHAPE, KERNEL, NE, NI = (3, 7, 6, 2), (3, 3), 5, 2  # d = 18 >= NE


def conv_point(seed=0, ne=NE, ni=NI, x_shape=X_SHAPE, kernel=KERNEL):
    """Dale-signed float32 weights away from initialisation (as float64 copies), inputs."""
    d = kernel[0] * kernel[1] * x_shape[-1]
    rng = np.random.default_rng(seed)
    w_ee = rng.exponential(dale_scale(d, ne), (ne, d))
    w = {"W_EE": w_ee, "bias": rng.normal(0.0, 0.1, ne),
         "W_IE": np.repeat(w_ee.mean(0, keepdims=True), ni, 0) * rng.uniform(0.6, 1.4, (ni, d)),
         "W_EI": rng.uniform(0.1, 1.0, (ne, ni)) / ni,
         "B_IE": rng.normal(0.0, 0.5, (ne, d)),
         "B_EI": rng.uniform(0.5, 1.5, (ne, ne)) / ne}
    w = {k: v.astype("float32").astype(np.float64) for k, v in w.items()}
    x = rng.uniform(0.0, 1.0, x_shape).astype("float32")
    return w, x


def patches(x, layer):
    return cref.im2col(x, layer.kernel_size, layer.strides, layer.padding, layer.dilation_rate)


def upstream(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# --------------------------------------------------------------------------------------------
# The reference, checked by finite differences


def test_conv_reference_matches_finite_differences():
    geometry = ("same", (2, 2), (1, 1))
    w, x = conv_point(x_shape=(2, 5, 4, 2), ne=4)
    x = x.astype(np.float64)
    # im2col and col2im are adjoint: <im2col(x), g> = <x, col2im(g)>.
    P = cref.im2col(x, KERNEL, *geometry[1:2], geometry[0], geometry[2])
    g = upstream(P.shape).astype(np.float64)
    assert np.isclose((P * g).sum(), (x * cref.col2im(g, x.shape, KERNEL, geometry[1],
                                                         geometry[0], geometry[2])).sum())
    p = {k: v.copy() for k, v in w.items()}

    def P_of():
        return cref.im2col(x, KERNEL, geometry[1], geometry[0], geometry[2])

    # EIConv2D through a ReLU: every weight and the image.
    c = upstream(P.shape[:-1] + (4,))
    ei = lambda: (c * cref.ei_conv_forward(P_of(), p["W_EE"], p["W_IE"], p["W_EI"],  # noqa: E731
                                           p["bias"], "relu")).sum()
    manual = cref.ei_conv_task_gradients(P, p["W_EE"], p["W_IE"], p["W_EI"], p["bias"], c, "relu")
    manual["x"] = cref.col2im(manual.pop("P"), x.shape, KERNEL, geometry[1], geometry[0],
                              geometry[2])
    for name, array in (*((k, p[k]) for k in ("W_EE", "W_IE", "W_EI", "bias")), ("x", x)):
        assert max_rel_err(manual[name], ref.numerical_gradient(ei, array)) <= 1e-6, name

    b, L = P.shape[0], P.shape[1] * P.shape[2]
    flat = lambda: P_of().reshape(b, L, -1)  # noqa: E731
    cf = c.reshape(b, L, -1).astype(np.float64)
    for statistics in ("map", "location"):
        # L_norm: the inhibitory weights, divisive and subtractive-only.
        for names in (INHIBITORY, INHIBITORY[:2]):
            div = len(names) == 4
            args = lambda div=div: (  # noqa: E731
                flat(), p["W_EE"], p["bias"], p["W_IE"], p["W_EI"],
                p["B_IE"] if div else None, p["B_EI"] if div else None)
            manual = cref.inorm_conv_norm_loss_gradients(*args(), statistics=statistics,
                                                         norm_weight=0.5)
            for name in names:
                fd = ref.numerical_gradient(lambda a=args: cref.inorm_conv_norm_loss(
                    *a(), statistics=statistics, norm_weight=0.5), p[name])
                assert max_rel_err(manual[name], fd) <= 1e-6, (statistics, name, div)
        # Task loss with s and delta held: "none" is the plain derivative, "full" the
        # derivative through a LayerNorm over the statistics' axes.
        wargs = [p[k] for k in ("W_EE", "bias", "W_IE", "W_EI", "B_IE", "B_EI")]
        _, s0, d0, _ = cref.inorm_conv_parts(flat(), *wargs, statistics=statistics)
        z_of = lambda: (flat() @ p["W_EE"].T + p["bias"] - s0) / d0  # noqa: E731

        def ln(z, statistics=statistics):
            rows = (b, -1) if statistics == "map" else (-1, z.shape[-1])
            return ref.layer_norm(z.reshape(rows)).reshape(z.shape)

        for mode, f in (("none", z_of), ("full", lambda: ln(z_of()))):
            manual = cref.inorm_conv_task_gradients(flat(), *wargs, c=cf, statistics=statistics,
                                                    mode=mode)
            manual["x"] = cref.col2im(manual.pop("P").reshape(P.shape), x.shape, KERNEL,
                                      geometry[1], geometry[0], geometry[2])
            for name, array in (("W_EE", p["W_EE"]), ("bias", p["bias"]), ("x", x)):
                fd = ref.numerical_gradient(lambda f=f: (cf * f()).sum(), array)
                assert max_rel_err(manual[name], fd) <= 1e-6, (statistics, mode, name)


# --------------------------------------------------------------------------------------------
# Initialisation


def test_conv_init_is_the_dense_init_of_the_flattened_kernel():
    # Seeded NumPy draws on the (filters, kh * kw * cin) kernel: identical on every backend.
    ne, kernel, cin, seed = 12, (3, 5), 4, 7
    d = kernel[0] * kernel[1] * cin
    layer = EIConv2D(ne, kernel, seed=seed)
    layer.build((None, 9, 9, cin))
    ni = layer.inhibitory_units
    assert ni == 1
    w_ee = DaleExcitatory(seed=seed).sample((ne, d))
    w_ei = RowStochastic(seed=seed + 1).sample((ne, ni))
    np.testing.assert_array_equal(to_numpy(layer.W_EE), w_ee.astype("float32"))
    np.testing.assert_array_equal(to_numpy(layer.W_IE),
                                  balanced_inhibition(w_ee, ni).astype("float32"))
    np.testing.assert_array_equal(to_numpy(layer.W_EI), w_ei.astype("float32"))
    inorm = INormConv2D(ne, kernel, error_normalization="lateral", statistics="location",
                        seed=seed)
    inorm.build((None, 9, 9, cin))
    for name in ("W_EE", "W_IE", "W_EI"):
        np.testing.assert_array_equal(to_numpy(getattr(inorm, name)),
                                      to_numpy(getattr(layer, name)))
    assert_divisive_svd_init(to_numpy(inorm.B_IE), to_numpy(inorm.B_EI), w_ee, w_ei)
    np.testing.assert_array_equal(to_numpy(inorm.lateral_weights),
                                  to_numpy(lateral_pooling_weights(ne, seed + 2)))
    # A kernel_initializer is called with Conv2D's kernel shape and flattened in (kh, kw, cin).
    init = keras.initializers.RandomUniform(0.0, 0.05, seed=3)
    custom = EIConv2D(ne, kernel, kernel_initializer=init, seed=seed)
    custom.build((None, 9, 9, cin))
    expected = to_numpy(init((*kernel, cin, ne))).reshape(d, ne).T
    np.testing.assert_array_equal(to_numpy(custom.W_EE), expected)
    # The map has one lateral weight per unit: (OH * OW * filters,).
    mapped = INormConv2D(ne, kernel, error_normalization="lateral", seed=seed)
    mapped.build((None, 9, 9, cin))
    assert tuple(mapped.lateral_weights.shape) == (7 * 5 * ne,)


def images(fashion):
    return fashion[:256].reshape(-1, 28, 28, 1)


def test_ei_conv_init_centres_every_location_on_real_images(fashion_images):  # noqa: F811
    x = images(fashion_images)
    layer = EIConv2D(16, 5, strides=2, padding="same", seed=0)
    z = to_numpy(layer(x)).astype(np.float64)
    e = to_numpy(layer.excitatory_drive(keras.ops.convert_to_tensor(x))).astype(np.float64)
    mean_ei, mean_e = np.abs(z.mean(axis=-1)), np.abs(e.mean(axis=-1))
    # mean over channels of z is 0 at every location in exact arithmetic (balanced W_IE and
    # row-stochastic W_EI on every patch). Measured (JAX): max 1.0e-6 (drives up to 11.4);
    # the excitatory drive alone: mean over channels up to 8.0, median 3.0 where the patch is
    # not all zero (74 % of the locations), exactly 0 where it is. Tolerance 1e-4 per location.
    assert mean_ei.max() < 1e-4, mean_ei.max()
    lit = mean_e > 0
    assert lit.mean() > 0.5 and np.median(mean_e[lit]) > 0.3, np.median(mean_e[lit])
    assert z.std(axis=-1)[lit].mean() > 0.05  # centred, not silenced


@pytest.mark.parametrize("statistics", ["map", "location"])
def test_inorm_conv_init_normalizes_real_images(fashion_images, statistics):  # noqa: F811
    x = images(fashion_images)
    layer = INormConv2D(16, 5, strides=2, padding="same", statistics=statistics, seed=0)
    layer.build(x.shape)
    z, loss = layer.preactivation(x)
    z = to_numpy(z).astype(np.float64)
    axes = (1, 2, 3) if statistics == "map" else (-1,)
    # SVD init: per statistics group, mean 0 and second moment m / (m + eps) ~ 1. Measured
    # (JAX): map: max |mean| 4e-8, max |m2 - 1| 3.4e-4, L_norm 1.7e-11; location: max |mean|
    # 8e-7, median |m2 - 1| 1.6e-5 where the patch is not all zero, but 26 % of the patches
    # are all zero (z = 0, m2 = 0, whatever the weights), so L_norm starts at 2.8e-3.
    assert np.abs(z.mean(axis=axes)).max() < 1e-4
    m2 = (z**2).mean(axis=axes)
    if statistics == "map":
        assert np.abs(m2 - 1.0).max() < 1e-3
        assert float(to_numpy(loss)) < 1e-8
    else:
        empty = np.all(patches(x, layer) == 0, axis=-1)
        assert np.abs(z[empty]).max() == 0.0  # zero patch: e = b = 0, delta = sqrt(eps)
        assert np.median(np.abs(m2[~empty] - 1.0)) < 1e-2


# --------------------------------------------------------------------------------------------
# Every backend against the float64 reference


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("activation", [None, "relu"])
def test_ei_conv_matches_numpy_reference(geometry, activation):
    padding, strides, dilation = GEOMETRIES[geometry]
    w, x = conv_point()
    layer = EIConv2D(NE, KERNEL, strides=strides, padding=padding, dilation_rate=dilation,
                     inhibitory_units=NI, activation=activation)
    layer.build((None, *X_SHAPE[1:]))
    assign(layer, **{k: w[k] for k in ("W_EE", "bias", "W_IE", "W_EI")})
    P = patches(x, layer)
    args = (P, w["W_EE"], w["W_IE"], w["W_EI"], w["bias"])
    out = to_numpy(layer(x))
    assert out.shape == P.shape[:-1] + (NE,)
    assert tuple(layer.compute_output_shape(X_SHAPE)) == out.shape
    assert max_rel_err(out, cref.ei_conv_forward(*args, activation)) <= TOLERANCE
    c = upstream(out.shape)
    xv = keras.Variable(x, name="x")
    names = ("W_EE", "W_IE", "W_EI", "bias")
    cc = keras.ops.convert_to_tensor(c)
    _, grads = gradients(lambda: keras.ops.sum(cc * layer(xv)),
                         [getattr(layer, n) for n in names] + [xv])
    expected = cref.ei_conv_task_gradients(*args, c, activation)
    expected["x"] = cref.col2im(expected.pop("P"), x.shape, layer.kernel_size, strides, padding,
                                dilation)
    for name, g in zip((*names, "x"), grads, strict=True):
        assert max_rel_err(g, expected[name]) <= TOLERANCE, name


@pytest.mark.parametrize("statistics", ["map", "location"])
@pytest.mark.parametrize("subtractive_only", [False, True], ids=["divisive", "subtractive"])
@pytest.mark.parametrize("mode", ERROR_NORMALIZATION_MODES)
def test_inorm_conv_matches_numpy_reference_and_isolates_gradients(mode, subtractive_only,
                                                                    statistics):
    padding, strides, dilation = GEOMETRIES["same-s2"]
    w, x = conv_point()
    layer = INormConv2D(NE, KERNEL, strides=strides, padding=padding, inhibitory_units=NI,
                        error_normalization=mode, subtractive_only=subtractive_only,
                        statistics=statistics, norm_weight=0.3, activation="relu", seed=0)
    layer.build((None, *X_SHAPE[1:]))
    names = EXCITATORY + (INHIBITORY[:2] if subtractive_only else INHIBITORY)
    assign(layer, **{k: w[k] for k in names})
    P = patches(x, layer)
    b, oh, ow, d = P.shape
    flat = P.reshape(b, oh * ow, d)
    div = not subtractive_only
    args = (flat, w["W_EE"], w["bias"], w["W_IE"], w["W_EI"], w["B_IE"] if div else None,
            w["B_EI"] if div else None)
    lateral = None if layer.lateral_weights is None else to_numpy(layer.lateral_weights)
    errors = {}
    z_ref = cref.inorm_conv_preactivation(*args, statistics=statistics)
    out = to_numpy(layer(x))
    errors["output"] = max_rel_err(out.reshape(b, oh * ow, NE), np.maximum(z_ref, 0.0))
    z, loss = layer.preactivation(x)
    errors["z"] = max_rel_err(to_numpy(z).reshape(z_ref.shape), z_ref)
    errors["L_norm"] = max_rel_err(to_numpy(loss), cref.inorm_conv_norm_loss(
        *args, statistics=statistics, norm_weight=0.3))

    xv = keras.Variable(x, name="x")
    variables = [getattr(layer, n) for n in names] + [xv]
    c = upstream(out.shape)
    cc = keras.ops.convert_to_tensor(c)
    _, task = gradients(lambda: keras.ops.sum(cc * layer(xv)), variables)
    task = dict(zip((*names, "x"), task, strict=True))
    expected = cref.inorm_conv_task_gradients(
        *args, c=c.reshape(b, oh * ow, NE), statistics=statistics, mode=mode,
        lateral_weights=lateral, activation="relu")
    expected["x"] = cref.col2im(expected.pop("P").reshape(P.shape), x.shape, KERNEL, strides,
                                padding, dilation)
    for name in (*EXCITATORY, "x"):
        errors[f"task/{name}"] = max_rel_err(task[name], expected[name])
    for name in names:  # isolation: exactly zero, not small
        if name in INHIBITORY:
            np.testing.assert_array_equal(task[name], 0.0, err_msg=f"task loss reached {name}")

    _, norm = gradients(lambda: layer.preactivation(xv)[1], variables)
    norm = dict(zip((*names, "x"), norm, strict=True))
    expected = cref.inorm_conv_norm_loss_gradients(*args, statistics=statistics, norm_weight=0.3)
    for name in names:
        if name in INHIBITORY:
            errors[f"L_norm/{name}"] = max_rel_err(norm[name], expected[name])
    for name in (*EXCITATORY, "x"):
        np.testing.assert_array_equal(norm[name], 0.0, err_msg=f"L_norm reached {name}")
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, bad


# --------------------------------------------------------------------------------------------
# Keras-layer checks

IMAGE = (8, 8, 2)
LAYER_CASES = {
    "EIConv2D": lambda: EIConv2D(4, 3, strides=2, padding="same", activation="relu", seed=1),
    "INormConv2D-full-map": lambda: INormConv2D(4, 3, error_normalization="full",
                                                activation="relu", seed=1),
    "INormConv2D-lateral-map": lambda: INormConv2D(4, 3, strides=2, padding="same",
                                                   error_normalization="lateral", seed=1),
    "INormConv2D-center-location-subtractive": lambda: INormConv2D(
        4, (3, 2), error_normalization="center", subtractive_only=True, statistics="location",
        seed=1),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_conv_layer_behaves_like_a_keras_layer(case, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, *IMAGE)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    inputs = keras.Input(IMAGE)
    layer = LAYER_CASES[case]()
    hidden = layer(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(hidden)))
    out_shape = tuple(layer.compute_output_shape((None, *IMAGE)))
    assert tuple(hidden.shape) == out_shape
    eager = to_numpy(layer(x))
    assert eager.shape == (8, *out_shape[1:]) and np.isfinite(eager).all()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build((None, *IMAGE))
    for a, b in zip(layer.weights, clone.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    np.testing.assert_array_equal(to_numpy(clone(x)), eager)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    old = [to_numpy(v).copy() for v in layer.trainable_weights]
    assert np.isfinite(model.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0])
    assert any(not np.array_equal(a, to_numpy(b))
               for a, b in zip(old, layer.trainable_weights, strict=True))
    for v in layer.weights:
        if v.name in ("W_EE", "W_IE", "W_EI", "B_EI"):
            assert (to_numpy(v) >= 0).all(), v.name
    after = to_numpy(model(x))
    path = tmp_path / f"{case}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x)), after)
    loaded_layer = loaded.get_layer(layer.name)
    assert type(loaded_layer) is type(layer)
    loaded_config, config = loaded_layer.get_config(), layer.get_config()
    if "norm_weight" in config:  # lambda is a float32 variable once built
        assert loaded_config.pop("norm_weight") == pytest.approx(config.pop("norm_weight"))
    assert loaded_config == config
    for a, b in zip(layer.weights, loaded_layer.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_conv_arguments_constraints_regularizers_and_dual_loss(tmp_path):
    # Conv2D-style arguments survive config and .keras; a user constraint runs before Dale's
    # sign; W_EE's regularizer joins the task loss and the inhibitory one the normalization
    # loss under the dual-loss trainer (the step moves each weight group by its own loss).
    layer = INormConv2D(
        4, (3, 2), strides=(1, 2), padding="same", use_bias=False, error_normalization="full",
        kernel_initializer=keras.initializers.RandomUniform(0.0, 0.1, seed=4),
        kernel_regularizer=keras.regularizers.L2(0.3), inhibitory_regularizer="l1",
        kernel_constraint=keras.constraints.MaxNorm(0.05, axis=1), seed=0)
    x_in = keras.Input(IMAGE)
    model = DualLossModel(x_in, EIDense(3, inhibitory_units=1, seed=1)(
        keras.layers.Flatten()(keras.layers.ReLU()(layer(x_in)))))
    assert isinstance(layer.W_EE.constraint, NonNegAfter) and layer.bias is None
    model.compile(optimizer=dale_sgd(1.0, 0.01, 0.01),  # a large step: the constraint must act
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).uniform(0, 1, (16, *IMAGE)).astype("float32")
    y = np.arange(16) % 3
    assignment = model.loss_assignment()
    norm_paths = {v.path for v in layer.normalization_variables}
    assert {p.rsplit("/", 1)[-1] for p in norm_paths} == set(INHIBITORY)
    assert norm_paths == set(assignment["normalization"])
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["norm_loss"] > 0 and np.isfinite(logs["task_loss"])
    w_ee = to_numpy(layer.W_EE)
    assert (w_ee >= 0).all() and np.linalg.norm(w_ee, axis=1).max() <= 0.05 * (1 + 1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    config = layer.get_config()
    loaded_config = loaded.get_layer(layer.name).get_config()
    assert loaded_config.pop("norm_weight") == pytest.approx(config.pop("norm_weight"))
    assert loaded_config == config and config["strides"] == (1, 2)


def test_conv_layers_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        image = (16, 16, 2)  # every case stacked: 16 -> 8 -> 6 -> 3 -> (1, 2)
        x = np.random.default_rng(1).uniform(0, 1, (8, *image)).astype("float32")
        inputs = keras.Input(image)
        h = inputs
        for make in LAYER_CASES.values():
            h = make()(h)
            assert keras.backend.standardize_dtype(h.dtype) == "float16"
        model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
        out = to_numpy(model(x))
        assert out.dtype == np.float16 and np.isfinite(out).all()
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        loss = model.fit(x, np.zeros((8, 3), "float32"), batch_size=8, epochs=1,
                         verbose=0).history["loss"][0]
        assert np.isfinite(loss)
        assert all(np.isfinite(to_numpy(v)).all() for v in model.weights)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


# --------------------------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize("cls", [EIConv2D, INormConv2D])
def test_bad_conv_arguments(cls):
    for filters in (0, 2.5, "4", None):
        with pytest.raises(ValueError, match="filters"):
            cls(filters, 3)
    for name, value in (("kernel_size", 0), ("kernel_size", (3,)), ("strides", (1, 0)),
                        ("dilation_rate", 1.5)):
        with pytest.raises(ValueError, match=name):
            cls(4, **{"kernel_size": 3, name: value})
    with pytest.raises(ValueError, match="'full'"):
        cls(4, 3, padding="full")
    with pytest.raises(ValueError, match="channels_last.*Permute"):
        cls(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="cannot be combined"):
        cls(4, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        cls(4, 3)(np.ones((2, 9, 3), "float32"))
    with pytest.raises(ValueError, match="non-negative initializer"):
        cls(4, 3, kernel_initializer="glorot_uniform")(np.ones((1, 5, 5, 1), "float32"))


def test_bad_inorm_conv_arguments():
    with pytest.raises(ValueError, match="statistics"):
        INormConv2D(4, 3, statistics="batch")
    with pytest.raises(ValueError, match=r"kh \* kw \* in_channels") as info:
        INormConv2D(20, 3)(np.ones((1, 5, 5, 2), "float32"))  # d = 18 < 20
    assert "subtractive_only=True" in str(info.value)
    assert INormConv2D(20, 3, subtractive_only=True)(np.ones((1, 5, 5, 2), "float32")).shape \
        == (1, 3, 3, 20)
    with pytest.raises(ValueError, match="known height and width"):
        INormConv2D(4, 3, error_normalization="lateral")(keras.Input((None, None, 2)))


def test_map_statistics_on_images_of_any_size():
    # GradNorm over the map needs no static height and width (lateral does, above).
    inputs = keras.Input((None, None, 2))
    layer = INormConv2D(4, 3, padding="same", error_normalization="full", seed=0)
    model = keras.Model(inputs, layer(inputs))
    for size in (5, 8):
        x = np.random.default_rng(size).uniform(0, 1, (2, size, size, 2)).astype("float32")
        xv = keras.Variable(x, name="x")
        out = to_numpy(model(x))
        assert out.shape == (2, size, size, 4) and np.isfinite(out).all()
        _, (g,) = gradients(lambda xv=xv: keras.ops.sum(keras.ops.square(layer(xv))), [xv])
        assert g.shape == x.shape and np.isfinite(g).all()
    with pytest.raises(ValueError, match="activity_regularizer"):
        INormConv2D(4, 3, activity_regularizer="l2")
