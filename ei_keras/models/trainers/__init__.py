"""One dual-loss training step per backend, chosen once, at import (as Keras chooses its own
trainer): `DualLossTrainer` is a mixin for `keras.Model` subclasses."""

from __future__ import annotations

import keras

from ei_keras.models.trainers._base import (
    SCHEDULE_ARGUMENTS,
    DualLossTrainerBase,
    portable_compile_config,
)

_BACKEND = keras.backend.backend()
if _BACKEND == "jax":
    from ei_keras.models.trainers.jax import DualLossTrainer
elif _BACKEND == "tensorflow":
    from ei_keras.models.trainers.tensorflow import DualLossTrainer
elif _BACKEND == "torch":
    from ei_keras.models.trainers.torch import DualLossTrainer
else:  # pragma: no cover - numpy / openvino cannot train
    DualLossTrainer = DualLossTrainerBase

__all__ = ["SCHEDULE_ARGUMENTS", "DualLossTrainer", "DualLossTrainerBase",
           "portable_compile_config"]
