"""``dale_sgd``'s groups against an independent float64 computation of SGD with momentum.

Keras' SGD (no Nesterov): ``v <- m*v - lr*g; w <- w + v``. Each group has its own learning rate
and the inhibitory groups their own momentum and per-variable gradient-norm clip
(``g * min(1, clip / ||g||)``). Two steps with fixed gradients, on every backend.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ei_keras import roles
from ei_keras.optimizers import dale_sgd

RATES = {"W_EE": 0.05, "W_IE": 0.2, "W_EI": 0.03}
#: The roles the Dale layers declare for these weights (the groups follow the roles).
ROLES = {"W_EE": roles.EXCITATORY, "W_IE": roles.INHIBITORY_INPUT,
         "W_EI": roles.INHIBITORY_OUTPUT}
SHAPE = (5, 4)


def _reference(w0, grads, lr, momentum, clip=None):
    w, v = w0.astype(np.float64), np.zeros_like(w0, dtype=np.float64)
    for g in grads:
        g = g.astype(np.float64)
        if clip is not None:
            g = g * min(1.0, clip / np.linalg.norm(g))
        v = momentum * v - lr * g
        w = w + v
    return w


@pytest.mark.parametrize("momentum, inhibitory_momentum, clip", [
    (0.5, 0.9, None),   # different momenta per group
    (0.0, 0.75, None),  # momentum for the inhibitory groups only
    (0.5, None, 0.1),   # inhibitory momentum defaults to momentum; clipped inhibitory grads
])
def test_each_group_follows_its_own_sgd_with_momentum(momentum, inhibitory_momentum, clip):
    rng = np.random.default_rng(0)
    start = {name: rng.uniform(1.0, 2.0, SHAPE).astype("float32") for name in RATES}
    grads = [{name: rng.normal(size=SHAPE).astype("float32") for name in RATES}
             for _ in range(2)]
    with keras.name_scope("hidden"):  # paths "hidden/W_IE" ..., as in a layer
        variables = [roles.declare(keras.Variable(start[name], name=name), ROLES[name])
                     for name in RATES]
    assert variables[1].path == "hidden/W_IE"
    opt = dale_sgd(RATES["W_EE"], RATES["W_IE"], RATES["W_EI"], momentum=momentum,
                   inhibitory_momentum=inhibitory_momentum, clipnorm=clip)
    for step in grads:
        opt.apply([keras.ops.convert_to_tensor(step[v.name]) for v in variables], variables)
    i_mom = momentum if inhibitory_momentum is None else inhibitory_momentum
    for v in variables:
        inhibitory = v.name != "W_EE"
        want = _reference(start[v.name], [g[v.name] for g in grads], RATES[v.name],
                          i_mom if inhibitory else momentum, clip if inhibitory else None)
        got = keras.ops.convert_to_numpy(v)
        # float32 against float64: per step at most 3 roundings (momentum product, scaled
        # gradient, sum) of eps/2 relative to |w| ~ 1-2, two steps, and the clip norm's 20-term
        # sum (any order: <= 20 * eps/2 relative on the clipped gradient) -> 16 eps
        np.testing.assert_allclose(got, want, rtol=16 * np.finfo(np.float32).eps,
                                   atol=1e-7, err_msg=v.name)
        assert not np.allclose(got, start[v.name])  # it moved


# --------------------------------------------------------------------------------------------
# dale_optimizer: any Keras optimizer per group, schedules, gradient accumulation (issue #14)


def _variables_and_grads(steps=2):
    rng = np.random.default_rng(1)
    start = {name: rng.uniform(1.0, 2.0, SHAPE).astype("float32") for name in RATES}
    grads = [{name: rng.normal(size=SHAPE).astype("float32") for name in RATES}
             for _ in range(steps)]
    with keras.name_scope("hidden"):
        variables = [roles.declare(keras.Variable(start[name], name=name), ROLES[name])
                     for name in RATES]
    return start, grads, variables


def _apply(opt, grads, variables):
    for step in grads:
        opt.apply([keras.ops.convert_to_tensor(step[v.name]) for v in variables], variables)


def _adam_reference(w0, grads, lr, b1=0.9, b2=0.999, eps=1e-7):
    """Keras' Adam: alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t); w -= alpha_t m / (sqrt(v) + eps)."""
    w, m, v = (np.asarray(w0, np.float64), np.zeros(w0.shape), np.zeros(w0.shape))
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w


def test_adam_for_excitatory_and_sgd_for_inhibitory_groups():
    from ei_keras.optimizers import dale_optimizer, group_optimizers

    start, grads, variables = _variables_and_grads()
    opt = dale_optimizer(keras.optimizers.Adam(RATES["W_EE"]),
                         inhibitory_input=keras.optimizers.SGD(RATES["W_IE"]),
                         inhibitory_output=keras.optimizers.SGD(RATES["W_EI"]))
    assert [type(o).__name__ for o in group_optimizers(opt).values()] == ["Adam", "SGD", "SGD"]
    _apply(opt, grads, variables)
    for v in variables:
        g = [step[v.name] for step in grads]
        want = (_adam_reference(start[v.name], g, RATES[v.name]) if v.name == "W_EE"
                else _reference(start[v.name], g, RATES[v.name], 0.0))
        # Adam's division by sqrt(v) + eps adds a few roundings per step to SGD's
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v), want,
                                   rtol=32 * np.finfo(np.float32).eps, atol=1e-7,
                                   err_msg=v.name)


