"""The dual-loss training step on PyTorch, written for eager speed.

Keras runs its torch `train_step` eagerly, so every Python operation of the step is paid on
every batch. This step does what the paper's step needs and nothing more: one forward pass,
`torch.autograd.grad` of the task loss for the task variables and of the normalization loss
for the normalization variables (summed for a variable both train), one `optimizer.apply`;
the loss trackers are updated with in-place adds into the `keras.metrics.Mean` state (same
`total` / `count` as `update_state`), and the task loss is the compiled `keras.losses.Loss`
called directly when the model was compiled with a single one (the compiled-loss container is
skipped). Anything else (structured losses, loss weights, overridden `compute_loss`, a
mixed-precision policy) goes through Keras' own methods. Both losses are scaled by the
optimizer's loss scale before differentiation (`LossScaleOptimizer` under `mixed_float16`),
as Keras' own step does.
"""

from __future__ import annotations

import keras
import torch

from ei_keras.models.trainers._base import DualLossTrainerBase, combine, select


def _direct_loss(model):
    """The compiled `keras.losses.Loss` when `compute_loss` would just call it and average
    (one output, no loss weights, mean reduction, float32), else None."""
    loss = model.loss
    overridden = type(model).compute_loss is not keras.Model.compute_loss
    if overridden or not isinstance(loss, keras.losses.Loss) or \
            model.get_compile_config().get("loss_weights") is not None or \
            loss.reduction != "sum_over_batch_size" or loss.dtype != "float32":
        return None
    return loss


def _mean_loss(loss, y, y_pred):
    """`loss(y, y_pred)` without sample weights or masks: `Loss.__call__`'s
    `sum(values) / count` without its conversions and dispatch."""
    values = loss.call(y, y_pred)
    return torch.sum(values) / float(values.numel())


def _mean_add(tracker, value, n):
    """`tracker.update_state(value, sample_weight=n)` for a scalar `value`, in place."""
    with torch.no_grad():
        tracker.total.value.add_(value.detach().float(), alpha=n)
        tracker.count.value.add_(n)


class _StepCache:
    """Per-compile constants of the step (a plain object: Keras would track lists of
    variables or metrics assigned to a built model as new state)."""

    __slots__ = ("items",)

    def __init__(self, *items):
        self.items = items


