"""Divergence as an outcome of a run, not a crash or a silent 10 %.

`DivergenceMonitor` watches a `fit`: the loss after every call of the compiled step
and, at every snapshot, the weights. A run has diverged when its loss is non-finite or above
`max_loss`, or a weight is non-finite or above `max_abs_weight` in magnitude, during or at
the end of training.

To name the true step and the true cause whatever `steps_per_execution` is, the monitor keeps
a copy of the model's and the optimizer's variables from the last snapshot that passed the
checks (taken at the start of every compiled call, at least every `SNAPSHOT_EVERY`
steps, and at every epoch start). When it detects divergence it stops the `fit`; then
`DivergenceMonitor.locate` restores that copy and replays the steps since, one at a time,
on the same batches of the same epoch, and checks after each step:

- a batch with NaN or infinite values: the *input* is at fault (the data, not a learning rate);
- otherwise the first step after which a weight is non-finite or out of bounds (or the loss
  non-finite or above `max_loss`) is the divergence step, and the learning-rate group to blame
  is the one whose weights changed most relative to their size in the good copy, measured on
  the last state in which every weight was finite.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from ei_keras.optimizers import variable_group

#: The learning rate of each variable group.
RATE_OF_GROUP = {"excitatory": "lr_e", "inhibitory_input": "lr_ie",
                 "inhibitory_output": "lr_ei"}
#: Snapshot (and weight check) at least this often, in training steps.
SNAPSHOT_EVERY = 16
#: A loss above this counts as diverged (chance cross-entropy on 10 classes is 2.3).
MAX_LOSS = 1e3
#: A weight above this magnitude counts as diverged (initial weights are O(0.1-10), and gradient
#: clipping can keep exploding weights finite).
MAX_ABS_WEIGHT = 1e3


def loss_diverged(loss, max_loss: float = MAX_LOSS) -> bool:
    """Whether a loss value means divergence: non-finite or above `max_loss`."""
    if loss is None:
        return False
    loss = float(loss)
    return not math.isfinite(loss) or loss > max_loss


class DivergenceMonitor(keras.callbacks.Callback):
    """Stops training when the loss or the weights diverge, and finds the step and the cause.

    After a stop (and `locate`), `diverged` is True, `step` holds the global training
    step (1-based), `epoch` the epoch (0-based), `cause` is `"input"`, a group name
    (`"excitatory"`, `"inhibitory_input"`, `"inhibitory_output"`) or None, and `message`
    says what happened and what to change.

    Args:
        max_abs_weight: weights above this magnitude count as diverged.
        max_loss: losses above this count as diverged.
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
        self._what = None
        self._global_step = 0
        self._epoch_start = 0
        self._epoch = 0
        self._good = None  # (global step, batch index in epoch, epoch, [arrays])
        self._last_logs = {}

    # -- snapshots -----------------------------------------------------------------------------
    def _variables(self):
        model = self.model
        return list(model.variables) + list(model.optimizer.variables)

    def _weights_problem(self, arrays=None) -> str | None:
        for v in self.model.trainable_variables:
            a = keras.ops.convert_to_numpy(v) if arrays is None else arrays[v.path]
            if not np.all(np.isfinite(a)):
                return f"weight {v.path} is non-finite"
            if a.size and float(np.max(np.abs(a))) > self.max_abs_weight:
                return f"weight {v.path} exceeds {self.max_abs_weight:g} in magnitude"
        return None

    def _snapshot(self, batch: int) -> None:
        variables = self._variables()
        values = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
        problem = self._weights_problem({v.path: a for v, a in zip(variables, values)})
        if problem:
            self._detect(problem)
        else:
            self._good = (self._global_step, batch, self._epoch, values)

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
        if loss_diverged(loss, self.max_loss):
            self._detect(f"the loss is {float(loss):.3g}")

    def on_train_end(self, logs=None):
        if self.diverged:
            return
        problem = self._weights_problem()
        loss = (logs or self._last_logs).get("loss")
        if problem is None and loss_diverged(loss, self.max_loss):
            problem = f"the final training loss is {float(loss):.3g}"
        if problem:
            self._detect(problem)

    def check_final_loss(self, loss, what: str = "test loss") -> None:
        """After training: a final evaluation loss past the bound also means divergence."""
        if not self.diverged and loss_diverged(loss, self.max_loss):
            self.diverged = True
            self.epoch = max(self._epoch, 0)
            self.step = self._global_step
            self.message = self._compose(None, f"the final {what} is {float(loss):.3g}",
                                         exact=False)

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
            if problem is None and loss_diverged(loss, self.max_loss):
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
            group = variable_group(v)
            growth[group] = max(growth.get(group, 0.0), ratio)
        return max(growth, key=growth.get)

    def _settle(self, step: int, epoch: int, cause: str, what: str) -> None:
        self.step, self.epoch, self.cause = step, epoch, cause
        self.message = self._compose(cause, what, exact=True)

    def _compose(self, cause, what: str, exact: bool) -> str:
        where = (f"at step {self.step}" if exact else f"by step {self.step}")
        head = f"Training diverged {where} (epoch {self.epoch + 1}): {what}"
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
