"""Task loss: softmax cross-entropy on logits with integer labels and label smoothing."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ei_keras")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Softmax cross-entropy from logits with integer labels and label smoothing.

    Keras' `SparseCategoricalCrossentropy` has no label smoothing; this computes
    `(1 - eps) * nll + eps * mean_k(-log_softmax_k)`, which equals
    `keras.losses.categorical_crossentropy` on smoothed one-hot labels and
    `torch.nn.functional.cross_entropy(..., label_smoothing=eps)`, with fewer ops.

    Args:
        label_smoothing: in `[0, 1)`; the reference code uses 0.1.
        **kwargs: `keras.losses.Loss` arguments (`reduction`, `name`, `dtype`).

    Example:

    >>> import numpy as np
    >>> from ei_keras.losses import SparseSmoothedCrossentropy
    >>> loss = SparseSmoothedCrossentropy(0.1)
    >>> float(loss(np.array([1]), np.array([[0.0, 0.0]], "float32")))
    0.69...
    """

    def __init__(self, label_smoothing: float = 0.1, name: str = "sparse_smoothed_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"Expected 0 <= label_smoothing < 1. Received: label_smoothing={label_smoothing!r}"
            )
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        # -sum_k [(1 - eps) onehot_k + eps / K] log p_k = (1 - eps) nll + eps mean_k(-log p_k):
        # the smoothed one-hot cross-entropy without materialising the one-hot targets.
        logp = ops.log_softmax(y_pred, axis=-1)
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1, 1))
        nll = -ops.squeeze(ops.take_along_axis(logp, labels, axis=-1), axis=-1)
        eps = self.label_smoothing
        if not eps:
            return nll
        return (1.0 - eps) * nll - eps * ops.mean(logp, axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
