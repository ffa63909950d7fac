"""Exponentiated-gradient optimizers (``ExponentiatedSGD``, ``ExponentiatedAdam``), split biases
and the ``opt.exponentiated`` keys, on every backend.

The closed forms below are float64 NumPy, written from the update rules in the optimizers'
docstrings (the paper code's EG step ``w * exp(-lr * sign(w) * u)``, its torch-style momentum
and its ``eg_normalise``; Keras Adam's moments and step size).
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ei_keras import cli, roles, zoo
from ei_keras.config import ConfigError, RunConfig
from ei_keras.experiment import resolve
from ei_keras.layers import EIDense, INormDense
from ei_keras.optimizers import (
    ExponentiatedAdam,
    ExponentiatedSGD,
    dale_optimizer,
    dale_sgd,
    group_optimizers,
)

EPS32 = float(np.finfo(np.float32).eps)
STEPS = 4


def _start_and_grads(shape=(4, 5), steps=STEPS, seed=0):
    """Weights of both signs (|w| in [0.5, 2]) and ``steps`` gradients, float32-exact."""
    rng = np.random.default_rng(seed)
    w0 = (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype("float32")
    grads = [rng.normal(size=shape).astype("float32") for _ in range(steps)]
    return w0, grads


def _apply(optimizer, w0, grads):
    variable = keras.Variable(w0, name="w")
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
    return keras.ops.convert_to_numpy(variable), variable


def sgd_eg_reference(w0, grads, lr, momentum=0.0, nesterov=False, normalise=False):
    w, v, c = w0.astype(np.float64), np.zeros(w0.shape), None
    for g in grads:
        g = g.astype(np.float64)
        v = momentum * v + g
        u = (g + momentum * v if nesterov else v) if momentum else g
        c = np.abs(w).sum() if c is None else c
        w = w * np.exp(-lr * np.sign(w) * u)
        if normalise:
            w = w * c / np.abs(w).sum()
    return w


def adam_eg_reference(w0, grads, lr, b1, b2, eps, normalise=False):
    """The weights after the steps, and the largest |exponent| of any step."""
    w, m, v, c = w0.astype(np.float64), np.zeros(w0.shape), np.zeros(w0.shape), None
    largest = 0.0
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        c = np.abs(w).sum() if c is None else c
        exponent = -alpha * np.sign(w) * m / (np.sqrt(v) + eps)
        largest = max(largest, float(np.abs(exponent).max()))
        w = w * np.exp(exponent)
        if normalise:
            w = w * c / np.abs(w).sum()
    return w, largest


@pytest.mark.parametrize("momentum, nesterov, normalise", [
    (0.0, False, False), (0.5, False, False), (0.5, True, False), (0.0, False, True),
    (0.75, True, True)])
def test_exponentiated_sgd_matches_the_float64_closed_form(momentum, nesterov, normalise):
    w0, grads = _start_and_grads()
    lr = 0.125
    got, _ = _apply(ExponentiatedSGD(lr, momentum=momentum, nesterov=nesterov,
                                     normalise=normalise), w0, grads)
    want = sgd_eg_reference(w0, grads, lr, momentum, nesterov, normalise)
    # float32 against float64. Per step the exponent a = lr * sign(w) * u has |a| <= 2 here
    # (|g| <= ~4, momentum sums <= 4 terms) and carries at most ~5 roundings of eps/2 relative
    # to its terms (momentum buffer, Nesterov sum, product with lr) -> absolute error <= 5 eps;
    # exp (<= 2 ulp) and the product with |w| (1/2 ulp) add 2.5 eps relative to w; the L1 norm
    # of `normalise` (20-term sums, twice) adds <= 20 eps: <= ~28 eps per step, 4 steps, and
    # errors of earlier steps carried by the momentum buffer: 256 eps bounds it with margin.
    np.testing.assert_allclose(got, want, rtol=256 * EPS32, atol=0)
    assert not np.allclose(got, w0)
    if normalise:  # the L1 norm is held at its first-update value
        np.testing.assert_allclose(np.abs(got).sum(), np.abs(w0).sum(), rtol=64 * EPS32)


@pytest.mark.parametrize("normalise", [False, True])
def test_exponentiated_adam_matches_the_float64_closed_form(normalise):
    w0, grads = _start_and_grads()
    # betas exactly representable in float32, so only computation rounds.
    lr, b1, b2, eps = 0.125, 0.875, 1 - 2.0 ** -7, 1e-7
    got, _ = _apply(ExponentiatedAdam(lr, beta_1=b1, beta_2=b2, epsilon=eps,
                                      normalise=normalise), w0, grads)
    want, largest = adam_eg_reference(w0, grads, lr, b1, b2, float(np.float32(eps)), normalise)
    # The step size's 1 - beta_2^t cancels: beta_2^t's float32 rounding (<= 2 ulp from the
    # power) is relative 2 eps / (1 - beta_2) on it, half that after the square root, so the
    # exponent a is off by <= |a| * eps / (1 - beta_2) absolute; the moments, the square root,
    # the division and exp add <= ~16 eps relative to w per step, normalise's two 20-term sums
    # <= 20 eps more.
    per_step = largest * EPS32 / (1 - b2) + 36 * EPS32
    np.testing.assert_allclose(got, want, rtol=STEPS * per_step, atol=0)
    assert not np.allclose(got, w0)


@pytest.mark.parametrize("optimizer", [
    lambda: ExponentiatedSGD(1e3, momentum=0.9),
    lambda: ExponentiatedSGD(50.0, normalise=True),
    lambda: ExponentiatedAdam(1e3),
])
def test_signs_are_kept_without_any_constraint_even_with_huge_steps(optimizer):
    """No constraint, steps whose exponents reach ~1e4: every weight keeps its sign, stays a
    finite non-zero number; a weight that is exactly 0 stays 0 (EG cannot move it)."""
    w0, _ = _start_and_grads(shape=(6, 7), seed=1)
    w0[0, :3] = 0.0
    rng = np.random.default_rng(2)
    grads = [(rng.normal(size=w0.shape) * 10.0).astype("float32") for _ in range(6)]
    got, variable = _apply(optimizer(), w0, grads)
    assert variable.constraint is None
    np.testing.assert_array_equal(np.sign(got), np.sign(w0))
    assert np.isfinite(got).all()
    assert (np.abs(got[w0 != 0]) >= np.finfo(np.float32).tiny).all()
    np.testing.assert_array_equal(got[0, :3], 0.0)
    nonzero = w0 != 0
    moved = np.abs(np.log(np.abs(got[nonzero].astype(np.float64)))
                   - np.log(np.abs(w0[nonzero].astype(np.float64))))
    assert moved.max() > 30  # the steps really were huge


def test_plain_sgd_in_the_same_setting_flips_signs():
    """The contrast that makes the test above mean something: GD crosses zero."""
    w0, grads = _start_and_grads(shape=(6, 7), seed=1)
    got, _ = _apply(keras.optimizers.SGD(1.0), w0, grads)
    assert (np.sign(got) != np.sign(w0)).any()


def _paths(scope="hidden"):
    rng = np.random.default_rng(3)
    with keras.name_scope(scope):
        # declared as the Dale layers declare them: the groups follow the roles
        return [roles.declare(keras.Variable(rng.uniform(0.5, 1.5, (3, 4)).astype("float32"),
                                             name=n), role)
                for n, role in (("W_EE", roles.EXCITATORY), ("W_IE", roles.INHIBITORY_INPUT),
                                ("W_EI", roles.INHIBITORY_OUTPUT))]


def test_dale_optimizer_takes_eg_for_one_group_and_sgd_for_the_others():
    """EG for the excitatory group, SGD for the inhibitory ones: each variable follows its own
    group's rule, through ``DaleSGD.apply`` (on torch this also checks that the ``_foreach``
    fast path declines a group it does not implement)."""
    variables = _paths()
    start = [keras.ops.convert_to_numpy(v) for v in variables]
    rng = np.random.default_rng(4)
    grads = [[rng.normal(size=(3, 4)).astype("float32") for _ in variables] for _ in range(3)]
    opt = dale_sgd(0.1, 0.05, 0.02, exponentiated=True)
    assert {g: type(o).__name__ for g, o in group_optimizers(opt).items()} == {
        "excitatory": "ExponentiatedSGD", "inhibitory_input": "SGD", "inhibitory_output": "SGD"}
    for step in grads:
        opt.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
    if hasattr(opt, "fast_update"):  # the torch backend's _foreach path: EG is not its kind
        groups = [(o, ([], [])) for o in opt.optimizers]
        for o, v, g in zip([opt.optimizer_for(v) for v in variables], variables, grads[0]):
            next(gv for oo, gv in groups if oo is o)[0].append(g)
            next(gv for oo, gv in groups if oo is o)[1].append(v)
        assert opt.fast_update(groups) is False
        assert opt.fast_update([(o, gv) for o, gv in groups if o.name.startswith("sgd")])
    got = [keras.ops.convert_to_numpy(v) for v in variables]
    want_ee = sgd_eg_reference(start[0], [s[0] for s in grads], 0.1)
    np.testing.assert_allclose(got[0], want_ee, rtol=64 * EPS32)
    for i, lr in ((1, 0.05), (2, 0.02)):
        # plain SGD: w0 - lr * sum(g), 3 roundings of eps/2 relative to |w| ~ 1 per step
        want = start[i].astype(np.float64) - lr * sum(s[i].astype(np.float64) for s in grads)
        np.testing.assert_allclose(got[i], want, rtol=16 * EPS32, atol=1e-7)


def test_split_bias_is_two_non_negative_parts_and_keeps_the_layer_output():
    x = np.random.default_rng(5).uniform(size=(3, 6)).astype("float32")
    init = keras.initializers.Constant(0.25)
    plain = EIDense(4, seed=0, bias_initializer=init)
    split = EIDense(4, seed=0, bias_initializer=init, split_bias=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(split(x)),
                               keras.ops.convert_to_numpy(plain(x)), rtol=4 * EPS32, atol=1e-6)
    assert split.bias is None
    names = sorted(v.name for v in split.trainable_variables)
    assert names == ["W_EE", "W_EI", "W_IE", "bias_negative", "bias_positive"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(split.bias_positive), 1.25)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(split.bias_negative), 1.0)
    for part in (split.bias_positive, split.bias_negative):
        assert isinstance(part.constraint, keras.constraints.NonNeg)
    again = EIDense.from_config(split.get_config())
    assert again.split_bias is True
    with pytest.raises(ValueError, match="split_bias"):
        EIDense(4, split_bias="yes")
    # The bias of an I-Norm layer is split too (its excitatory drive).
    inorm = INormDense(4, seed=0, split_bias=True)
    inorm.build((None, 6))
    assert {"bias_positive", "bias_negative"} <= {v.name for v in inorm.trainable_variables}


def _data(n=64, d=12, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, d)).astype("float32"), rng.integers(0, classes, n)


def _weights(model):
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


@pytest.mark.parametrize("preset", ["ei", "inorm_gradnorm"])
def test_eg_trains_an_einetwork_and_a_dual_loss_model(preset):
    """``fit`` with EG for the excitatory group (and split biases): W_EE and the bias parts
    stay strictly positive with no clamp ever acting (GD hits NonNeg's 0), losses finite."""
    x, y = _data()
    model = zoo.build(preset, width=8, seed=0, input_dim=12, lr_e=0.5, exponentiated=True,
                      split_bias=True)
    assert type(group_optimizers(model.optimizer)["excitatory"]) is ExponentiatedSGD
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"]).all()
    for v in model.trainable_variables:
        name = v.path.rsplit("/", 1)[-1]
        if name in ("W_EE", "bias_positive", "bias_negative"):
            assert (keras.ops.convert_to_numpy(v) > 0).all(), v.path
    assert not any(v.path.endswith("/bias") for v in model.trainable_variables)


def test_save_and_load_continue_training_identically(tmp_path):
    x, y = _data()
    model = zoo.build("inorm_gradnorm", width=8, seed=0, input_dim=12, lr_e=0.5,
                      momentum=0.5, exponentiated=True, inhibitory_exponentiated=True,
                      eg_normalise=True, split_bias=True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "eg.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    groups = group_optimizers(loaded.optimizer)
    assert all(type(o) is ExponentiatedSGD for o in groups.values())
    assert groups["excitatory"].momentum == 0.5 and groups["excitatory"].normalise
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b), err_msg=a.path)
    for m in (model, loaded):
        m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    before, after = _weights(model), _weights(loaded)
    assert before.keys() == after.keys()
    for k in before:
        # The same computation in one process; the loaded model's step is traced afresh, so
        # allow reassociation: a few eps relative per step, 4 steps.
        np.testing.assert_allclose(after[k], before[k], rtol=64 * EPS32, atol=1e-7, err_msg=k)


