"""The dual-loss training step on JAX: stateless, jitted by Keras' own `fit`.

One forward pass inside a `keras.StatelessScope` gives both losses; `jax.vjp` of
`(task_loss, norm_loss)` with respect to `(task variables, normalization variables)` is
pulled back twice, once per loss, and each pull-back keeps only the gradient of the variables
that loss trains (XLA drops the other half). State goes in and out as Keras' JAX trainer
threads it: `(trainable, non_trainable, optimizer, metrics)` values.
"""

from __future__ import annotations

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
    """Dual-loss `train_step` / `test_step` for the JAX backend."""

    def _stateless_forward(self, trainable_values, non_trainable_values, x, y, sample_weight,
                           training):
        """`(y_pred, non_trainable values, (loss, task_loss, norm_loss))`, stateless."""
        mapping = list(zip(self.trainable_variables, trainable_values)) + \
            list(zip(self.non_trainable_variables, non_trainable_values))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            kwargs = {"training": training} if self._call_has_training_arg else {}
            y_pred = self(x, **kwargs)
            losses = self.compute_dual_losses(x, y, y_pred, sample_weight, training=training)
        non_trainable_values = [scope.get_current_value(v) for v in self.non_trainable_variables]
        return y_pred, non_trainable_values, losses

    def _apply(self, optimizer_values, trainable_values, grads, variables):
        """Stateless `optimizer.apply(grads, variables)` for any subset of the trainable
        variables: `(trainable values, optimizer values)`."""
        mapping = list(zip(self.trainable_variables, trainable_values)) + \
            list(zip(self.optimizer.variables, optimizer_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.optimizer.apply(grads, variables)
        return ([scope.get_current_value(v) for v in self.trainable_variables],
                [scope.get_current_value(v) for v in self.optimizer.variables])

    def _dual_gradients(self, trainable_values, non_trainable_values, x, y, sample_weight,
                        is_norm, with_task=True):
        """Task-loss gradients of the task variables and normalization-loss gradients of the
        normalization variables, plus the forward pass' outputs."""
        task_values, norm_values = _split(trainable_values, is_norm)

        def losses(task_vals, norm_vals):
            y_pred, ntv, (total, task, norm) = self._stateless_forward(
                _merge(task_vals, norm_vals, is_norm), non_trainable_values, x, y,
                sample_weight, training=True)
            return (task, norm), (y_pred, ntv, total)

        (task, norm), pullback, (y_pred, ntv, total) = jax.vjp(
            losses, task_values, norm_values, has_aux=True)
        one, zero = ops.ones_like(task), ops.zeros_like(norm)
        task_grads = pullback((one, zero))[0] if with_task else None
        norm_grads = pullback((ops.zeros_like(task), ops.ones_like(norm)))[1]
        del one, zero
        return task_grads, norm_grads, (y_pred, ntv, total, task, norm)

    def train_step(self, state, data):
        trainable_values, non_trainable_values, optimizer_values, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        trainable, is_norm = self._assignment()
        task_grads, norm_grads, (y_pred, ntv, total, task, norm) = self._dual_gradients(
            trainable_values, non_trainable_values, x, y, sample_weight, is_norm)
        task_vars, norm_vars = _split(trainable, is_norm)

        def inhibitory_update(tv, ov):
            # The paper's step: every variable moves once, by its own loss' gradient.
            tv, ov = self._apply(ov, tv, _merge(task_grads, norm_grads, is_norm), trainable)
            for _ in range(self.inhibitory_steps - 1):
                _, extra, _ = self._dual_gradients(tv, ntv, x, y, sample_weight, is_norm,
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
