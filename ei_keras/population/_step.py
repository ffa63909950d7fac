"""The compiled step of one population member and its health record (`member_step`).

Its own module so that the backend engines (`_jax`, `_torch`) and the package's
`__init__` (which chooses an engine) both import it without importing each other
(`tests/test_layering.py`: no import cycles).
"""

from __future__ import annotations

from ei_keras.roles import GROUPS

#: `bad_cause` of a member frozen by a non-finite input batch (not a learning rate); group
#: causes are indices in `ei_keras.optimizers.GROUPS`, -1 none.
INPUT_CAUSE = len(GROUPS)
#: The per-member record the compiled step keeps (`initial_carry`, `member_step`): int32
#: steps (1-based, -1 none) and group indices (-1 none), float32 values (-1: none).
HEALTH = {"alive": bool, "bad_step": "int32", "bad_cause": "int32", "bad_var": "int32",
          "bad_loss": "float32", "first_step": "int32", "first_kind": "int32",
          "first_value": "float32", "first_var": "int32", "last_step": "int32",
          "peak_loss": "float32", "peak_weight": "float32", "event_cause": "int32"}
#: `first_kind`: the stability event was first seen by the loss check or the weight check.
LOSS_CHECK, WEIGHT_CHECK = 1, 2


def member_health(loss, trainable, x):
    """One member's state after one step (traced, `keras.ops`): `(finite, weights_finite,
    peak, largest, first_bad, input_ok)`: whether the logged loss and every trainable value
    are finite (else the member is frozen), whether the weights alone are, the largest
    magnitude of a weight and the index of the variable holding it, the index of the first
    variable holding a non-finite value, and whether the input batch is finite."""
    from keras import ops

    each = ops.stack([ops.all(ops.isfinite(v)) for v in trainable])
    peaks = ops.stack([ops.max(ops.abs(v)) for v in trainable])
    weights_finite = ops.all(each)
    return (ops.logical_and(weights_finite, ops.isfinite(loss)), weights_finite,
            ops.max(peaks), ops.cast(ops.argmax(peaks), "int32"),
            ops.cast(ops.argmin(ops.cast(each, "int32")), "int32"),
            ops.all(ops.isfinite(x)))


def most_grown(before, after, groups):
    """The index (in `ei_keras.optimizers.GROUPS`) of the group whose weights changed most
    from `before` to `after`, relative to their size: `DivergenceMonitor._most_grown`'s
    rule (`max |w - w_before| / max(max |w_before|, 1)`, ties to the group met first in the
    variables' order), traced, for one member."""
    from keras import ops

    order = list(dict.fromkeys(groups))
    growth = {g: None for g in order}
    for b, a, g in zip(before, after, groups):
        ratio = ops.max(ops.abs(a - b)) / ops.maximum(ops.max(ops.abs(b)), 1.0)
        growth[g] = ratio if growth[g] is None else ops.maximum(growth[g], ratio)
    index = ops.argmax(ops.stack([growth[g] for g in order]))
    return ops.cast(ops.take(ops.convert_to_tensor(order, "int32"), index), "int32")


def check_schedule(step, steps: int, spe: int):
    """Whether the sequential run (`ei_keras.divergence.DivergenceMonitor` in a `fit` of
    `steps` steps per epoch at `steps_per_execution` `spe`) checks the loss, and the
    weights, after global step `step` (1-based): the loss at the end of every compiled call
    (every `spe` steps and the epoch's last), the weights at the start of every call (when
    `spe` is above 1) or every `SNAPSHOT_EVERY` steps (`spe` = 1), at each epoch's start and
    at the end of training. The population applies the bounds on the same schedule, so its stability
    events are the sequential run's."""
    from keras import ops

    from ei_keras.divergence import SNAPSHOT_EVERY

    every = spe if spe > 1 else SNAPSHOT_EVERY
    b = step - ((step - 1) // steps) * steps  # the step within its epoch, 1..steps
    end = b == steps
    return ops.logical_or(b % spe == 0, end), ops.logical_or(b % every == 0, end)


def member_step(train_step, where, state, buffer, health, step, schedule, x, y, groups):
    """One step of one member (traced; the engines vectorize it over the members): the
    model's step, the freeze of a non-finite member and the stability checks on the
    sequential run's schedule (`check_schedule`; `schedule = (steps, spe)`).

    `buffer` holds the member's trainable values at the last weight check at which they were
    finite (within the bounds until the first event): the reference from which
    `most_grown` names the group to blame, as `DivergenceMonitor` does from its snapshots.
    `where(pred, a, b)` selects between two trees. Returns `(state, buffer, health)`.
    """
    from keras import ops

    from ei_keras.scoring import MAX_ABS_WEIGHT, MAX_LOSS

    logs, new = train_step(state, (x, y))
    loss = ops.cast(logs["loss"], "float32")
    finite, weights_finite, peak, largest, first_bad, input_ok = member_health(loss, new[0], x)
    h = dict(health)
    alive = h["alive"]
    ok = ops.logical_and(alive, finite)
    newly_bad = ops.logical_and(alive, ops.logical_not(finite))
    loss_check, weight_check = check_schedule(step, *schedule)
    loss_out = ops.logical_and(ok, ops.logical_and(loss_check, loss > MAX_LOSS))
    weight_out = ops.logical_and(ok, ops.logical_and(weight_check, peak > MAX_ABS_WEIGHT))
    event = ops.logical_or(loss_out, weight_out)
    newly_event = ops.logical_and(event, h["first_step"] < 0)
    # The group to blame: from the last finite weight check to the state after this step
    # (before it, when this step's weights are non-finite), as the sequential replay does.
    reference = where(weights_finite, new[0], state[0])
    grown = most_grown(buffer, reference, groups)
    new = where(ok, new, state)
    step = ops.cast(step, "int32")
    h["alive"] = ok
    h["bad_step"] = ops.where(newly_bad, step, h["bad_step"])
    h["bad_cause"] = ops.where(newly_bad, ops.where(input_ok, grown, INPUT_CAUSE),
                               h["bad_cause"])
    h["bad_var"] = ops.where(newly_bad, ops.where(weights_finite, -1, first_bad), h["bad_var"])
    h["bad_loss"] = ops.where(newly_bad, loss, h["bad_loss"])
    h["first_step"] = ops.where(newly_event, step, h["first_step"])
    h["first_kind"] = ops.where(newly_event, ops.where(loss_out, LOSS_CHECK, WEIGHT_CHECK),
                                h["first_kind"])
    h["first_value"] = ops.where(newly_event, ops.where(loss_out, loss, peak), h["first_value"])
    h["first_var"] = ops.where(newly_event, largest, h["first_var"])
    h["event_cause"] = ops.where(newly_event, grown, h["event_cause"])
    h["last_step"] = ops.where(event, step, h["last_step"])
    h["peak_loss"] = ops.where(loss_out, ops.maximum(h["peak_loss"], loss), h["peak_loss"])
    h["peak_weight"] = ops.where(weight_out, ops.maximum(h["peak_weight"], peak),
                                 h["peak_weight"])
    buffer = where(ops.logical_and(ok, weight_check), new[0], buffer)
    return new, buffer, h
