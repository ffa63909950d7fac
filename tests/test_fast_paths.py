"""The speed-ups of the training step keep the numbers, on every backend.

- ``SparseSmoothedCrossentropy`` (log-softmax form) equals a float64 NumPy formula and Keras'
  ``categorical_crossentropy`` on smoothed one-hot labels, values and gradients.
- ``DaleSGD.apply`` (``torch._foreach`` kernels on PyTorch, the group optimizers' own ``apply``
  elsewhere) gives the variables, iterations and ``NonNeg`` clamps of SGD computed in float64
  NumPy from the same gradients, for the full variable list and for a subset; on PyTorch the
  fast path is really taken for the presets' plain SGD, and for settings it does not implement
  it is declined and the result is Keras' own ``MultiOptimizer.apply``'s (every backend).
- ``EINetwork.call`` (direct sub-layer calls on eager PyTorch) gives the network computed layer
  by layer in float64 NumPy, and exactly one normalization loss per I-Norm layer however often
  the model is called.
"""

from __future__ import annotations

import keras
import numpy as np
import numpy_reference as ref
import pytest
from keras import ops

from ei_keras import zoo
from ei_keras.layers import INormDense
from ei_keras.losses import SparseSmoothedCrossentropy
from ei_keras.models.gradients import gradients
from ei_keras.optimizers import DaleSGD, dale_sgd, group_learning_rates, variable_group

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


#: float32 SGD against float64 NumPy: the update rounds once per op (clip, scale, add).
SGD_RTOL, SGD_ATOL = 2e-6, 2e-7


def float64_dale_sgd(model, values, grads, steps=1, subset=None):
    """SGD per group as SPEC section 3 states it, in float64 NumPy: ``v <- NonNeg(v - lr *
    clip(g))`` with Keras' per-variable ``clipnorm`` rule ``g * c / max(|g|, c)``."""
    rates = group_learning_rates(model.optimizer)
    clips = {o.name.removeprefix("sgd_"): o.clipnorm for o in model.optimizer.optimizers}
    out = {}
    for v, g in zip(model.trainable_variables, grads):
        w = values[v.path].astype(np.float64)
        if subset is None or v.path in subset:
            group = variable_group(v)
            for _ in range(steps):
                gg = g.astype(np.float64)
                c = clips[group]
                if c:
                    gg = gg * c / max(float(np.linalg.norm(gg)), c)
                w = w - rates[group] * gg
                if v.constraint is not None:
                    w = np.maximum(w, 0.0)
        out[v.path] = w
    return out


