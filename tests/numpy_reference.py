"""A float64 NumPy reference of the ei_keras layers (SPEC sections 1-2), written independently of
the package: forward passes, the normalization loss and every gradient, by manual backprop.

Weights use the paper's (out, in) orientation: ``W_EE`` (ne, d), ``W_IE`` (ni, d), ``W_EI``
(ne, ni), ``B_IE`` (ne, d), ``B_EI`` (ne, ne), ``b`` (ne,). Inputs ``x`` are (batch, d).
Every function takes and returns float64 arrays. The manual gradients are themselves checked
against central finite differences (``numerical_gradient``) in ``tests/test_ops.py``.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-5
MODES = ("full", "center", "scale", "decorrelate", "lateral", "none")


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


# --------------------------------------------------------------------------------------------
# SPEC section 2: the error-normalization backward maps


def normalized_error(g, z, mode, lateral_weights=None, epsilon=EPSILON, gradnorm_on="y"):
    """The backward map ``g -> g'`` of error-normalization ``mode`` at the point ``z``;
    ``gradnorm_on="z"``: the paper code's formula, ``z`` itself in place of ``y``."""
    g, z = _f64(g, z)
    mu = z.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(((z - mu) ** 2).mean(axis=-1, keepdims=True) + epsilon)
    y = (z - mu) / sigma if gradnorm_on == "y" else z
    gy = (g * y).mean(axis=-1, keepdims=True)
    if mode == "full":
        return (g - g.mean(axis=-1, keepdims=True) - y * gy) / sigma
    if mode == "center":
        return g - g.mean(axis=-1, keepdims=True)
    if mode == "scale":
        return g / sigma
    if mode == "decorrelate":
        return g - y * gy
    if mode == "lateral":
        w = np.asarray(lateral_weights, dtype=np.float64)
        return g - (g * w).sum(axis=-1, keepdims=True)
    if mode == "none":
        return g
    raise ValueError(f"unknown mode {mode!r}")


def layer_norm(z, epsilon=EPSILON):
    """``(z - mean_j z) / sqrt(var_j z + eps)``, per sample."""
    (z,) = _f64(z)
    mu = z.mean(axis=-1, keepdims=True)
    return (z - mu) / np.sqrt(((z - mu) ** 2).mean(axis=-1, keepdims=True) + epsilon)


# --------------------------------------------------------------------------------------------
# Activations


def _activation(z, activation):
    if activation is None or activation == "linear":
        return z, np.ones_like(z)
    if activation == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(np.float64)
    raise ValueError(f"unsupported activation {activation!r}")


# --------------------------------------------------------------------------------------------
# EIDense / EDense


def ei_dense_forward(x, W_EE, W_IE, W_EI, b, activation=None):
    """``z = x W_EE^T - (x W_IE^T) W_EI^T + b``; returns ``activation(z)``."""
    x, W_EE, W_IE, W_EI, b = _f64(x, W_EE, W_IE, W_EI, b)
    z = x @ W_EE.T - (x @ W_IE.T) @ W_EI.T + b
    return _activation(z, activation)[0]


def ei_dense_task_gradients(x, W_EE, W_IE, W_EI, b, c, activation=None):
    """Gradients of ``sum(c * EIDense(x))`` w.r.t. ``W_EE, W_IE, W_EI, b, x`` (a dict)."""
    x, W_EE, W_IE, W_EI, b, c = _f64(x, W_EE, W_IE, W_EI, b, c)
    u = x @ W_IE.T
    z = x @ W_EE.T - u @ W_EI.T + b
    _, dact = _activation(z, activation)
    gz = c * dact
    gu = -gz @ W_EI
    return {
        "W_EE": gz.T @ x,
        "W_IE": gu.T @ x,
        "W_EI": -gz.T @ u,
        "bias": gz.sum(axis=0),
        "x": gz @ W_EE + gu @ W_IE,
    }


def e_dense_forward(x, W_EE, b, activation=None):
    x, W_EE, b = _f64(x, W_EE, b)
    return _activation(x @ W_EE.T + b, activation)[0]


# --------------------------------------------------------------------------------------------
# INormDense


