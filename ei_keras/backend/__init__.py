"""Backend-specific pieces outside the trainers, chosen once, at import.

`DaleSGDUpdate`: how `ei_keras.optimizers.DaleSGD` carries out one update of its
variable groups (`apply_groups`). `dense_t`: `x @ w.T` of the Dale layers.
`custom_gradient`: `keras.ops.custom_gradient`, on torch one that `torch.func`
transforms (`vmap`, `grad`, `vjp`) accept (the population trainer vectorizes the step).
"""

from __future__ import annotations

import keras

if keras.backend.backend() == "torch":
    from ei_keras.backend.torch_ops import custom_gradient, dense_t
    from ei_keras.backend.torch_optimizers import DaleSGDUpdate
else:
    from ei_keras.backend.generic_ops import custom_gradient, dense_t
    from ei_keras.backend.generic_optimizers import DaleSGDUpdate

__all__ = ["DaleSGDUpdate", "custom_gradient", "dense_t"]
