"""The dual-loss training step as a pure function of the state (any backend with a functional
`vjp`): the JAX trainer's `train_step` and the population trainer's member step
(`ei_keras.population`, `jax.vmap` / `torch.func.vmap`) are this one function.

One forward pass inside a `keras.StatelessScope` gives both losses; the `vjp` of
`(task_loss, norm_loss)` with respect to `(task-only, normalization-only, shared variables)`
is pulled back twice, once per loss, and each pull-back keeps only the gradient of the
variables that loss trains; a shared variable (both losses train it: the isolation
ablations) gets the sum of the two. The update is the model's own optimizer
(`optimizer.stateless_apply`), so learning rates (optimizer variables), clipping and
constraints are the sequential run's. State goes in and out as Keras' JAX trainer threads it:
`(trainable, non_trainable, optimizer, metrics)` values.

`vjp(f, *primals, has_aux=True) -> (out, pullback, aux)` is `jax.vjp` or
`torch.func.vjp`; `cond(pred, true_fn, false_fn, *operands)` is `jax.lax.cond` or a
select of both branches.
"""

from __future__ import annotations

import warnings

import keras
from keras import ops

from ei_keras.models.trainers._base import combine, select


def split(values, by_task, by_norm):
    """`(task-only, normalization-only, shared)` entries of a list aligned with the trainable
    variables (`model._assignment()`'s flags; shared: trained by both losses)."""
    return ([v for v, t, n in zip(values, by_task, by_norm) if t and not n],
            [v for v, t, n in zip(values, by_task, by_norm) if n and not t],
            [v for v, t, n in zip(values, by_task, by_norm) if t and n])


def merge(task_only, norm_only, shared, by_task, by_norm):
    """The inverse of `split`."""
    its = (iter(task_only), iter(norm_only), iter(shared))
    return [next(its[2] if t and n else its[0] if t else its[1])
            for t, n in zip(by_task, by_norm)]


def forward(model, trainable_values, non_trainable_values, x, y, sample_weight, training):
    """`(y_pred, non_trainable values, (loss, task_loss, norm_loss))`, stateless."""
    mapping = list(zip(model.trainable_variables, trainable_values)) + \
        list(zip(model.non_trainable_variables, non_trainable_values))
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
        kwargs = {"training": training} if model._call_has_training_arg else {}
        y_pred = model(x, **kwargs)
        losses = model.compute_dual_losses(x, y, y_pred, sample_weight, training=training)
    non_trainable_values = [scope.get_current_value(v) for v in model.non_trainable_variables]
    return y_pred, non_trainable_values, losses


def apply(model, optimizer_values, trainable_values, grads, variables):
    """`optimizer.apply(grads, variables)` for any subset of the trainable variables (`grads`
    aligned with `variables`, in the model's order), through the stateless optimizer API (as
    Keras' JAX trainer applies gradients): `(trainable values, optimizer values)`. The
    variables outside the subset get no gradient (None), so neither they nor their optimizer
    slots move; a `keras.optimizers.LossScaleOptimizer` (mixed precision) unscales the
    gradients, skips a step with non-finite ones and updates its scale, all statelessly."""
    wanted = {id(v) for v in variables}
    given = iter(grads)
    grads = [next(given) if id(v) in wanted else None for v in model.trainable_variables]
    with warnings.catch_warnings():
        # Keras' optimizers warn, while tracing, about variables without a gradient: here that
        # is the subset update asked for.
        warnings.filterwarnings("ignore", message="Gradients do not exist for variables")
        return model.optimizer.stateless_apply(optimizer_values, grads, trainable_values)


