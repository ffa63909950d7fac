"""The Dale layers take ``keras.layers.Dense``'s arguments and ``(..., features)`` inputs, under
the backend chosen by KERAS_BACKEND (issue #14).

- The must-show: ``EIDense(64, use_bias=False, kernel_regularizer="l2")`` on ``(batch, 7, 28)``
  inputs trains in a ``Sequential`` model.
- Leading axes are samples: a layer on ``(4, 3, d)`` equals the same layer on ``(12, d)``
  (outputs, the normalization loss, and the GradNorm backward pass).
- Dale's sign holds whatever the user passes: a user constraint runs first and ``NonNeg`` after
  it; an initializer drawing negative values is refused with the fix; a positive one is used
  (in Dense's kernel orientation) and the inhibitory weights are balanced on it.
- Regularizers reach the right loss under the dual-loss trainer: a ``kernel_regularizer`` on
  ``W_EE`` trains with the task loss, an ``inhibitory_regularizer`` with the normalization loss
  (one SGD step equals an independent gradient computation of the total loss).
- Every argument survives ``get_config``/``from_config`` and a ``.keras`` round trip.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from ei_keras.constraints import NonNegAfter
from ei_keras.initializers import balanced_inhibition
from ei_keras.layers import EDense, EIDense, INormDense
from ei_keras.models import DualLossModel
from ei_keras.models.gradients import gradients
from ei_keras.optimizers import dale_sgd

D, UNITS = 12, 6
LAYERS = {
    "EDense": lambda **kw: EDense(UNITS, seed=0, **kw),
    "EIDense": lambda **kw: EIDense(UNITS, seed=0, **kw),
    "INormDense": lambda **kw: INormDense(UNITS, error_normalization="full", seed=0, **kw),
}
DALE_WEIGHTS = ("W_EE", "W_IE", "W_EI", "B_EI")


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def inputs(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


def test_eidense_with_dense_arguments_trains_on_3d_input_in_sequential():
    keras.utils.set_random_seed(0)
    layer = EIDense(64, use_bias=False, kernel_regularizer="l2", seed=0)
    model = keras.Sequential([keras.Input((7, 28)), layer, keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    assert model.output_shape == (None, 10)
    assert layer.output.shape == (None, 7, 64)
    assert layer.bias is None and [v.name for v in layer.weights] == ["W_EE", "W_IE", "W_EI"]
    x, y = inputs((64, 7, 28)), np.arange(64) % 10
    # "l2" is keras.regularizers.L2(0.01) on W_EE: the model's only loss term besides the task
    w_ee = to_numpy(layer.W_EE).astype(np.float64)
    (penalty,) = model.losses
    np.testing.assert_allclose(to_numpy(penalty), 0.01 * np.sum(w_ee**2), rtol=1e-5)
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]
    for v in layer.weights:
        assert (to_numpy(v) >= 0).all(), v.name


@pytest.mark.parametrize("name", list(LAYERS))
def test_leading_axes_are_samples(name):
    layer = LAYERS[name]()
    x3 = inputs((4, 3, D))
    x2 = x3.reshape(12, D)
    y3, y2 = to_numpy(layer(x3)), to_numpy(layer(x2))
    assert y3.shape == (4, 3, UNITS)
    assert tuple(layer.compute_output_shape((None, 3, D))) == (None, 3, UNITS)
    # Different matmul shapes may round differently (BLAS blocking): float32 tolerance.
    np.testing.assert_allclose(y3.reshape(12, UNITS), y2, rtol=1e-5, atol=1e-6)
    if isinstance(layer, INormDense):
        loss3 = to_numpy(layer.preactivation(x3)[1])
        loss2 = to_numpy(layer.preactivation(x2)[1])
        np.testing.assert_allclose(loss3, loss2, rtol=1e-5)
        # the backward pass (GradNorm normalizes the error per sample over the units)
        upstream = ops.convert_to_tensor(inputs((4, 3, UNITS), seed=1) - 0.5)
        _, g3 = gradients(lambda: ops.sum(layer(x3) * upstream), [layer.W_EE, layer.bias])
        _, g2 = gradients(lambda: ops.sum(layer(x2) * ops.reshape(upstream, (12, UNITS))),
                          [layer.W_EE, layer.bias])
        for a, b in zip(g3, g2, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("name", list(LAYERS))
def test_user_constraint_runs_before_dales_sign(name):
    max_norm = keras.constraints.MaxNorm(0.05, axis=1)  # rows of W_EE: (units, d) orientation
    kw = {"kernel_constraint": max_norm}
    if name != "EDense":
        kw["inhibitory_constraint"] = keras.constraints.MaxNorm(0.05, axis=1)
    layer = LAYERS[name](**kw)
    model = keras.Sequential([keras.Input((D,)), layer, keras.layers.Dense(3)])
    assert isinstance(layer.W_EE.constraint, NonNegAfter)
    model.compile(keras.optimizers.SGD(1.0), "mse")  # a large step: the constraints must act
    model.fit(inputs((16, D)), inputs((16, 3), seed=2) * 10, batch_size=16, epochs=1,
              verbose=0)
    w_ee = to_numpy(layer.W_EE)
    assert (w_ee >= 0).all()
    assert np.linalg.norm(w_ee, axis=1).max() <= 0.05 * (1 + 1e-5)
    for v in layer.weights:
        if v.name in DALE_WEIGHTS:
            assert (to_numpy(v) >= 0).all(), v.name


@pytest.mark.parametrize("name", list(LAYERS))
def test_kernel_initializer_must_be_non_negative(name):
    with pytest.raises(ValueError, match="non-negative initializer"):
        LAYERS[name](kernel_initializer="glorot_uniform")(inputs((2, D)))


@pytest.mark.parametrize("name", ["EIDense", "INormDense"])
def test_positive_kernel_initializer_is_used_and_inhibition_balanced_on_it(name):
    init = keras.initializers.RandomUniform(0.0, 0.05, seed=3)
    layer = LAYERS[name](kernel_initializer=init)
    layer.build((None, D))
    want = to_numpy(init((D, UNITS))).T  # Dense's (d, units) draw, stored as (units, d)
    np.testing.assert_array_equal(to_numpy(layer.W_EE), want)
    np.testing.assert_allclose(
        to_numpy(layer.W_IE),
        balanced_inhibition(want.astype(np.float64), layer.inhibitory_units), rtol=1e-6)


def test_inorm_refuses_an_activity_regularizer():
    with pytest.raises(ValueError, match="next layer"):
        INormDense(UNITS, activity_regularizer="l2")
    layer = EIDense(UNITS, activity_regularizer="l2", seed=0)
    layer(inputs((2, D)))
    assert len(layer.losses) == 1


def test_regularizers_train_with_the_loss_of_their_variable():
    """One dual-loss SGD step = one step on the gradient of the total loss (the gradients of
    the task and normalization losses are disjoint), with W_EE's penalty in the task loss and
    the inhibitory penalty in the normalization loss."""
    a, b, lr = 0.3, 0.2, 0.05
    inorm = INormDense(8, error_normalization="full", seed=0,
                       kernel_regularizer=keras.regularizers.L2(a),
                       inhibitory_regularizer=keras.regularizers.L2(b))
    x_in = keras.Input((D,))
    model = DualLossModel(x_in, EIDense(3, inhibitory_units=1, seed=1)(
        keras.layers.ReLU()(inorm(x_in))))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=dale_sgd(lr, lr, lr), loss=loss_fn)
    x, y = inputs((16, D)), np.arange(16) % 3
    inhibitory = inorm.normalization_variables
    assert {v.name for v in inhibitory} == {"W_IE", "W_EI", "B_IE", "B_EI"}

    def penalty(variables, c):
        return c * sum(ops.sum(ops.square(v)) for v in variables)

    def total():
        task = loss_fn(y, model(x)) + penalty([inorm.W_EE], a)
        return task + inorm.preactivation(x)[1] + penalty(inhibitory, b)

    variables = list(model.trainable_variables)
    before = [to_numpy(v).astype(np.float64) for v in variables]
    _, grads = gradients(total, variables)
    norm_loss = float(to_numpy(inorm.preactivation(x)[1] + penalty(inhibitory, b)))
    logs = model.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(logs["norm_loss"], norm_loss, rtol=1e-5)
    for v, w0, g in zip(variables, before, grads, strict=True):
        scale = np.abs(w0).max() + lr * np.abs(g).max()
        np.testing.assert_allclose(to_numpy(v), np.maximum(w0 - lr * g, 0)
                                   if v.name in DALE_WEIGHTS else w0 - lr * g,
                                   atol=1e-5 * scale, err_msg=v.path)


@pytest.mark.parametrize("name", list(LAYERS))
def test_dense_arguments_round_trip(name, tmp_path):
    kw = {"use_bias": False, "kernel_initializer": keras.initializers.RandomUniform(0, 0.1, 4),
          "kernel_regularizer": keras.regularizers.L1L2(0.01, 0.02),
          "kernel_constraint": keras.constraints.MaxNorm(2.0, axis=1)}
    if name != "EDense":
        kw.update(inhibitory_regularizer="l1",
                  inhibitory_constraint=keras.constraints.MaxNorm(3.0, axis=1))
    layer = LAYERS[name](**kw)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    x_in = keras.Input((2, D))
    model = keras.Model(x_in, layer(x_in))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path).layers[-1]
    loaded_config = loaded.get_config()
    if "norm_weight" in config:  # lambda is a float32 variable once built
        assert loaded_config.pop("norm_weight") == pytest.approx(config.pop("norm_weight"))
    assert loaded_config == config and loaded.bias is None
    assert isinstance(loaded.W_EE.constraint, NonNegAfter)
    assert loaded.W_EE.constraint.constraint.max_value == 2.0
    x = inputs((3, 2, D))
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(layer(x)))
    np.testing.assert_allclose(sum(to_numpy(t) for t in loaded.losses),
                               sum(to_numpy(t) for t in layer.losses), rtol=1e-6)