def preset_gradients(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((16, 784), dtype=np.float32)
    y = rng.integers(0, 10, 16).astype("int32")
    model(x)
    model.optimizer.build(model.trainable_variables)
    _, grads = gradients(
        lambda: model.compute_loss(x=x, y=y, y_pred=model(x, training=True)),
        model.trainable_variables)
    return grads


@pytest.mark.parametrize("preset,overrides", [
    ("inorm_gradnorm", {}),                       # clipped inhibitory groups, B_EI >= 0
    ("ei_ln", {}),                                # no clipping
    ("inorm_gradnorm", {"lr_ie": 40.0, "lr_ei": 40.0, "inhibitory_clipnorm": 0.0}),  # clamps
])
def test_dale_sgd_apply_matches_float64_sgd(preset, overrides):
    # The update DaleSGD carries out on this backend (torch: the torch._foreach path; TF, JAX:
    # the group optimizers' own apply) against SGD computed in float64 from the same gradients.
    model = zoo.build(preset, width=WIDTH, seed=5, **overrides)
    assert isinstance(model.optimizer, DaleSGD)
    grads = preset_gradients(model)
    if BACKEND == "torch":
        groups = [(o, ([], [])) for o in model.optimizer.optimizers]
        for g, v in zip(grads, model.trainable_variables):
            groups[model.optimizer.optimizers.index(model.optimizer.optimizer_for(v))][1][0] \
                .append(ops.convert_to_tensor(g))
        assert model.optimizer.fast_update(groups)  # the fast path is really taken
    before = {v.path: to_np(v) for v in model.trainable_variables}
    tensors = [ops.convert_to_tensor(g) for g in grads]
    for _ in range(2):  # the second step starts from clamped / updated values
        model.optimizer.apply(tensors, model.trainable_variables)
    want = float64_dale_sgd(model, before, grads, steps=2)
    clamped = 0
    for v in model.trainable_variables:
        np.testing.assert_allclose(to_np(v), want[v.path], rtol=SGD_RTOL, atol=SGD_ATOL,
                                   err_msg=v.path)
        if v.constraint is not None:
            assert to_np(v).min() >= 0.0, v.path
            clamped += int((to_np(v) == 0).sum())
    if overrides:
        assert clamped > 0  # the large-rate case really exercised the NonNeg clamp
    assert int(to_np(model.optimizer.iterations)) == 2
    for o in model.optimizer.optimizers:
        assert int(to_np(o.iterations)) == 2


def test_dale_sgd_updates_a_subset_of_its_variables():
    # Keras' MultiOptimizer.apply needs every variable; DaleSGD routes a subset (the
    # inhibitory schedules update the inhibitory variables alone).
    model = zoo.build("inorm_gradnorm", width=WIDTH, seed=6)
    grads = preset_gradients(model, seed=1)
    before = {v.path: to_np(v) for v in model.trainable_variables}
    subset = [(g, v) for g, v in zip(grads, model.trainable_variables)
              if variable_group(v) != "excitatory"]
    model.optimizer.apply([ops.convert_to_tensor(g) for g, _ in subset], [v for _, v in subset])
    want = float64_dale_sgd(model, before, grads, subset={v.path for _, v in subset})
    for v in model.trainable_variables:
        np.testing.assert_allclose(to_np(v), want[v.path], rtol=SGD_RTOL, atol=SGD_ATOL,
                                   err_msg=v.path)
    iterations = {o.name: int(to_np(o.iterations)) for o in model.optimizer.optimizers}
    assert iterations == {"sgd_excitatory": 0, "sgd_inhibitory_input": 1,
                          "sgd_inhibitory_output": 1}
    assert int(to_np(model.optimizer.iterations)) == 1


@pytest.mark.parametrize("setting", [{"momentum": 0.9}, {"weight_decay": 1e-3},
                                     {"schedule": True}])
def test_dale_sgd_declines_the_fast_path_for_what_it_does_not_implement(setting):
    # Settings the foreach update does not implement give Keras' own MultiOptimizer result
    # (computed on a twin through keras.optimizers.MultiOptimizer.apply), on every backend;
    # on torch the fast path is declined.
    def make():
        opt = dale_sgd(0.1, 0.2, 0.3, momentum=setting.get("momentum", 0.0))
        if "weight_decay" in setting:
            opt.optimizers[-1].weight_decay = setting["weight_decay"]
        if "schedule" in setting:
            opt.optimizers[-1]._learning_rate = keras.optimizers.schedules.ExponentialDecay(
                0.1, 1, 0.5)
        v = keras.Variable(np.ones((3, 2), "float32"), name="W_EE",
                           constraint=keras.constraints.NonNeg())
        opt.build([v])
        return opt, v

    (opt, v), (twin, w) = make(), make()
    g = [ops.convert_to_tensor(np.arange(6, dtype="float32").reshape(3, 2))]
    if BACKEND == "torch":
        assert not opt.fast_update([(opt.optimizer_for(v), (g, [v]))])
    for _ in range(2):
        opt.apply(g, [v])
        keras.optimizers.MultiOptimizer.apply(twin, g, [w])
    np.testing.assert_array_equal(to_np(v), to_np(w))
    assert float(to_np(v).min()) < 1.0  # it moved


def numpy_forward(model, x):
    """The network in float64 NumPy (tests/numpy_reference.py), layer by layer."""
    h = x.astype(np.float64)
    for layer, norm in zip(model.hidden, model.norms):
        w = {n: to_np(getattr(layer, n)) for n in ("W_EE", "W_IE", "W_EI", "B_IE", "B_EI")
             if getattr(layer, n, None) is not None}
        b = to_np(layer.bias)
        if isinstance(layer, INormDense):
            z = ref.inorm_preactivation(h, w["W_EE"], b, w["W_IE"], w["W_EI"], w.get("B_IE"),
                                        w.get("B_EI"))
        elif "W_IE" in w:
            z = ref.ei_dense_forward(h, w["W_EE"], w["W_IE"], w["W_EI"], b)
        else:
            z = ref.e_dense_forward(h, w["W_EE"], b)
        if norm is not None:
            z = ref.layer_norm(z)
        h = np.maximum(z, 0.0)
    r = model.readout
    return ref.ei_dense_forward(h, to_np(r.W_EE), to_np(r.W_IE), to_np(r.W_EI), to_np(r.bias))


@pytest.mark.parametrize("preset", ["ei_ln", "inorm_gradnorm", "inorm_lateral", "e_ln"])
def test_model_call_equals_layer_by_layer_calls_and_keeps_one_loss_per_layer(preset):
    # EINetwork.call (on torch: sub-layers' call() directly) against the network computed
    # layer by layer in float64 NumPy, and one normalization loss per I-Norm layer however
    # often the model is called.
    rng = np.random.default_rng(1)
    x = rng.random((8, 784), dtype=np.float32)
    model = zoo.build(preset, width=WIDTH, seed=2)
    out = to_np(model(x, training=True))
    np.testing.assert_allclose(out, numpy_forward(model, x), rtol=1e-4, atol=1e-4)
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
    # Keras' input check names the layer, the width it expects and what it got, on every
    # backend: the torch fast path calls the first hidden layer through Layer.__call__ still.
    with pytest.raises(ValueError, match=r"layer 'hidden_1' is incompatible with the layer: "
                       r"expected axis -1 of input shape to have value 784, but received "
                       r"input with shape \(2, 100\)"):
        model(np.zeros((2, 100), "float32"))