def test_eg_optimizers_serialize_their_settings():
    for opt in (ExponentiatedSGD(0.3, momentum=0.25, nesterov=True, normalise=True,
                                 clipnorm=1.0),
                ExponentiatedAdam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)):
        again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert type(again) is type(opt) and again.get_config() == opt.get_config()
    opt = dale_optimizer(ExponentiatedAdam(1e-3), "sgd", "sgd")
    assert type(group_optimizers(opt)["excitatory"]) is ExponentiatedAdam


@pytest.mark.parametrize("kwargs, match", [
    ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"),
    ({"normalise": "yes"}, "normalise")])
def test_bad_eg_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExponentiatedSGD(0.1, **kwargs)
    with pytest.raises(ValueError, match="beta_2"):
        ExponentiatedAdam(0.1, beta_2=1.0)


def test_config_keys_pick_eg_and_leave_old_fingerprints_alone():
    cfg = RunConfig().with_overrides(["preset=ei", "opt.exponentiated=yes",
                                      "opt.eg_normalise=true", "opt.split_bias=on"])
    hp = resolve(cfg)["hyperparameters"]
    assert hp["exponentiated"] is True and hp["eg_normalise"] is True and hp["split_bias"]
    # Set false or left out: the same run, the same fingerprint.
    off = resolve(RunConfig().with_overrides(["preset=ei", "opt.exponentiated=no"]))
    assert off["fingerprint"] == resolve(RunConfig(preset="ei"))["fingerprint"]
    assert "exponentiated" not in off["hyperparameters"]
    with pytest.raises(ConfigError, match="opt.exponentiated"):
        RunConfig().with_overrides(["opt.exponentiated=maybe"])


