"""The speed-ups of the training step keep the numbers, on every backend.

- ``SparseSmoothedCrossentropy`` (log-softmax form) equals a float64 NumPy formula and Keras'
  ``categorical_crossentropy`` on smoothed one-hot labels, values and gradients.
- ``DaleSGD.apply`` (``torch._foreach`` kernels on PyTorch, Keras' ``MultiOptimizer.apply``
  elsewhere) gives the same variables, iterations and ``NonNeg`` clamps as Keras' generic
  ``MultiOptimizer.apply`` from the same gradients; on PyTorch the fast path is really taken
  for the presets' plain SGD and declined for settings it does not implement.
- ``EINetwork.call`` (direct sub-layer calls on eager PyTorch) gives the same outputs as the
  layers called one by one through ``Layer.__call__``, and exactly one normalization loss per
  I-Norm layer however often the model is called.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from ei_keras import zoo
from ei_keras.layers import INormDense
from ei_keras.losses import SparseSmoothedCrossentropy
from ei_keras.models.gradients import gradients
from ei_keras.optimizers import DaleSGD, dale_sgd

BACKEND = keras.backend.backend()
WIDTH = 24


def to_np(v) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v))


def smoothed_ce_float64(labels, logits, eps):
    z = logits.astype(np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    k = z.shape[-1]
    target = (1 - eps) * np.eye(k)[labels] + eps / k
    return -(target * logp).sum(-1)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("label_shape", ["flat", "column"])
def test_smoothed_crossentropy_matches_float64_and_keras(eps, label_shape):
    rng = np.random.default_rng(3)
    logits = (4 * rng.standard_normal((64, 10))).astype("float32")
    labels = rng.integers(0, 10, 64)
    y = labels if label_shape == "flat" else labels[:, None]
    loss = SparseSmoothedCrossentropy(eps, reduction=None)
    got = to_np(loss(y, logits))
    want = smoothed_ce_float64(labels, logits, eps)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    onehot = np.eye(10, dtype="float32")[labels]
    keras_ce = to_np(keras.losses.categorical_crossentropy(onehot, logits, from_logits=True,
                                                           label_smoothing=eps))
    np.testing.assert_allclose(got, keras_ce, rtol=2e-6, atol=2e-6)

    # Gradient w.r.t. the logits: softmax - smoothed target, per sample, mean-reduced.
    mean_loss = SparseSmoothedCrossentropy(eps)
    z = keras.Variable(logits)
    _, (g,) = gradients(lambda: mean_loss(y, z), [z])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    target = (1 - eps) * np.eye(10)[labels] + eps / 10
    np.testing.assert_allclose(g, (p - target) / 64, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("preset,overrides", [
    ("inorm_gradnorm", {}),                       # clipped inhibitory groups, B_EI >= 0
    ("ei_ln", {}),                                # no clipping
    ("inorm_gradnorm", {"lr_ie": 40.0, "lr_ei": 40.0, "inhibitory_clipnorm": 0.0}),  # clamps
])
def test_dale_sgd_fast_path_matches_keras_apply(preset, overrides):
    rng = np.random.default_rng(0)
    x = rng.random((16, 784), dtype=np.float32)
    y = rng.integers(0, 10, 16).astype("int32")
    fast = zoo.build(preset, width=WIDTH, seed=5, **overrides)
    slow = zoo.build(preset, width=WIDTH, seed=5, **overrides)
    assert isinstance(fast.optimizer, DaleSGD)
    for m in (fast, slow):
        m(x)
        m.optimizer.build(m.trainable_variables)
    _, grads = gradients(
        lambda: fast.compute_loss(x=x, y=y, y_pred=fast(x, training=True)),
        fast.trainable_variables)
    grads = [ops.convert_to_tensor(g) for g in grads]
    if BACKEND == "torch":
        assert fast.optimizer._fast_path(list(grads), fast.trainable_variables)
    for _ in range(2):  # the second step starts from clamped / updated values
        fast.optimizer.apply(grads, fast.trainable_variables)
        keras.optimizers.MultiOptimizer.apply(slow.optimizer, grads, slow.trainable_variables)
    clamped = 0
    for a, b in zip(fast.weights, slow.weights):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-6, atol=1e-7, err_msg=a.path)
        if a.constraint is not None:
            assert to_np(a).min() >= 0.0, a.path
            clamped += int((to_np(a) == 0).sum())
    if overrides:
        assert clamped > 0  # the large-rate case really exercised the NonNeg clamp
    assert int(to_np(fast.optimizer.iterations)) == int(to_np(slow.optimizer.iterations)) == 2
    for a, b in zip(fast.optimizer.optimizers, slow.optimizer.optimizers):
        assert int(to_np(a.iterations)) == int(to_np(b.iterations)) == 2


@pytest.mark.parametrize("setting", [{"momentum": 0.9}, {"weight_decay": 1e-3},
                                     {"schedule": True}])
def test_dale_sgd_declines_the_fast_path_for_what_it_does_not_implement(setting):
    opt = dale_sgd(0.1, 0.1, 0.1, momentum=setting.get("momentum", 0.0))
    if "weight_decay" in setting:
        opt.optimizers[0].weight_decay = setting["weight_decay"]
    if "schedule" in setting:
        opt.optimizers[0]._learning_rate = keras.optimizers.schedules.ExponentialDecay(
            0.1, 10, 0.5)
    v = keras.Variable(np.ones((3, 2), "float32"), name="W_EE")
    opt.build([v])
    g = [ops.ones((3, 2))]
    assert not opt._fast_path(g, [v])
    # ... and Keras' own path still updates as usual.
    opt.apply(g, [v])
    assert float(to_np(v).max()) < 1.0


def manual_forward(model, x):
    """The network composed from the sub-layers' ``__call__`` (no direct ``call``)."""
    for layer, norm in zip(model.hidden, model.norms):
        z = layer(x)
        if norm is not None:
            z = norm(z)
        x = ops.relu(z)
    return model.readout(x)


@pytest.mark.parametrize("preset", ["ei_ln", "inorm_gradnorm", "inorm_lateral", "e_ln"])
def test_model_call_equals_layer_by_layer_calls_and_keeps_one_loss_per_layer(preset):
    rng = np.random.default_rng(1)
    x = rng.random((8, 784), dtype=np.float32)
    model = zoo.build(preset, width=WIDTH, seed=2)
    out = to_np(model(x, training=True))
    np.testing.assert_allclose(out, to_np(manual_forward(model, x)), rtol=1e-6, atol=1e-6)
    inorm_layers = sum(isinstance(layer, INormDense) for layer in model.hidden)
    for _ in range(3):
        model(x, training=True)
        assert len(model.losses) == inorm_layers
    if inorm_layers:
        expected = sum(float(to_np(layer.preactivation(h)[1])) for layer, h in
                       zip(model.hidden, [x, ops.relu(model.hidden_preactivations(x)[0])]))
        assert float(to_np(sum(model.losses))) == pytest.approx(expected, rel=1e-5)


def test_wrong_input_width_still_names_the_problem():
    model = zoo.build("inorm_gradnorm", width=WIDTH, seed=0)
    model(np.zeros((2, 784), "float32"))
    with pytest.raises(ValueError, match="784|incompatible|expected"):
        model(np.zeros((2, 100), "float32"))