def inorm_parts(x, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, epsilon=EPSILON):
    """``(e, s, delta)``; ``delta`` is None for the subtractive-only variant."""
    x, W_EE, b, W_IE, W_EI = _f64(x, W_EE, b, W_IE, W_EI)
    e = x @ W_EE.T + b
    s = (x @ W_IE.T) @ W_EI.T
    if B_IE is None:
        return e, s, None
    B_IE, B_EI = _f64(B_IE, B_EI)
    delta = np.sqrt(((x @ B_IE.T) ** 2) @ B_EI.T + epsilon)
    return e, s, delta


def inorm_preactivation(x, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, epsilon=EPSILON):
    """The normalized pre-activation ``z = (e - s) / delta``."""
    e, s, delta = inorm_parts(x, W_EE, b, W_IE, W_EI, B_IE, B_EI, epsilon)
    return (e - s) if delta is None else (e - s) / delta


def inorm_forward(x, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, activation=None,
                  epsilon=EPSILON):
    """The layer output: error normalization is the identity in the forward pass."""
    z = inorm_preactivation(x, W_EE, b, W_IE, W_EI, B_IE, B_EI, epsilon)
    return _activation(z, activation)[0]


def inorm_norm_loss(x, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, norm_weight=0.01,
                    epsilon=EPSILON):
    """``L_norm = lambda mean_batch[(mean_j zh)^2 + (var_j zh - 1)^2]`` (subtractive-only:
    ``lambda mean_batch[(mean_j zh)^2]``), ``zh = (e - s) / delta``."""
    zh = inorm_preactivation(x, W_EE, b, W_IE, W_EI, B_IE, B_EI, epsilon)
    m = zh.mean(axis=-1)
    per_sample = m**2
    if B_IE is not None:
        v = ((zh - m[:, None]) ** 2).mean(axis=-1)
        per_sample = per_sample + (v - 1.0) ** 2
    return norm_weight * per_sample.mean()


def _through_inhibition(x, W_IE, W_EI, B_IE, B_EI, g_out, e, s, delta):
    """The gradients of the inhibitory weights from ``g_out``, the gradient w.r.t.
    ``(e - s) / delta`` (``e - s`` subtractive-only), with ``s`` and ``delta`` read from
    ``sg(x)`` (manual backprop, float64)."""
    x, W_IE, W_EI = _f64(x, W_IE, W_EI)
    g_s = -g_out if delta is None else -g_out / delta
    u = x @ W_IE.T
    grads = {"W_EI": g_s.T @ u, "W_IE": (g_s @ W_EI).T @ x}
    if delta is not None:
        B_IE, B_EI = _f64(B_IE, B_EI)
        g_delta = -g_out * (e - s) / delta**2
        g_p = g_delta / (2.0 * delta)  # delta = sqrt(p + eps)
        r = x @ B_IE.T
        grads["B_EI"] = g_p.T @ r**2
        grads["B_IE"] = ((g_p @ B_EI) * 2.0 * r).T @ x
    return grads


def inorm_task_gradients(x, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, c=None, mode="none",
                         lateral_weights=None, activation=None, epsilon=EPSILON,
                         task_trains_inhibitory=False):
    """Gradients of ``sum(c * INormDense(x))`` w.r.t. every variable and ``x`` (a dict).

    ``z = (e - sg(s)) / sg(delta)`` with ``s`` and ``delta`` computed from ``sg(x)``: the task
    error reaches only ``W_EE``, ``b`` and ``x`` (through ``e``); the inhibitory weights get 0.
    ``task_trains_inhibitory``: ``z = (e - s) / delta`` (``s``, ``delta`` still from
    ``sg(x)``): the inhibitory weights get the error through ``s`` and ``delta``.
    """
    e, s, delta = inorm_parts(x, W_EE, b, W_IE, W_EI, B_IE, B_EI, epsilon)
    x, W_EE, c = _f64(x, W_EE, c)
    z = (e - s) if delta is None else (e - s) / delta
    _, dact = _activation(z, activation)
    gz = normalized_error(c * dact, z, mode, lateral_weights, epsilon)
    ge = gz if delta is None else gz / delta
    grads = {
        "W_EE": ge.T @ x,
        "bias": ge.sum(axis=0),
        "x": ge @ W_EE,
        "W_IE": np.zeros_like(np.asarray(W_IE, np.float64)),
        "W_EI": np.zeros_like(np.asarray(W_EI, np.float64)),
    }
    if B_IE is not None:
        grads["B_IE"] = np.zeros_like(np.asarray(B_IE, np.float64))
        grads["B_EI"] = np.zeros_like(np.asarray(B_EI, np.float64))
    if task_trains_inhibitory:
        grads.update(_through_inhibition(x, W_IE, W_EI, B_IE, B_EI, gz, e, s, delta))
    return grads


