"""``dale_sgd``'s groups against an independent float64 computation of SGD with momentum.

Keras' SGD (no Nesterov): ``v <- m*v - lr*g; w <- w + v``. Each group has its own learning rate
and the inhibitory groups their own momentum and per-variable gradient-norm clip
(``g * min(1, clip / ||g||)``). Two steps with fixed gradients, on every backend.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ei_keras.optimizers import dale_sgd

RATES = {"W_EE": 0.05, "W_IE": 0.2, "W_EI": 0.03}
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
        variables = [keras.Variable(start[name], name=name) for name in RATES]
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
