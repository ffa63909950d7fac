"""The dual-loss training step on JAX: stateless, jitted by Keras' own `fit`.

The step is `ei_keras.models.trainers.stateless.dual_loss_step` with `jax.vjp` and
`jax.lax.cond` (the population trainer vectorizes the same function over many states). Both
losses are scaled by the optimizer's loss scale before the pull-back and the gradients applied
with `optimizer.stateless_apply` (mixed precision: Keras' `LossScaleOptimizer` unscales
them), as Keras' JAX trainer does.
State goes in and out as Keras' JAX trainer threads it: `(trainable, non_trainable,
optimizer, metrics)` values.
"""

from __future__ import annotations

import jax

from ei_keras.models.trainers import stateless
from ei_keras.models.trainers._base import DualLossTrainerBase


class DualLossTrainer(DualLossTrainerBase):
    """Dual-loss `train_step` / `test_step` for the JAX backend."""

    def train_step(self, state, data):
        return stateless.dual_loss_step(self, state, data, jax.vjp, jax.lax.cond)

    def test_step(self, state, data):
        return stateless.dual_loss_test_step(self, state, data)
