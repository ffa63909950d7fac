"""Keras callbacks of ei_keras that change training (the measures are in `ei_keras.measures`).

`NormWeightSchedule` anneals λ, the weight of the I-Norm layers' normalization loss, with
the paper code's shapes (`ei_keras.annealing`). λ is a non-trainable variable of each layer
(`INormDense.norm_weight`), so a value set between epochs changes the next compiled step on
every backend.
"""

from __future__ import annotations

import keras

from ei_keras import annealing


def _lambda_layers(model) -> list:
    """The sub-layers with a normalization-loss weight (`norm_weight_variable`)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if getattr(layer, "norm_weight_variable", None) is not None]


class NormWeightSchedule(keras.callbacks.Callback):
    """Sets every I-Norm layer's λ to `λ0 · f(epoch)` at the start of each epoch.

    `λ0` is each layer's λ when training begins; `f` is one of the paper code's annealing
    shapes (`ei_keras.annealing.SHAPES`), capped at 1. When training ends, every layer
    gets its `λ0` back, so the saved model and a second `fit` start from the configured λ.

    Args:
        shape: `"linear"`, `"exponential"`, `"logarithmic"` or `"cosine"`.
        horizon: `T` in epochs (`tau` for `exponential`); None: the `epochs` of the
            `fit` call.

    Example:

    >>> import keras, numpy as np
    >>> from ei_keras import zoo
    >>> from ei_keras.callbacks import NormWeightSchedule
    >>> model = zoo.build("inorm_gradnorm", width=8, seed=0, input_dim=8)
    >>> seen = []
    >>> record = keras.callbacks.LambdaCallback(
    ...     on_epoch_end=lambda epoch, logs: seen.append(round(model.norm_weight, 4)))
    >>> x, y = np.random.rand(8, 8).astype("float32"), np.arange(8) % 10
    >>> _ = model.fit(x, y, epochs=3, verbose=0,
    ...               callbacks=[NormWeightSchedule("linear"), record])
    >>> seen, round(model.norm_weight, 4)  # lambda0 = 0.01: 0, 1/3, 2/3 of it, then back
    ([0.0, 0.0033, 0.0067], 0.01)
    """

    def __init__(self, shape: str, horizon: float | None = None):
        super().__init__()
        if shape not in annealing.SHAPES:
            raise ValueError(f"Expected `shape` to be one of {annealing.SHAPES}. "
                             f"Received: shape={shape!r}")
        if horizon is not None:
            annealing.factor(shape, 0, horizon)  # validates the horizon
        self.shape, self.horizon = shape, horizon
        self._base = None

    def on_train_begin(self, logs=None):
        self._base = [(layer, layer.norm_weight) for layer in _lambda_layers(self.model)]

    def on_epoch_begin(self, epoch, logs=None):
        horizon = self.horizon if self.horizon is not None else self.params.get("epochs", 1)
        f = annealing.factor(self.shape, epoch, max(horizon, 1))
        for layer, base in self._base or ():
            layer.norm_weight = base * f

    def on_train_end(self, logs=None):
        for layer, base in self._base or ():
            layer.norm_weight = base

    def get_config(self):
        return {"shape": self.shape, "horizon": self.horizon}
