"""λ annealing shapes: the factor by which a schedule scales the normalization loss' weight.

The paper code (`inhib_norm/utils.py`) defines four ramp shapes from 0 towards 1 over a
horizon `T` (epochs), behind its `homeostatic_annealing` option (declared there, never
called). At epoch `t` (0-based):

| shape | factor `f(t)` |
|---|---|
| `linear` | `t / T` |
| `exponential` | `1 - exp(-t / T)` (`T` = tau) |
| `logarithmic` | `log(1 + t) / log(1 + T)` |
| `cosine` | `(1 - cos(pi t / T)) / 2` |

A schedule sets λ to `λ0 · min(f(t), 1)` at the start of epoch `t`
(`ei_keras.callbacks.NormWeightSchedule`); every shape starts at 0 (no normalization
loss in the first epoch). This module imports neither Keras nor an array backend (the
configuration schema reads `SHAPES`).
"""

from __future__ import annotations

import math

SHAPES = ("linear", "exponential", "logarithmic", "cosine")
"""The λ annealing shapes of the paper code, in its order."""


def factor(shape: str, epoch: int, horizon: float) -> float:
    """The annealing factor `f(epoch)` of `shape` over `horizon` epochs, capped at 1.

    >>> from ei_keras.annealing import factor
    >>> [round(factor("cosine", t, 4), 3) for t in range(5)]
    [0.0, 0.146, 0.5, 0.854, 1.0]
    """
    if shape not in SHAPES:
        raise ValueError(f"Expected `shape` to be one of {SHAPES}. Received: shape={shape!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, (int, float)) or \
            not (math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"Expected `horizon` > 0 (epochs). Received: horizon={horizon!r}")
    t = float(epoch)
    if shape == "linear":
        f = t / horizon
    elif shape == "exponential":
        f = 1.0 - math.exp(-t / horizon)
    elif shape == "logarithmic":
        f = math.log1p(t) / math.log1p(horizon)
    else:
        f = 0.5 * (1.0 - math.cos(math.pi * min(t, horizon) / horizon))
    return min(f, 1.0)