class DualLossTrainer(DualLossTrainerBase):
    """Dual-loss `train_step` / `test_step` for the PyTorch backend."""

    def _sublayer(self, layer, *args, **kwargs):
        # Eager PyTorch pays Layer.__call__'s bookkeeping (call context, autocast scope, input
        # checks) for every sub-layer on every step; TF and JAX pay it once, while tracing.
        # A built sub-layer of a float32 model has nothing for it to do.
        if layer.built and self.dtype_policy.name == "float32":
            return layer.call(*args)
        return layer(*args, **kwargs)

    def _dual_losses(self, x, y, y_pred, sample_weight, training):
        direct = self._direct_task_loss
        if direct is None or sample_weight is not None or self._other_losses or \
                getattr(y_pred, "_keras_mask", None) is not None or \
                not isinstance(y_pred, torch.Tensor) or y_pred.dtype != torch.float32:
            return self.compute_dual_losses(x, y, y_pred, sample_weight, training=training)
        task = _mean_loss(direct, y, y_pred)
        norm = self.normalization_loss()
        return task + norm, task, norm

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        self._direct_task_loss = _direct_loss(self)
        self._step_cache = None

    def _prepare(self):
        """The assignment and what the step reads on every batch, computed on the first
        (Keras' rule: changing `trainable` after `compile` needs a new `compile`)."""
        cache = getattr(self, "_step_cache", None)
        if cache is None:
            trainable, by_task, by_norm = self._assignment()
            n_norm = len(self.normalization_terms())
            # Any other loss term (regularizers, activity losses) joins the task loss through
            # Keras' compute_loss.
            self._other_losses = len(self.losses) != n_norm
            trackers = (self.task_loss_tracker, self.norm_loss_tracker)
            if self._loss_tracker is not None:
                trackers = (self._loss_tracker, *trackers)
            cache = self._step_cache = _StepCache(
                trainable, (by_task, by_norm), select(trainable, by_task),
                select(trainable, by_norm),
                [m for m in self.metrics
                 if all(m is not t for t in (*trackers, self.dual_loss_trackers))], trackers)
        return cache.items

    def _logs(self):
        """`get_metrics_result()` with the loss means read as `total / count`."""
        _, _, _, _, others, trackers = self._step_cache.items
        logs = {}
        for m in trackers:
            logs[m.name] = m.total.value / m.count.value
        for m in others:
            result = m.result()
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[m.name] = result
        return logs

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        kwargs = {"training": True} if self._call_has_training_arg else {}
        y_pred = self(x, **kwargs)
        trainable, (by_task, by_norm), task_vars, norm_vars, _, _ = self._prepare()
        total, task, norm = self._dual_losses(x, y, y_pred, sample_weight, training=True)
        update_inhibition = True
        if self.inhibitory_every > 1 and norm_vars:
            step = int(self.inhibitory_counter.value)
            update_inhibition = step % self.inhibitory_every == 0
            self.inhibitory_counter.assign(step + 1)
        # Mixed precision: both losses are scaled (the optimizer unscales every gradient).
        task_grads = torch.autograd.grad(self._scale_loss(task), [v.value for v in task_vars],
                                         retain_graph=bool(norm_vars and update_inhibition),
                                         allow_unused=True)
        task_grads = [torch.zeros_like(v.value) if g is None else g
                      for g, v in zip(task_grads, task_vars)]
        if update_inhibition and norm_vars:
            norm_grads = self._norm_gradients(self._scale_loss(norm), norm_vars)
            with torch.no_grad():
                self.optimizer.apply(combine(task_grads, norm_grads, by_task, by_norm),
                                     trainable)
            for _ in range(self.inhibitory_steps - 1):
                self(x, **kwargs)
                extra = self._norm_gradients(self._scale_loss(self.normalization_loss()),
                                             norm_vars)
                with torch.no_grad():
                    self.optimizer.apply(extra, norm_vars)
        else:
            with torch.no_grad():
                self.optimizer.apply(task_grads, task_vars)
        n = int(next(t for t in keras.tree.flatten(x) if t is not None).shape[0])
        self._track(n, total, task, norm)
        return self._metrics_logs(x, y, y_pred, sample_weight)

    def _metrics_logs(self, x, y, y_pred, sample_weight):
        if type(self).compute_metrics is not keras.Model.compute_metrics:
            return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        # What Trainer.compute_metrics does, with the cheap results of _logs.
        compiled = getattr(self, "_compile_metrics", None)
        if compiled is not None:
            compiled.update_state(y, y_pred, sample_weight)
        return self._logs()

    @staticmethod
    def _norm_gradients(norm, norm_vars):
        values = [v.value for v in norm_vars]
        if not norm.requires_grad:
            return [torch.zeros_like(v) for v in values]
        grads = torch.autograd.grad(norm, values, allow_unused=True)
        return [torch.zeros_like(v) if g is None else g for g, v in zip(grads, values)]

    def _track(self, n, total, task, norm):
        if self._loss_tracker is not None:
            _mean_add(self._loss_tracker, total, n)
        _mean_add(self.task_loss_tracker, task, n)
        _mean_add(self.norm_loss_tracker, norm, n)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        kwargs = {"training": False} if self._call_has_training_arg else {}
        y_pred = self(x, **kwargs)
        self._prepare()
        total, task, norm = self._dual_losses(x, y, y_pred, sample_weight, training=False)
        n = int(next(t for t in keras.tree.flatten(x) if t is not None).shape[0])
        self._track(n, total, task, norm)
        return self._metrics_logs(x, y, y_pred, sample_weight)