def scaled(model, optimizer_values, losses):
    """Each loss times the optimizer's loss scale (`model._scale_loss`), reading the scale
    from `optimizer_values`."""
    mapping = list(zip(model.optimizer.variables, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping):
        return tuple(model._scale_loss(loss) for loss in losses)


def dual_gradients(model, vjp, trainable_values, non_trainable_values, optimizer_values, x, y,
                   sample_weight, by_task, by_norm, with_task=True):
    """Task-loss gradients of the task variables (aligned with `select(trainable,
    by_task)`) and normalization-loss gradients of the normalization variables (aligned
    with `select(trainable, by_norm)`), of the losses scaled by the optimizer's loss scale
    (mixed precision), plus the forward pass' outputs (unscaled losses)."""
    groups = split(trainable_values, by_task, by_norm)

    def losses(task_vals, norm_vals, shared_vals):
        y_pred, ntv, (total, task, norm) = forward(
            model, merge(task_vals, norm_vals, shared_vals, by_task, by_norm),
            non_trainable_values, x, y, sample_weight, training=True)
        return scaled(model, optimizer_values, (task, norm)), (y_pred, ntv, total, task, norm)

    (s_task, s_norm), pullback, (y_pred, ntv, total, task, norm) = vjp(
        losses, *groups, has_aux=True)
    task_grads = None
    if with_task:
        g_task, _, g_shared = pullback((ops.ones_like(s_task), ops.zeros_like(s_norm)))
        task_grads = select(merge(g_task, [None] * len(groups[1]), g_shared, by_task, by_norm),
                            by_task)
    _, g_norm, g_shared = pullback((ops.zeros_like(s_task), ops.ones_like(s_norm)))
    norm_grads = select(merge([None] * len(groups[0]), g_norm, g_shared, by_task, by_norm),
                        by_norm)
    return task_grads, norm_grads, (y_pred, ntv, total, task, norm)


def metrics(model, metrics_values, x, y, y_pred, sample_weight, total, task, norm):
    """The loss trackers and compiled metrics updated, stateless: `(logs, metrics values)`."""
    mapping = list(zip(model.metrics_variables, metrics_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        model._update_loss_trackers(x, total, task, norm)
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    return logs, [scope.get_current_value(v) for v in model.metrics_variables]


def dual_loss_step(model, state, data, vjp, cond):
    """One dual-loss step of `model` (a `DualLossTrainerBase` model) from `state`:
    `(logs, new state)`."""
    trainable_values, non_trainable_values, optimizer_values, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    trainable, by_task, by_norm = model._assignment()
    task_grads, norm_grads, (y_pred, ntv, total, task, norm) = dual_gradients(
        model, vjp, trainable_values, non_trainable_values, optimizer_values, x, y,
        sample_weight, by_task, by_norm)
    task_vars, norm_vars = select(trainable, by_task), select(trainable, by_norm)

    def inhibitory_update(tv, ov):
        # The paper's step: every variable moves once, by its own loss' gradient (a shared
        # variable by the sum of both).
        tv, ov = apply(model, ov, tv, combine(task_grads, norm_grads, by_task, by_norm),
                       trainable)
        for _ in range(model.inhibitory_steps - 1):
            _, extra, _ = dual_gradients(model, vjp, tv, ntv, ov, x, y, sample_weight,
                                         by_task, by_norm, with_task=False)
            tv, ov = apply(model, ov, tv, extra, norm_vars)
        return tv, ov

    def task_only_update(tv, ov):
        return apply(model, ov, tv, task_grads, task_vars)

    if model.inhibitory_every == 1 or not norm_vars:
        trainable_values, optimizer_values = inhibitory_update(trainable_values,
                                                               optimizer_values)
    else:
        index = [id(v) for v in model.non_trainable_variables].index(
            id(model.inhibitory_counter))
        count = ntv[index]
        trainable_values, optimizer_values = cond(
            count % model.inhibitory_every == 0, inhibitory_update, task_only_update,
            trainable_values, optimizer_values)
        ntv = list(ntv)
        ntv[index] = count + 1

    logs, metrics_values = metrics(model, metrics_values, x, y, y_pred, sample_weight, total,
                                   task, norm)
    return logs, (trainable_values, ntv, optimizer_values, metrics_values)


def dual_loss_test_step(model, state, data):
    """One evaluation step from `(trainable, non_trainable, metrics)` values."""
    trainable_values, non_trainable_values, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model._assignment()
    y_pred, ntv, (total, task, norm) = forward(
        model, trainable_values, non_trainable_values, x, y, sample_weight, training=False)
    logs, metrics_values = metrics(model, metrics_values, x, y, y_pred, sample_weight, total,
                                   task, norm)
    return logs, (trainable_values, ntv, metrics_values)