def inorm_norm_loss_gradients(x, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, norm_weight=0.01,
                              epsilon=EPSILON, norm_trains_excitatory=False):
    """Gradients of ``L_norm`` w.r.t. every variable and ``x`` (a dict), by manual backprop.

    ``e`` is stopped and ``s``, ``delta`` read ``sg(x)``: ``W_EE``, ``b`` and ``x`` get 0.
    ``norm_trains_excitatory``: ``e = sg(x) W_EE^T + b`` is not stopped: ``W_EE`` and ``b``
    get their gradient, ``x`` still 0.
    """
    x, W_EE, b, W_IE, W_EI = _f64(x, W_EE, b, W_IE, W_EI)
    batch = x.shape[0]
    e, s, delta = inorm_parts(x, W_EE, b, W_IE, W_EI, B_IE, B_EI, epsilon)
    zh = (e - s) if delta is None else (e - s) / delta
    n = zh.shape[-1]
    m = zh.mean(axis=-1, keepdims=True)
    # d/dzh of (mean zh)^2 is 2 m / n; of (var zh - 1)^2 is 2 (v - 1) * 2 (zh - m) / n.
    g_zh = 2.0 * m / n * np.ones_like(zh)
    if delta is not None:
        v = ((zh - m) ** 2).mean(axis=-1, keepdims=True)
        g_zh = g_zh + 2.0 * (v - 1.0) * 2.0 * (zh - m) / n
    g_zh = g_zh * norm_weight / batch
    grads = {"W_EE": np.zeros_like(W_EE), "bias": np.zeros_like(b), "x": np.zeros_like(x),
             **_through_inhibition(x, W_IE, W_EI, B_IE, B_EI, g_zh, e, s, delta)}
    if norm_trains_excitatory:
        g_e = g_zh if delta is None else g_zh / delta
        grads["W_EE"], grads["bias"] = g_e.T @ x, g_e.sum(axis=0)
    return grads


# --------------------------------------------------------------------------------------------
# Recurrent cells, unrolled: every step is the dense layer above on u_t = [x_t, h_{t-1}]; the
# task gradients by backpropagation through time (the error reaching u_t splits into the error
# of x_t and the error of h_{t-1}, added to the upstream error of step t - 1).


def _unroll(step, xs, units):
    """Run ``step(u_t) -> h_t`` over ``xs`` (batch, T, d) from ``h_0 = 0``; returns the step
    inputs ``u`` (T of them) and the states ``h`` (batch, T, units)."""
    (xs,) = _f64(xs)
    h = np.zeros((xs.shape[0], units))
    us, hs = [], []
    for t in range(xs.shape[1]):
        u = np.concatenate([xs[:, t], h], axis=-1)
        h = step(u)
        us.append(u)
        hs.append(h)
    return us, np.stack(hs, axis=1)


def _bptt(us, c, d, step_gradients):
    """Sum over steps of ``step_gradients(u_t, upstream_t)`` (a dict with ``"x"`` the
    gradient w.r.t. ``u_t``), with ``upstream_t = c_t + (error of h_t from step t + 1)``;
    returns the summed weight gradients and ``"x"`` (batch, T, d)."""
    (c,) = _f64(c)
    total, gx = {}, np.zeros((c.shape[0], len(us), d))
    g_next = np.zeros_like(c[:, 0])
    for t in reversed(range(len(us))):
        grads = step_gradients(us[t], c[:, t] + g_next)
        g_u = grads.pop("x")
        gx[:, t], g_next = g_u[:, :d], g_u[:, d:]
        for k, v in grads.items():
            total[k] = total.get(k, 0.0) + v
    return {**total, "x": gx}


def _ei_rnn_step(W_EE, W_IE, W_EI, b, activation, layer_norm_z):
    def step(u):
        z = ei_dense_forward(u, W_EE, W_IE, W_EI, b)
        return _activation(layer_norm(z) if layer_norm_z else z, activation)[0]

    return step


def ei_rnn_forward(xs, W_EE, W_IE, W_EI, b, activation="relu", layer_norm_z=False):
    """States ``h_t = act(z_t)`` (``act(LN(z_t))``) of the EI cell, ``z_t`` EIDense's on
    ``u_t``: (batch, T, units)."""
    step = _ei_rnn_step(W_EE, W_IE, W_EI, b, activation, layer_norm_z)
    return _unroll(step, xs, np.shape(W_EE)[0])[1]


