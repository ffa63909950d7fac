"""The dual-loss training step on TensorFlow: traced once by Keras' own `fit`.

One forward pass on a persistent `tf.GradientTape`; the task loss is differentiated with
respect to the task variables only and the normalization loss with respect to the
normalization variables only (a variable both train gets the sum: `_base.combine`). The
schedules' condition is a `tf.cond` on a counter variable, so the traced step serves every
batch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ei_keras.models.trainers._base import DualLossTrainerBase, combine, select


class DualLossTrainer(DualLossTrainerBase):
    """Dual-loss `train_step` / `test_step` for the TensorFlow backend."""

    def _forward(self, x, y, sample_weight, training):
        kwargs = {"training": training} if self._call_has_training_arg else {}
        y_pred = self(x, **kwargs)
        return y_pred, self.compute_dual_losses(x, y, y_pred, sample_weight, training=training)

    @staticmethod
    def _gradients(tape, loss, variables):
        grads = tape.gradient(loss, variables)
        return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]

    def _inhibitory_only_step(self, x, y, sample_weight, norm_vars):
        with tf.GradientTape() as tape:
            _, (_, _, norm) = self._forward(x, y, sample_weight, training=True)
            scaled_norm = self._scale_loss(norm)
        self.optimizer.apply(self._gradients(tape, scaled_norm, norm_vars), norm_vars)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape(persistent=True) as tape:
            y_pred, (total, task, norm) = self._forward(x, y, sample_weight, training=True)
            # Mixed precision: both losses are scaled (the optimizer unscales every gradient).
            scaled_task, scaled_norm = self._scale_loss(task), self._scale_loss(norm)
        # Read the variables after the forward pass (the first trace creates nothing, but a
        # model built lazily by its first call would have none before it).
        trainable, by_task, by_norm = self._assignment()
        task_vars, norm_vars = select(trainable, by_task), select(trainable, by_norm)
        task_grads = self._gradients(tape, scaled_task, task_vars)
        norm_grads = self._gradients(tape, scaled_norm, norm_vars) if norm_vars else []
        del tape

        def inhibitory_update():
            self.optimizer.apply(combine(task_grads, norm_grads, by_task, by_norm), trainable)
            for _ in range(self.inhibitory_steps - 1):
                self._inhibitory_only_step(x, y, sample_weight, norm_vars)
            return tf.constant(True)

        def task_only_update():
            self.optimizer.apply(task_grads, task_vars)
            return tf.constant(False)

        if self.inhibitory_every == 1 or not norm_vars:
            inhibitory_update()
        else:
            counter = self.inhibitory_counter
            tf.cond(counter % self.inhibitory_every == 0, inhibitory_update, task_only_update)
            counter.assign_add(1)
        self._update_loss_trackers(x, total, task, norm)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._assignment()
        y_pred, (total, task, norm) = self._forward(x, y, sample_weight, training=False)
        self._update_loss_trackers(x, total, task, norm)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
