"""Divergence as an outcome of a run, not a crash or a silent 10 %."""

from __future__ import annotations

import math

import keras
import numpy as np

from ei_keras.optimizers import variable_group

_RATE_OF_GROUP = {"excitatory": "lr_e", "inhibitory_input": "lr_ie",
                  "inhibitory_output": "lr_ei"}


class DivergenceMonitor(keras.callbacks.Callback):
    """Stops training when the loss or the weights become non-finite, and says why.

    After a stop, ``diverged`` is True, ``step`` holds the global training step (1-based) and
    ``epoch`` the epoch (0-based), and ``message`` names the likely cause: the learning rate of
    the variable group whose weights went non-finite or grew largest.

    Args:
        check_weights_every: also scan the weights every this many steps (0: only at epoch end).
        max_abs_weight: weights above this magnitude count as diverged (default 1e3; initial
            weights are O(0.1-10), and gradient clipping can keep exploding weights finite).
    """

    def __init__(self, check_weights_every: int = 0, max_abs_weight: float = 1e3):
        super().__init__()
        self.check_weights_every = int(check_weights_every)
        self.max_abs_weight = float(max_abs_weight)
        self.diverged = False
        self.step = None
        self.epoch = None
        self.message = None
        self._global_step = 0
        self._epoch_start = 0
        self._last_check = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = self._global_step

    def _group_report(self) -> tuple[str | None, str]:
        """The group to blame: the first with non-finite weights, else the largest weight."""
        worst, worst_var, bad = -1.0, None, []
        for v in self.model.trainable_variables:
            a = keras.ops.convert_to_numpy(v)
            if not np.all(np.isfinite(a)):
                bad.append(v)
            elif a.size and float(np.max(np.abs(a))) > worst:
                worst, worst_var = float(np.max(np.abs(a))), v
        if bad:
            names = ", ".join(f"{v.path} ({variable_group(v)})" for v in bad[:4])
            return variable_group(bad[0]), f"non-finite weights in {names}"
        if worst_var is None:
            return None, "no weights"
        return variable_group(worst_var), (f"largest weight {worst_var.path} "
                                           f"({variable_group(worst_var)}) at {worst:.3g}")

    def _stop(self, what: str):
        self.diverged = True
        self.step = self._global_step
        self.epoch = self._epoch
        group, detail = self._group_report()
        rate = _RATE_OF_GROUP.get(group, "lr_e")
        self.message = (
            f"Training diverged at step {self.step} (epoch {self.epoch + 1}): {what}; {detail}. "
            f"Likely cause: the learning rate of the {group or 'excitatory'} weights ({rate}) is "
            f"too large for this configuration; lower {rate}"
            + (" or the normalization-loss weight norm_weight" if rate in ("lr_ie", "lr_ei")
               else "")
            + "."
        )
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        # ``batch`` is the epoch's last finished step: with steps_per_execution = K Keras calls
        # this once per K steps, so the loss is checked (and the step counted) K-grained.
        # The last group of an epoch may be shorter than K: Keras still reports its nominal end.
        steps = (self.params or {}).get("steps")
        done = batch + 1 if not steps else min(batch + 1, steps)
        self._global_step = self._epoch_start + done
        if self.diverged:
            return
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(f"loss is {float(loss)}")
        elif self.check_weights_every and \
                self._global_step - self._last_check >= self.check_weights_every:
            self._last_check = self._global_step
            self._check_weights()

    def _check_weights(self):
        for v in self.model.trainable_variables:
            a = keras.ops.convert_to_numpy(v)
            if not np.all(np.isfinite(a)) or (a.size and np.max(np.abs(a)) > self.max_abs_weight):
                self._stop(f"weight {v.path} is non-finite or above {self.max_abs_weight:g}")
                return

    def on_epoch_end(self, epoch, logs=None):
        if not self.diverged:
            self._check_weights()
