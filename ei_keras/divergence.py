"""Divergence as an outcome of a run, not a crash or a silent 10 %.

The rule (`ei_keras.scoring`, the paper's): a run trains its whole length and is scored by
its final accuracy; only a non-finite loss or weight stops it, and it then counts at chance. A
finite loss above `MAX_LOSS` or a weight above `MAX_ABS_WEIGHT` is a *stability
event*: recorded, never a stop.

`DivergenceMonitor` watches a `fit`: the loss after every call of the compiled step
and, at every snapshot, the weights. The run has *diverged* (and stops) when its loss or a weight
is non-finite, during or at the end of training. A finite excursion past the bounds is kept in
`DivergenceMonitor.excursion` (the first step at which a check saw it, the last such step,
the peak loss and weight, and the learning-rate group whose weights had grown most since the
last snapshot within the bounds).

To name the true step and the true cause of a stop whatever `steps_per_execution` is, the
monitor keeps a copy of the model's and the optimizer's variables from the last snapshot whose
weights were all finite (taken at the start of every compiled call, at least every
`SNAPSHOT_EVERY` steps, and at every epoch start). When it detects a non-finite value it
stops the `fit`; then `DivergenceMonitor.locate` restores that copy and replays the steps
since, one at a time, on the same batches of the same epoch, and checks after each step:

- a batch with NaN or infinite values: the *input* is at fault (the data, not a learning rate);
- otherwise the first step after which a weight or the loss is non-finite is the divergence
  step, and the learning-rate group to blame is the one whose weights changed most relative to
  their size in the good copy, measured on the last state in which every weight was finite.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ei_keras.roles import group_of
from ei_keras.scoring import MAX_ABS_WEIGHT, MAX_LOSS, must_stop, out_of_bounds

__all__ = ["MAX_ABS_WEIGHT", "MAX_LOSS", "RATE_OF_GROUP", "SNAPSHOT_EVERY", "DivergenceMonitor"]

#: The learning rate of each variable group.
RATE_OF_GROUP = {"excitatory": "lr_e", "inhibitory_input": "lr_ie",
                 "inhibitory_output": "lr_ei"}
#: Snapshot (and weight check) at least this often, in training steps.
SNAPSHOT_EVERY = 16


class DivergenceMonitor(keras.callbacks.Callback):
    """Stops training when the loss or a weight turns non-finite, finds the step and the cause,
    and records finite excursions past the bounds as a stability event.

    After a stop (and `locate`), `diverged` is True, `step` holds the global training
    step (1-based), `epoch` the epoch (0-based), `cause` is `"input"`, a group name
    (`"excitatory"`, `"inhibitory_input"`, `"inhibitory_output"`) or None, and `message`
    says what happened and what to change (after a stability event, the learning rate of the
    group that left the bounds first).

    `excursion` is None, or (once the loss passed `max_loss` or a weight `max_abs_weight`
    while finite) a dict: `first_step` / `first_epoch` (1-based) of the first check that saw
    it, `last_step`, `what` it was, `peak_loss` and `peak_abs_weight` (the largest seen
    while out of bounds, None when that bound was not passed), `cause` (the group whose
    weights had grown most since the last snapshot within the bounds, None without one) and a
    `message` naming the learning rate to lower should the final accuracy be poor. The
    loss checked is the one Keras logs: the epoch's running mean. Training goes on.

    Args:
        max_abs_weight: a finite weight above this magnitude is a stability event.
        max_loss: a finite loss above this is a stability event.
        rates: the run's learning rates by name (`lr_e` ...), quoted in the message.
    """

    def __init__(self, max_abs_weight: float = MAX_ABS_WEIGHT, max_loss: float = MAX_LOSS,
                 rates: dict | None = None):
        super().__init__()
        self.max_abs_weight = float(max_abs_weight)
        self.max_loss = float(max_loss)
        self.rates = dict(rates or {})
        self.diverged = False
        self.step = None
        self.epoch = None
        self.cause = None
        self.message = None
        self.excursion = None
        self._what = None
        self._global_step = 0
        self._epoch_start = 0
        self._epoch = 0
        self._good = None  # (global step, batch index in epoch, epoch, [arrays]): all finite
        self._bounded = None  # {path: array}: trainable weights at the last snapshot in bounds
        self._last_logs = {}

    # -- snapshots -----------------------------------------------------------------------------
    def _variables(self):
        model = self.model
        return list(model.variables) + list(model.optimizer.variables)

    def _trainable_arrays(self) -> dict:
        return {v.path: np.array(keras.ops.convert_to_numpy(v))
                for v in self.model.trainable_variables}

    def _weights_problem(self, arrays=None) -> str | None:
        """A non-finite trainable weight (a stop), or None."""
        for v in self.model.trainable_variables:
            a = keras.ops.convert_to_numpy(v) if arrays is None else arrays[v.path]
            if not np.all(np.isfinite(a)):
                return f"weight {v.path} is non-finite"
        return None

    def _largest_weight(self, arrays: dict) -> tuple[str | None, float]:
        """The trainable weight with the largest magnitude and that magnitude (finite arrays)."""
        path, peak = None, 0.0
        for v in self.model.trainable_variables:
            a = arrays[v.path]
            if a.size and float(np.max(np.abs(a))) > peak:
                path, peak = v.path, float(np.max(np.abs(a)))
        return path, peak

    def _check_weight_bounds(self, arrays: dict) -> None:
        path, peak = self._largest_weight(arrays)
        if out_of_bounds(peak, self.max_abs_weight):
            self._excursion(f"weight {path} exceeds {self.max_abs_weight:g} in magnitude",
                            arrays, weight=peak)
        else:
            self._bounded = arrays

    def _snapshot(self, batch: int) -> None:
        variables = self._variables()
        values = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
        by_path = {v.path: a for v, a in zip(variables, values)}
        problem = self._weights_problem(by_path)
        if problem:
            self._detect(problem)
            return
        self._good = (self._global_step, batch, self._epoch, values)
        self._check_weight_bounds({v.path: by_path[v.path]
                                   for v in self.model.trainable_variables})

    def _excursion(self, what: str, arrays: dict | None = None, *, loss: float | None = None,
                   weight: float | None = None) -> None:
        """Record (or extend) the stability event: a finite loss or weight past its bound."""
        event = self.excursion
        if event is None:
            arrays = self._trainable_arrays() if arrays is None else arrays
            cause = None if self._bounded is None else self._most_grown(self._bounded, arrays)
            head = (f"Training passed the stability bounds by step {self._global_step} (epoch "
                    f"{self._epoch + 1}): {what}; it trained on and is scored by its final "
                    "accuracy")
            event = self.excursion = {
                "first_step": self._global_step, "first_epoch": self._epoch + 1,
                "last_step": self._global_step, "what": what, "peak_loss": None,
                "peak_abs_weight": None, "cause": cause,
                "message": self._compose(cause, what, exact=False, head=head)}
        event["last_step"] = self._global_step
        for key, value in (("peak_loss", loss), ("peak_abs_weight", weight)):
            if value is not None and (event[key] is None or value > event[key]):
                event[key] = float(value)

    # -- Keras hooks ---------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = self._global_step
        if not self.diverged:
            self._snapshot(0)

    def on_train_batch_begin(self, batch, logs=None):
        if self.diverged or batch == 0:
            return
        spe = max(1, int(getattr(self.model, "steps_per_execution", 1) or 1))
        if spe > 1 or self._epoch_start + batch - self._good[0] >= SNAPSHOT_EVERY:
            self._snapshot(batch)

    def on_train_batch_end(self, batch, logs=None):
        # ``batch`` is the epoch's last finished step: with steps_per_execution = K Keras calls
        # this once per K steps. The last group of an epoch may be shorter than K.
        steps = (self.params or {}).get("steps")
        done = batch + 1 if not steps else min(batch + 1, steps)
        self._global_step = self._epoch_start + done
        self._last_logs = dict(logs or {})
        if self.diverged:
            return
        loss = self._last_logs.get("loss")
        if must_stop(loss):
            self._detect(f"the loss is {float(loss):.3g}")
        elif out_of_bounds(loss, self.max_loss):
            self._excursion(f"the loss is {float(loss):.3g}", loss=float(loss))

    def on_train_end(self, logs=None):
        if self.diverged:
            return
        arrays = self._trainable_arrays()
        problem = self._weights_problem(arrays)
        loss = (logs or self._last_logs).get("loss")
        if problem is None and must_stop(loss):
            problem = f"the final training loss is {float(loss):.3g}"
        if problem:
            self._detect(problem)
            return
        self._check_weight_bounds(arrays)
        if out_of_bounds(loss, self.max_loss):
            self._excursion(f"the final training loss is {float(loss):.3g}", arrays,
                            loss=float(loss))

    def check_final_loss(self, loss, what: str = "test loss") -> None:
        """After training: a non-finite final evaluation loss means divergence (the outputs
        are non-finite); a finite one past the bound is a stability event."""
        if self.diverged:
            return
        if must_stop(loss):
            self.diverged = True
            self.epoch = max(self._epoch, 0)
            self.step = self._global_step
            self.message = self._compose(None, f"the final {what} is {float(loss):.3g}",
                                         exact=False)
        elif out_of_bounds(loss, self.max_loss):
            self._excursion(f"the final {what} is {float(loss):.3g}", loss=float(loss))

    def _detect(self, what: str) -> None:
        self.diverged = True
        self._what = what
        self.step = self._global_step
        self.epoch = self._epoch
        self.model.stop_training = True
        self.message = self._compose(None, what, exact=False)

    # -- locating the step and the cause -------------------------------------------------------
    def locate(self, dataset) -> None:
        """After a stopped `fit`: replay the steps since the last good snapshot one at a time
        on `dataset` (the epoch's batches, `dataset[i]`) and set `step`, `cause` and
        `message`. Leaves the model at the located step."""
        if not self.diverged or self._good is None:
            return
        start_step, batch, epoch, values = self._good
        variables = self._variables()
        for v, a in zip(variables, values):
            v.assign(a)
        good = {v.path: a for v, a in zip(variables, values)}
        last_finite = good
        for offset in range(self.step - start_step):
            x, y = dataset[batch + offset][:2]
            step = start_step + offset + 1
            if not (np.all(np.isfinite(np.asarray(x)))):
                self._settle(step, epoch, "input", "the training batch holds NaN or infinite "
                             "values")
                return
            loss = self.model.train_on_batch(x, y)
            loss = loss[0] if isinstance(loss, (list, tuple)) else loss
            now = {v.path: np.array(keras.ops.convert_to_numpy(v))
                   for v in self.model.trainable_variables}
            problem = self._weights_problem(now)
            if problem is None and must_stop(loss):
                problem = f"the loss is {float(loss):.3g}"
            if problem is None:
                last_finite = now
                continue
            ref = now if all(np.all(np.isfinite(a)) for a in now.values()) else last_finite
            self._settle(step, epoch, self._most_grown(good, ref), problem)
            return
        # The replay did not reproduce it within the window (rounding can differ between the
        # multi-step and the one-step compiled function): keep the window's end.
        self.message = self._compose(None, self._what, exact=False)

    def _most_grown(self, good: dict, now: dict) -> str:
        """The group with the largest change `max|w - w_good| / max(max|w_good|, 1)` (the
        floor keeps zero-initialised biases from dominating)."""
        growth: dict[str, float] = {}
        for v in self.model.trainable_variables:
            before, after = good[v.path], now[v.path]
            if not before.size:
                continue
            change = (float(np.max(np.abs(after - before))) if np.all(np.isfinite(after))
                      else math.inf)
            ratio = change / max(float(np.max(np.abs(before))), 1.0)
            group = group_of(v)
            growth[group] = max(growth.get(group, 0.0), ratio)
        return max(growth, key=growth.get)

    def _settle(self, step: int, epoch: int, cause: str, what: str) -> None:
        self.step, self.epoch, self.cause = step, epoch, cause
        self.message = self._compose(cause, what, exact=True)

    def _compose(self, cause, what: str, exact: bool, head: str | None = None) -> str:
        event = self.excursion
        if head is None and event and event.get("cause") and cause != "input":
            # a stop after an excursion: the advice names where it started
            what = (f"{what}; it had first passed the stability bounds by step "
                    f"{event['first_step']} (epoch {event['first_epoch']}: {event['what']})")
            cause = event["cause"]
        where = (f"at step {self.step}" if exact else f"by step {self.step}")
        head = head or f"Training diverged {where} (epoch {self.epoch + 1}): {what}"
        if cause == "input":
            return (f"{head}. The input is at fault, not a learning rate: check the data files "
                    "(data.data_dir) and any transform applied to them.")
        if cause is None:
            return f"{head}. Lower the learning rates (opt.lr_e, opt.lr_ie, opt.lr_ei)."
        rate = RATE_OF_GROUP[cause]
        value = self.rates.get(rate)
        now = f" (now {value:g})" if isinstance(value, (int, float)) else ""
        extra = (" or the normalization-loss weight loss.norm_weight"
                 if cause != "excitatory" and self.rates.get("norm_weight") is not None else "")
        return (f"{head}; the {cause.replace('_', ' ')} weights grew fastest. Lower "
                f"opt.{rate}{now}{extra}.")
