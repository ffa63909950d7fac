"""The dual-loss training step on JAX: stateless, jitted by Keras' own ``fit``.

One forward pass inside a ``keras.StatelessScope`` gives both losses; ``jax.vjp`` of
``(task_loss, norm_loss)`` with respect to ``(task variables, normalization variables)`` is
pulled back twice, once per loss, and each pull-back keeps only the gradient of the variables
that loss trains (XLA drops the other half). Both losses are scaled by the optimizer's loss
scale before the pull-back and the gradients applied with ``optimizer.stateless_apply`` (mixed
precision: Keras' ``LossScaleOptimizer`` unscales them), as Keras' JAX trainer does. State goes
in and out as that trainer threads it: ``(trainable, non_trainable, optimizer, metrics)``
values.
"""

from __future__ import annotations

import warnings

import jax
import keras
from keras import ops

from ei_keras.models.trainers._base import DualLossTrainerBase


def _split(values, is_norm):
    return ([v for v, n in zip(values, is_norm) if not n],
            [v for v, n in zip(values, is_norm) if n])


def _merge(task_values, norm_values, is_norm):
    task_it, norm_it = iter(task_values), iter(norm_values)
    return [next(norm_it) if n else next(task_it) for n in is_norm]


class DualLossTrainer(DualLossTrainerBase):
    """Dual-loss ``train_step`` / ``test_step`` for the JAX backend."""

    def _stateless_forward(self, trainable_values, non_trainable_values, x, y, sample_weight,
                           training):
        """``(y_pred, non_trainable values, (loss, task_loss, norm_loss))``, stateless."""
        mapping = list(zip(self.trainable_variables, trainable_values)) + \
            list(zip(self.non_trainable_variables, non_trainable_values))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            kwargs = {"training": training} if self._call_has_training_arg else {}
            y_pred = self(x, **kwargs)
            losses = self.compute_dual_losses(x, y, y_pred, sample_weight, training=training)
        non_trainable_values = [scope.get_current_value(v) for v in self.non_trainable_variables]
        return y_pred, non_trainable_values, losses

    def _apply(self, optimizer_values, trainable_values, grads, variables):
        """``optimizer.apply(grads, variables)`` for any subset of the trainable variables,
        through the stateless optimizer API (as Keras' JAX trainer applies gradients):
        ``(trainable values, optimizer values)``. The variables outside the subset get no
        gradient (None), so neither they nor their optimizer slots move; a
        ``keras.optimizers.LossScaleOptimizer`` (mixed precision) unscales the gradients, skips
        a step with non-finite ones and updates its scale, all statelessly."""
        wanted = {id(v) for v in variables}
        full = iter(grads)
        grads = [next(full) if id(v) in wanted else None for v in self.trainable_variables]
        with warnings.catch_warnings():
            # Keras' optimizers warn, while tracing, about variables without a gradient:
            # here that is the subset update asked for.
            warnings.filterwarnings("ignore", message="Gradients do not exist for variables")
            return self.optimizer.stateless_apply(optimizer_values, grads, trainable_values)

    def _scaled(self, optimizer_values, losses):
        """:meth:`_scale_loss` of each loss, reading the loss scale from ``optimizer_values``."""
        mapping = list(zip(self.optimizer.variables, optimizer_values))
        with keras.StatelessScope(state_mapping=mapping):
            return tuple(self._scale_loss(loss) for loss in losses)

    def _dual_gradients(self, trainable_values, non_trainable_values, optimizer_values, x, y,
                        sample_weight, is_norm, with_task=True):
        """Task-loss gradients of the task variables and normalization-loss gradients of the
        normalization variables (of the losses scaled by the optimizer's loss scale: mixed
        precision), plus the forward pass' outputs (unscaled losses)."""
        task_values, norm_values = _split(trainable_values, is_norm)

        def losses(task_vals, norm_vals):
            y_pred, ntv, (total, task, norm) = self._stateless_forward(
                _merge(task_vals, norm_vals, is_norm), non_trainable_values, x, y,
                sample_weight, training=True)
            return self._scaled(optimizer_values, (task, norm)), (y_pred, ntv, total, task, norm)

        (scaled_task, scaled_norm), pullback, (y_pred, ntv, total, task, norm) = jax.vjp(
            losses, task_values, norm_values, has_aux=True)
        one, zero = ops.ones_like(scaled_task), ops.zeros_like(scaled_norm)
        task_grads = pullback((one, zero))[0] if with_task else None
        norm_grads = pullback((ops.zeros_like(scaled_task), ops.ones_like(scaled_norm)))[1]
        del one, zero
        return task_grads, norm_grads, (y_pred, ntv, total, task, norm)

    def train_step(self, state, data):
        trainable_values, non_trainable_values, optimizer_values, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        trainable, is_norm = self._assignment()
        task_grads, norm_grads, (y_pred, ntv, total, task, norm) = self._dual_gradients(
            trainable_values, non_trainable_values, optimizer_values, x, y, sample_weight,
            is_norm)
        task_vars, norm_vars = _split(trainable, is_norm)

        def inhibitory_update(tv, ov):
            # The paper's step: every variable moves once, by its own loss' gradient.
            tv, ov = self._apply(ov, tv, _merge(task_grads, norm_grads, is_norm), trainable)
            for _ in range(self.inhibitory_steps - 1):
                _, extra, _ = self._dual_gradients(tv, ntv, ov, x, y, sample_weight, is_norm,
                                                   with_task=False)
                tv, ov = self._apply(ov, tv, extra, norm_vars)
            return tv, ov

        def task_only_update(tv, ov):
            return self._apply(ov, tv, task_grads, task_vars)

        if self.inhibitory_every == 1 or not norm_vars:
            trainable_values, optimizer_values = inhibitory_update(trainable_values,
                                                                   optimizer_values)
        else:
            index = [id(v) for v in self.non_trainable_variables].index(
                id(self.inhibitory_counter))
            count = ntv[index]
            trainable_values, optimizer_values = jax.lax.cond(
                count % self.inhibitory_every == 0, inhibitory_update, task_only_update,
                trainable_values, optimizer_values)
            ntv = list(ntv)
            ntv[index] = count + 1

        logs, metrics_values = self._stateless_metrics(metrics_values, x, y, y_pred,
                                                       sample_weight, total, task, norm)
        return logs, (trainable_values, ntv, optimizer_values, metrics_values)

    def _stateless_metrics(self, metrics_values, x, y, y_pred, sample_weight, total, task,
                           norm):
        mapping = list(zip(self.metrics_variables, metrics_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self._update_loss_trackers(x, total, task, norm)
            logs = self.compute_metrics(x, y, y_pred, sample_weight)
        return logs, [scope.get_current_value(v) for v in self.metrics_variables]

    def test_step(self, state, data):
        trainable_values, non_trainable_values, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._assignment()
        y_pred, ntv, (total, task, norm) = self._stateless_forward(
            trainable_values, non_trainable_values, x, y, sample_weight, training=False)
        logs, metrics_values = self._stateless_metrics(metrics_values, x, y, y_pred,
                                                       sample_weight, total, task, norm)
        return logs, (trainable_values, ntv, metrics_values)