def ei_rnn_task_gradients(xs, W_EE, W_IE, W_EI, b, c, activation="relu", layer_norm_z=False):
    """Gradients of ``sum(c * states)`` (c: (batch, T, units)) w.r.t. the EI cell's weights and
    the input sequence (``"x"``). LayerNorm's backward is ``normalized_error(., z, "full")``."""
    step = _ei_rnn_step(W_EE, W_IE, W_EI, b, activation, layer_norm_z)
    us, _ = _unroll(step, xs, np.shape(W_EE)[0])

    def step_gradients(u, g):
        if not layer_norm_z:
            return ei_dense_task_gradients(u, W_EE, W_IE, W_EI, b, g, activation)
        z = ei_dense_forward(u, W_EE, W_IE, W_EI, b)
        g_y = g * _activation(layer_norm(z), activation)[1]
        return ei_dense_task_gradients(u, W_EE, W_IE, W_EI, b, normalized_error(g_y, z, "full"))

    return _bptt(us, c, np.shape(xs)[-1], step_gradients)


def inorm_rnn_forward(xs, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, activation="relu",
                      epsilon=EPSILON):
    """States of the I-Norm cell (error normalization is the identity forward)."""
    units = np.shape(W_EE)[0]
    return _unroll(lambda u: inorm_forward(u, W_EE, b, W_IE, W_EI, B_IE, B_EI, activation,
                                           epsilon), xs, units)[1]


def _inorm_rnn_inputs(xs, W_EE, b, W_IE, W_EI, B_IE, B_EI, activation, epsilon):
    units = np.shape(W_EE)[0]
    return _unroll(lambda u: inorm_forward(u, W_EE, b, W_IE, W_EI, B_IE, B_EI, activation,
                                           epsilon), xs, units)[0]


def inorm_rnn_norm_loss(xs, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, norm_weight=0.01,
                        activation="relu", epsilon=EPSILON):
    """``lambda mean_batch[(1/T) sum_t l_t]``: the mean over steps of the dense loss."""
    us = _inorm_rnn_inputs(xs, W_EE, b, W_IE, W_EI, B_IE, B_EI, activation, epsilon)
    return float(np.mean([inorm_norm_loss(u, W_EE, b, W_IE, W_EI, B_IE, B_EI, norm_weight,
                                          epsilon) for u in us]))


def inorm_rnn_task_gradients(xs, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, c=None,
                             mode="none", lateral_weights=None, activation="relu",
                             epsilon=EPSILON):
    """Gradients of ``sum(c * states)`` w.r.t. every variable and the input sequence: the
    error of each step normalized at its own ``z_t``, flowing back through ``e_t`` only."""
    d = np.shape(xs)[-1]
    us = _inorm_rnn_inputs(xs, W_EE, b, W_IE, W_EI, B_IE, B_EI, activation, epsilon)
    return _bptt(us, c, d, lambda u, g: inorm_task_gradients(
        u, W_EE, b, W_IE, W_EI, B_IE, B_EI, g, mode, lateral_weights, activation, epsilon))


def inorm_rnn_norm_loss_gradients(xs, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None,
                                  norm_weight=0.01, activation="relu", epsilon=EPSILON):
    """Gradients of ``inorm_rnn_norm_loss``: the mean over steps of each step's (its inputs
    are stopped, so no error flows through time); ``"x"`` is zero."""
    us = _inorm_rnn_inputs(xs, W_EE, b, W_IE, W_EI, B_IE, B_EI, activation, epsilon)
    steps = [inorm_norm_loss_gradients(u, W_EE, b, W_IE, W_EI, B_IE, B_EI, norm_weight, epsilon)
             for u in us]
    out = {k: sum(g[k] for g in steps) / len(us) for k in steps[0] if k != "x"}
    return {**out, "x": np.zeros(np.shape(xs))}


# --------------------------------------------------------------------------------------------
# A check of the manual gradients


def numerical_gradient(f, array, step=1e-6):
    """Central finite differences of the scalar ``f()`` w.r.t. ``array`` (modified in place and
    restored), float64."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + step
        up = f()
        flat[i] = old - step
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * step)
    return grad