def test_cli_trains_with_eg_and_saves_it(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "--preset", "ei", "--smoke", "--out", str(out), "model.width=8",
                   "data.train_subset=64", "data.test_subset=64", "measures.probe_size=32",
                   "opt.exponentiated=yes", "opt.split_bias=yes", "output.save_model=yes"])
    assert rc == 0, capsys.readouterr().err
    hp = json.loads((out / "metrics.json").read_text())["hyperparameters"]
    assert hp["exponentiated"] is True and hp["split_bias"] is True
    model = keras.models.load_model(out / "model.keras")
    assert type(group_optimizers(model.optimizer)["excitatory"]) is ExponentiatedSGD
    assert model.split_bias is True



@pytest.mark.parametrize("preset", ["e_ln", "conv_ei", "conv_inorm_gradnorm"])
def test_split_bias_reaches_every_layer_of_the_other_networks(preset):
    model = zoo.build(preset, width=8, seed=0, split_bias=True)
    names = [v.path.rsplit("/", 1)[-1] for v in model.trainable_variables]
    assert "bias" not in names
    assert names.count("bias_positive") == names.count("bias_negative") == 3  # 2 hidden + readout
    assert model.get_config()["split_bias"] is True
    x = np.random.default_rng(0).uniform(size=(2, 784)).astype("float32")
    assert np.isfinite(keras.ops.convert_to_numpy(model(x))).all()
