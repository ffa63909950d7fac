"""A float64 NumPy reference of the convolutional Dale layers, written independently of the
package: ``im2col`` (explicit loops over the output locations) turns a convolution into the dense
layer of ``tests/numpy_reference.py`` on every patch, ``col2im`` sends patch gradients back to
the image. The I-Norm functions take the statistics choice (``"map"``: per sample over
``(H, W, C)``, the divisive term pooled over locations; ``"location"``: per location over
channels) and backpropagate by hand; ``tests/test_conv.py`` checks them by finite differences.

Arrays: images ``x`` (batch, H, W, C); patches ``P`` (batch, L, d) with ``L = OH * OW`` locations
and ``d = kh * kw * C`` in (kh, kw, C) order; weights in the paper's (out, in) orientation.
"""

from __future__ import annotations

import numpy as np
import numpy_reference as ref

EPSILON = ref.EPSILON


def _geometry(size, kernel, stride, dilation, padding):
    span = (kernel - 1) * dilation + 1
    if padding == "same":
        out = -(-size // stride)
        before = max((out - 1) * stride + span - size, 0) // 2
    else:
        out, before = (size - span) // stride + 1, 0
    return out, before


def im2col(x, kernel_size, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """Patches (batch, OH, OW, kh * kw * C) of channels-last images, zero padding, float64."""
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    oh, top = _geometry(h, kh, sh, dh, padding)
    ow, left = _geometry(w, kw, sw, dw, padding)
    patches = np.zeros((b, oh, ow, kh, kw, c))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for e in range(kw):
                    r, q = i * sh - top + a * dh, j * sw - left + e * dw
                    if 0 <= r < h and 0 <= q < w:
                        patches[:, i, j, a, e] = x[:, r, q]
    return patches.reshape(b, oh, ow, kh * kw * c)


def col2im(g, x_shape, kernel_size, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """The adjoint of :func:`im2col`: patch gradients (batch, OH, OW, d) summed into the image."""
    b, h, w, c = x_shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    oh, top = _geometry(h, kh, sh, dh, padding)
    ow, left = _geometry(w, kw, sw, dw, padding)
    g = np.asarray(g, np.float64).reshape(b, oh, ow, kh, kw, c)
    out = np.zeros((b, h, w, c))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for e in range(kw):
                    r, q = i * sh - top + a * dh, j * sw - left + e * dw
                    if 0 <= r < h and 0 <= q < w:
                        out[:, r, q] += g[:, i, j, a, e]
    return out


# --------------------------------------------------------------------------------------------
# EIConv2D: the dense reference on (batch * OH * OW, d) patches


def ei_conv_forward(P, W_EE, W_IE, W_EI, b, activation=None):
    """Output (batch, OH, OW, ne) from patches (batch, OH, OW, d)."""
    flat = P.reshape(-1, P.shape[-1])
    return ref.ei_dense_forward(flat, W_EE, W_IE, W_EI, b, activation).reshape(
        *P.shape[:-1], -1)


def ei_conv_task_gradients(P, W_EE, W_IE, W_EI, b, c, activation=None):
    """Gradients of ``sum(c * EIConv2D)`` w.r.t. the weights and the patches ``"P"``."""
    flat = P.reshape(-1, P.shape[-1])
    grads = ref.ei_dense_task_gradients(flat, W_EE, W_IE, W_EI, b, c.reshape(flat.shape[0], -1),
                                        activation)
    grads["P"] = grads.pop("x").reshape(P.shape)
    return grads


# --------------------------------------------------------------------------------------------
# INormConv2D on patches reshaped to (batch, L, d)


def _axes(statistics):
    return (1, 2) if statistics == "map" else (2,)


def inorm_conv_parts(P, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, statistics="map",
                     epsilon=EPSILON):
    """``(e, s, delta, q)`` on (batch, L, .) arrays; ``delta`` (batch, 1, ne) for ``"map"``."""
    P, W_EE, b, W_IE, W_EI = ref._f64(P, W_EE, b, W_IE, W_EI)
    e = P @ W_EE.T + b
    s = (P @ W_IE.T) @ W_EI.T
    if B_IE is None:
        return e, s, None, None
    q = (P @ np.asarray(B_IE, np.float64).T) ** 2
    p = q @ np.asarray(B_EI, np.float64).T
    if statistics == "map":
        p = p.mean(axis=1, keepdims=True)
    return e, s, np.sqrt(p + epsilon), q


def inorm_conv_preactivation(*args, **kwargs):
    e, s, delta, _ = inorm_conv_parts(*args, **kwargs)
    return (e - s) if delta is None else (e - s) / delta


def inorm_conv_norm_loss(P, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, statistics="map",
                         norm_weight=0.01, epsilon=EPSILON):
    """``lambda * mean over samples of [(mean zh)^2 + (var zh - 1)^2]`` (the variance term only
    with the divisive population), moments over the statistics' axes."""
    zh = inorm_conv_preactivation(P, W_EE, b, W_IE, W_EI, B_IE, B_EI, statistics=statistics,
                                  epsilon=epsilon)
    axes = _axes(statistics)
    m = zh.mean(axis=axes, keepdims=True)
    loss = m**2
    if B_IE is not None:
        loss = loss + (((zh - m) ** 2).mean(axis=axes, keepdims=True) - 1.0) ** 2
    return norm_weight * loss.mean()


def inorm_conv_norm_loss_gradients(P, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None,
                                   statistics="map", norm_weight=0.01, epsilon=EPSILON):
    """Gradients of :func:`inorm_conv_norm_loss` w.r.t. the inhibitory weights (manual)."""
    P, W_IE, W_EI = ref._f64(P, W_IE, W_EI)
    e, s, delta, q = inorm_conv_parts(P, W_EE, b, W_IE, W_EI, B_IE, B_EI, statistics, epsilon)
    zh = (e - s) if delta is None else (e - s) / delta
    axes = _axes(statistics)
    n = int(np.prod([zh.shape[a] for a in axes]))
    groups = zh.size // n
    m = zh.mean(axis=axes, keepdims=True)
    g_zh = 2.0 * m / n * np.ones_like(zh)
    if delta is not None:
        v = ((zh - m) ** 2).mean(axis=axes, keepdims=True)
        g_zh = g_zh + 2.0 * (v - 1.0) * 2.0 * (zh - m) / n
    g_zh = g_zh * norm_weight / groups
    g_s = -g_zh if delta is None else -g_zh / delta
    u = P @ W_IE.T
    grads = {"W_EI": np.einsum("blc,bli->ci", g_s, u),
             "W_IE": np.einsum("bli,bld->id", g_s @ W_EI, P)}
    if delta is not None:
        B_IE, B_EI = ref._f64(B_IE, B_EI)
        g_delta = -g_zh * (e - s) / delta**2
        g_p = g_delta / (2.0 * delta)
        if statistics == "map":  # delta^2 = mean_l p + eps
            g_p = np.broadcast_to(g_p.sum(axis=1, keepdims=True) / e.shape[1], e.shape)
        grads["B_EI"] = np.einsum("blc,blk->ck", g_p, q)
        r = P @ B_IE.T
        grads["B_IE"] = np.einsum("blc,bld->cd", (g_p @ B_EI) * 2.0 * r, P)
    return grads


def normalized_error(g, z, mode, statistics, lateral_weights=None, epsilon=EPSILON):
    """The error-normalization backward map over the statistics' axes of (batch, L, C)."""
    shape = g.shape
    rows = (shape[0], -1) if statistics == "map" else (-1, shape[-1])
    return ref.normalized_error(g.reshape(rows), z.reshape(rows), mode, lateral_weights,
                                epsilon).reshape(shape)


def inorm_conv_task_gradients(P, W_EE, b, W_IE, W_EI, B_IE=None, B_EI=None, c=None,
                              statistics="map", mode="none", lateral_weights=None,
                              activation=None, epsilon=EPSILON):
    """Gradients of ``sum(c * INormConv2D)`` w.r.t. ``W_EE``, ``bias`` and the patches ``"P"``
    (``s`` and ``delta`` are held: the inhibitory weights get none)."""
    e, s, delta, _ = inorm_conv_parts(P, W_EE, b, W_IE, W_EI, B_IE, B_EI, statistics, epsilon)
    P, W_EE, c = ref._f64(P, W_EE, c)
    z = (e - s) if delta is None else (e - s) / delta
    _, dact = ref._activation(z, activation)
    gz = normalized_error(c * dact, z, mode, statistics, lateral_weights, epsilon)
    ge = gz if delta is None else gz / delta
    return {"W_EE": np.einsum("blc,bld->cd", ge, P), "bias": ge.sum(axis=(0, 1)),
            "P": ge @ W_EE}