def test_inhibitory_groups_default_to_copies_of_the_excitatory_settings():
    from ei_keras.optimizers import dale_optimizer, group_optimizers

    groups = group_optimizers(dale_optimizer(keras.optimizers.RMSprop(0.003, rho=0.8)))
    assert len({id(o) for o in groups.values()}) == 3
    for o in groups.values():
        assert isinstance(o, keras.optimizers.RMSprop) and o.rho == 0.8
        assert float(keras.ops.convert_to_numpy(o.learning_rate)) == pytest.approx(0.003)


def test_learning_rate_schedules_per_group():
    from ei_keras.optimizers import group_learning_rates

    start, grads, variables = _variables_and_grads()
    halving = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = dale_sgd(halving, RATES["W_IE"], RATES["W_EI"])
    _apply(opt, grads, variables)
    w_ee = start["W_EE"].astype(np.float64) - 0.1 * grads[0]["W_EE"] - 0.05 * grads[1]["W_EE"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variables[0]), w_ee,
                               rtol=16 * np.finfo(np.float32).eps, atol=1e-7)
    rates = group_learning_rates(opt)
    assert rates["excitatory"] == pytest.approx(0.025)  # the schedule after two steps
    assert rates["inhibitory_input"] == pytest.approx(RATES["W_IE"])


def test_gradient_accumulation_applies_the_mean_every_k_steps():
    start, grads, variables = _variables_and_grads()
    opt = dale_sgd(RATES["W_EE"], RATES["W_IE"], RATES["W_EI"], gradient_accumulation_steps=2)
    _apply(opt, grads[:1], variables)
    for v in variables:  # nothing moves before the second step
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), start[v.name])
    _apply(opt, grads[1:], variables)
    for v in variables:
        mean = (grads[0][v.name].astype(np.float64) + grads[1][v.name]) / 2
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v),
                                   start[v.name] - RATES[v.name] * mean,
                                   rtol=16 * np.finfo(np.float32).eps, atol=1e-7,
                                   err_msg=v.name)


def test_dale_optimizer_is_saved_with_the_model(tmp_path):
    from ei_keras.layers import EIDense
    from ei_keras.optimizers import dale_optimizer, group_optimizers

    model = keras.Sequential([keras.Input((8,)), EIDense(4, seed=0)])
    model.compile(dale_optimizer("adam", inhibitory_input=keras.optimizers.SGD(0.2),
                                 inhibitory_output="rmsprop"), "mse")
    x = np.random.default_rng(0).uniform(size=(16, 8)).astype("float32")
    model.fit(x, x[:, :4], batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    got = {g: (type(o).__name__, int(keras.ops.convert_to_numpy(o.iterations)))
           for g, o in group_optimizers(loaded.optimizer).items()}
    assert got == {"excitatory": ("Adam", 2), "inhibitory_input": ("SGD", 2),
                   "inhibitory_output": ("RMSprop", 2)}
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))


def test_bad_optimizer_arguments():
    from ei_keras.optimizers import dale_optimizer

    with pytest.raises(ValueError, match="excitatory"):
        dale_optimizer(3)
    with pytest.raises(ValueError, match="inhibitory_output"):
        dale_optimizer("sgd", "sgd", "no-such-optimizer")
    sgd = keras.optimizers.SGD(0.1)
    with pytest.raises(ValueError, match="same instance"):
        dale_optimizer(sgd, sgd)
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        dale_sgd("fast", 0.1, 0.1)


@pytest.mark.parametrize("bad", [-0.1, -1e-12, float("nan"), float("inf"), -float("inf"),
                                 "0.1", None, True])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_dale_sgd_refuses_a_learning_rate_that_is_not_a_finite_number_at_least_0(bad, position):
    names = ("lr_e", "lr_ie", "lr_ei")
    rates = [0.1, 0.1, 0.1]
    rates[position] = bad
    with pytest.raises(ValueError) as e:
        dale_sgd(*rates)
    message = str(e.value)
    assert message.startswith(f"Expected `{names[position]}` to be a finite number >= 0")
    assert f"Received: {names[position]}={bad!r}" in message


def test_dale_optimizer_refuses_a_group_optimizer_with_a_negative_or_infinite_rate():
    from ei_keras.optimizers import GROUPS, dale_optimizer

    for position, group in enumerate(GROUPS):
        for bad, shown in ((-0.1, "-0.1"), (float("nan"), "nan"), (float("inf"), "inf")):
            optimizers = [keras.optimizers.SGD(0.1) for _ in GROUPS]
            optimizers[position] = keras.optimizers.Adam(bad)
            with pytest.raises(ValueError) as e:
                dale_optimizer(*optimizers)
            assert str(e.value) == (
                f"Expected the `{group}` optimizer's learning_rate to be a finite number >= 0 "
                "or a keras.optimizers.schedules.LearningRateSchedule. Received: "
                f"learning_rate={shown}")
    # Keras' conventions otherwise: 0 (a frozen group) and a schedule are fine.
    dale_sgd(0.0, 0.0, 0.0)
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    dale_optimizer(keras.optimizers.SGD(0.0), keras.optimizers.SGD(decay), "adam")
