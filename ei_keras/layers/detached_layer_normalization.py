"""DetachedLayerNormalization: LayerNorm forward, identity backward."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ei_keras")
class DetachedLayerNormalization(keras.layers.LayerNormalization):
    """LayerNorm's output forward, the identity backward: activity normalized, error not.

    `y = x + stop_gradient(LN(x) - x)`: forward `LN(x)` (`keras.layers.LayerNormalization`
    without gain or bias, up to one float rounding of `x` in the sum), backward
    `dL/dx = dL/dy` exactly. It is the paper code's `normtype_detach` (its
    `LayerNormalizeCustom(no_backward=True)`): the control for the paper's thesis that
    normalization helps only when it also normalizes the error, with no learned inhibition.

    Args:
        axis: as in `keras.layers.LayerNormalization` (default `-1`).
        epsilon: as in `keras.layers.LayerNormalization` (default `1e-5`).
        **kwargs: base `keras.layers.Layer` arguments. `center` and `scale` are off and
            cannot be turned on: with the backward detached a gain or bias would get no
            gradient.

    Input shape:
        Any tensor; normalized over `axis`.

    Output shape:
        Same as the input.

    Call arguments:
        - `inputs`: the input tensor.

    Example:

    >>> import keras, numpy as np
    >>> from ei_keras.layers import DetachedLayerNormalization
    >>> y = DetachedLayerNormalization()(np.array([[1.0, 2.0, 3.0]], "float32"))
    >>> np.round(keras.ops.convert_to_numpy(y).astype(float), 3).tolist()
    [[-1.225, 0.0, 1.225]]

    Reference:
        Eyono et al. (2026); the paper code's `model.normtype_detach`.
    """

    def __init__(self, axis=-1, epsilon: float = 1e-5, **kwargs):
        for name in ("center", "scale"):
            if kwargs.pop(name, False):
                raise ValueError(
                    f"DetachedLayerNormalization has no gain or bias (its backward is the "
                    f"identity, so they would never learn). Received: {name}=True. Use "
                    "keras.layers.LayerNormalization for a trainable gain or bias.")
        super().__init__(axis=axis, epsilon=epsilon, center=False, scale=False, **kwargs)

    def call(self, inputs):
        y = super().call(inputs)
        x = ops.cast(inputs, y.dtype)
        return x + ops.stop_gradient(y - x)

    def get_config(self):
        config = super().get_config()
        config.pop("center", None)
        config.pop("scale", None)
        return config
