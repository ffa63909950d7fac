"""Populations: many runs of one architecture trained at once, in one compiled program.

A protocol is hundreds of small runs (width 100-500, batch 32); one at a time, most of a run's
time goes to per-step overhead, not arithmetic. A *population* trains P runs of the same
preset, width, depth, batch size and length together: each member keeps its own seed (initial
weights, data order, shift draws), learning rates, `lambda` and shift size, and every member
is exactly the sequential run of its cell (the same `ei_keras.experiment.RunSession`,
the same model, data stream and dual-loss `train_step`; only the loop differs).

How: each member is the Keras model `run_experiment` would build. Their states
`(trainable, non_trainable, optimizer, metrics)` are stacked, and the stateless dual-loss
step (`ei_keras.models.trainers.stateless.dual_loss_step`, the JAX trainer's own
`train_step`) is vectorized over the members: on JAX with `jax.vmap`, scanned over a chunk
of steps (`jax.lax.scan`) in one `jax.jit`; on PyTorch with `torch.func.vmap` (and
`torch.func.vjp`), one vectorized call per step.
The learning rates are the optimizer's variables and `lambda` the I-Norm layers'
`norm_weight` variable, so they are per-member data: one program serves every member. At
each epoch's end the states are written back into the members' models, whose measure
callbacks, evaluation and run directory are the sequential run's
(`ei_keras.experiment.RunSession.finish`); `engine` says `"population"`.

Divergence (`member_step`): a member whose loss or a weight turns non-finite is
*frozen* (its state stops changing; the others go on) and scored as a diverged sequential run
(`status: diverged`, the step, and the cause named by the sequential run's rule: the input,
or the group whose weights grew most since the last finite weight check). A finite
excursion past `ei_keras.scoring.MAX_LOSS` / `MAX_ABS_WEIGHT` is a stability event, not a
stop (`ei_keras.scoring`: the paper's rule), recorded in `metrics.json` under `stability`
with the sequential run's fields and meaning (`ei_keras.divergence.DivergenceMonitor`: first
and last step, first epoch, what, peak loss and weight, group to blame, message): the
compiled step applies the bounds on the sequential run's check schedule (`check_schedule`),
keeps the peaks, and keeps each member's trainable values at its last finite weight check to
name the group (`most_grown`, the monitor's rule).

Backends: JAX and PyTorch (`BACKENDS`). TensorFlow stops with a
`ei_keras.config.ConfigError` naming them.
"""

from __future__ import annotations

import contextlib
import sys
import time

from ei_keras.config import ConfigError
from ei_keras.population._step import (  # re-exported; _step owns them
    HEALTH,
    INPUT_CAUSE,
    LOSS_CHECK,
    check_schedule,
    member_health,
    member_step,
    most_grown,
)
from ei_keras.roles import GROUPS, group_of

__all__ = ["BACKENDS", "HEALTH", "INPUT_CAUSE", "Population", "check_backend", "check_schedule",
           "group_cells", "initial_carry", "member_step", "most_grown",
           "member_chunk", "member_health", "population_key", "train_populations"]

#: The Keras backends with a population engine.
BACKENDS = ("jax", "torch")
#: Host memory for one chunk of input batches (all members, all steps of the chunk).
CHUNK_BYTES = 64 * 2 ** 20
#: Steps per compiled call at most.
MAX_CHUNK_STEPS = 32


def check_backend(backend: str | None = None) -> str:
    """The running backend if it has a population engine, else a `ConfigError`."""
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ConfigError(f"--population trains on {' and '.join(BACKENDS)} only (this is "
                          f"{backend}): run with --backend jax (or torch), or leave "
                          "--population out to train the runs one at a time.")
    return backend


#: The hyperparameters that are state (optimizer or layer variables), so members may differ in
#: them; every other one is a constant of the compiled step and splits populations.
PER_MEMBER_HYPERPARAMETERS = ("lr_e", "lr_ie", "lr_ei", "norm_weight")


def population_key(cfg) -> tuple:
    """What members of one population share (everything that fixes the compiled program and
    the number of steps): preset, width, depth, batch size, training subset, validation size,
    epochs, the inhibitory schedule, `trainable_ei`, `gradnorm_on`, the isolation ablations,
    the shift family, per-epoch validation and measures, the `steps_per_execution` of the
    sequential run (it fixes the divergence checks' schedule, `check_schedule`), and every
    hyperparameter but `PER_MEMBER_HYPERPARAMETERS` (momentum,
    clipping, label smoothing, the optimizer kind are constants of the step). Seeds, learning
    rates, `lambda` and the shift size may differ."""
    from ei_keras.experiment import resolve

    resolved = resolve(cfg)
    cfg, hp = resolved["config"], resolved["hyperparameters"]
    if hp.get("norm_weight_schedule"):
        raise ConfigError("--population does not run lambda schedules "
                          "(loss.norm_weight_schedule, a fit callback): train these runs "
                          "without --population")
    fixed = tuple(sorted((k, repr(v)) for k, v in hp.items()
                         if k not in PER_MEMBER_HYPERPARAMETERS))
    return (cfg.preset, resolved["steps_per_execution"], cfg.model.width, cfg.model.depth,
            cfg.model.trainable_ei, cfg.model.gradnorm_on, cfg.model.task_trains_inhibitory,
            cfg.model.norm_trains_excitatory,
            cfg.data.batch_size, cfg.data.train_subset, cfg.data.validation_size,
            cfg.data.shift, cfg.train.epochs, cfg.train.inhibitory_steps,
            cfg.train.inhibitory_every, cfg.train.validate_each_epoch,
            cfg.measures.moments, cfg.measures.alignment, cfg.measures.probe_size,
            cfg.measures.weights,
            cfg.data.test_subset, fixed)


def group_cells(todo, size: int | None = None) -> list[list]:
    """`[(run dir, RunConfig), ...]` in populations: cells with the same
    `population_key` (a protocol's sampled widths: one population per width), at most
    `size` members each (None: no limit), in the order the cells come."""
    groups: dict[tuple, list] = {}
    for cell in todo:
        groups.setdefault(population_key(cell[1]), []).append(cell)
    out = []
    for cells in groups.values():
        step = size or len(cells)
        out += [cells[i:i + step] for i in range(0, len(cells), step)]
    return out


def _engine():
    """The running backend's population step module (chosen once per population)."""
    import keras

    if keras.backend.backend() == "torch":
        from ei_keras.population import _torch as engine
    else:
        from ei_keras.population import _jax as engine
    return engine


def _divergence(rates):
    """A member's divergence record: an `ei_keras.divergence.DivergenceMonitor` (its fields,
    messages and `check_final_loss`, as `RunSession.finish` reads them) filled from the
    population's per-member record instead of watching a `fit`."""
    from ei_keras.divergence import DivergenceMonitor

    class _Divergence(DivergenceMonitor):
        def record(self, health, p: int, model, steps: int, total: int) -> None:
            """Set the stop and the stability event of member `p` from the compiled step's
            `health` (host arrays, `HEALTH`; at any epoch's end) of a training of `total`
            steps, `steps` per epoch; `model` holds the member's state."""
            from ei_keras.optimizers import GROUPS
            from ei_keras.scoring import MAX_ABS_WEIGHT

            def group(index):
                return None if index < 0 else GROUPS[index]

            paths = [v.path for v in model.trainable_variables]
            first = int(health["first_step"][p])
            if first >= 0 and self.excursion is None:
                by_loss = int(health["first_kind"][p]) == LOSS_CHECK
                value = float(health["first_value"][p])
                what = (f"the loss is {value:.3g}" if by_loss else
                        f"weight {paths[int(health['first_var'][p])]} exceeds "
                        f"{MAX_ABS_WEIGHT:g} in magnitude")
                # The loss is checked at a step's end, the weights at the next step's start
                # (an epoch's last step: at the next epoch's start; training's: at its end).
                epoch = ((first - 1) // steps if by_loss or first % steps or first == total
                         else first // steps)
                cause = group(int(health["event_cause"][p]))
                head = (f"Training passed the stability bounds by step {first} (epoch "
                        f"{epoch + 1}): {what}; it trained on and is scored by its final "
                        "accuracy")
                self.excursion = {"first_step": first, "first_epoch": epoch + 1,
                                  "what": what, "cause": cause,
                                  "message": self._compose(cause, what, exact=False,
                                                           head=head)}
            if self.excursion is not None:
                peaks = (float(health["peak_loss"][p]), float(health["peak_weight"][p]))
                self.excursion.update({
                    "last_step": int(health["last_step"][p]),
                    "peak_loss": peaks[0] if peaks[0] >= 0 else None,
                    "peak_abs_weight": peaks[1] if peaks[1] >= 0 else None})
                self.excursion = {k: self.excursion[k] for k in (
                    "first_step", "first_epoch", "last_step", "what", "peak_loss",
                    "peak_abs_weight", "cause", "message")}
            if not health["alive"][p] and not self.diverged:
                self.diverged = True
                self.step = int(health["bad_step"][p])
                self.epoch = (self.step - 1) // steps
                cause = int(health["bad_cause"][p])
                var = int(health["bad_var"][p])
                if cause == INPUT_CAUSE:
                    self.cause, what = "input", ("the training batch holds NaN or infinite "
                                                 "values")
                else:
                    self.cause = group(cause)
                    what = (f"weight {paths[var]} is non-finite" if var >= 0 else
                            f"the loss is {float(health['bad_loss'][p]):.3g}")
                self.message = (self._compose(self.cause, what, exact=True)
                                + " The member was frozen there.")
            # What `check_final_loss` reads: the end of training, the model, the last
            # weight check within the bounds (training's end, when no event came before).
            self._global_step, self._epoch = total, (total - 1) // steps
            self.set_model(model)
            if self.excursion is None:
                self._bounded = self._trainable_arrays()

    return _Divergence(rates=rates)


def _state(model, metrics_variables):
    """A member model's `(trainable, non_trainable, optimizer, metrics)` values (metrics
    zeroed: the template's variables, in the template's order)."""
    from keras import ops

    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.optimizer.variables],
            [ops.zeros_like(v.value) for v in metrics_variables])


def initial_carry(models, metrics_variables):
    """The population's starting state `(states, buffer, health, step)`: the members'
    stacked states (metrics zeroed, in the order of `metrics_variables`), their trainable
    values as the first weight check (`member_step`), all alive, no divergence or stability
    event (`HEALTH`), step 0."""
    import numpy as np

    n = len(models)
    engine = _engine()
    states = engine.stack([_state(m, metrics_variables) for m in models])
    buffer = engine.stack([_state(m, metrics_variables)[0] for m in models])
    health = {k: (np.ones(n, bool) if k == "alive" else
                  np.full(n, -1, np.dtype(dtype))) for k, dtype in HEALTH.items()}
    return states, buffer, health, np.int32(0)


def member_chunk(template, steps: int, spe: int):
    """The compiled `chunk(carry, xs, ys) -> carry` of the running backend: `len(xs)`
    steps of every member (`xs`: `(steps, members, batch, ...)`), `member_step`
    vectorized over the members; `steps` per epoch and the sequential run's
    `steps_per_execution` `spe` fix the check schedule (`check_schedule`)."""
    groups = [GROUPS.index(group_of(v)) for v in template.trainable_variables]
    return _engine().make_chunk(template, groups, (steps, spe))


def _assign(model, state) -> None:
    """Write one member's host state back into its model."""
    trainable, non_trainable, optimizer, _ = state
    for v, a in zip(model.trainable_variables, trainable):
        v.assign(a)
    for v, a in zip(model.non_trainable_variables, non_trainable):
        v.assign(a)
    for v, a in zip(model.optimizer.variables, optimizer):
        v.assign(a)


class Population:
    """Trains opened `ei_keras.experiment.RunSession` runs of one
    `population_key` together.

    Args:
        runs: opened sessions (their models built, their data loaded).
        printer: progress output (one line per epoch of the population).
        name: the population's label in progress lines.
    """

    def __init__(self, runs, printer=print, name: str = "population"):
        check_backend()
        if not runs:
            raise ValueError("Expected at least one run in a population.")
        keys = {population_key(r.cfg) for r in runs}
        if len(keys) > 1:
            raise ValueError("Every member of a population must share its architecture, batch "
                             "size, length and measures (population_key); received "
                             f"{len(keys)} different ones.")
        self.runs, self.printer, self.name = list(runs), printer, name
        self.template = self.runs[0].model
        for r in self.runs:
            if not r.model.optimizer.built:
                r.model.optimizer.build(r.model.trainable_variables)
        x, y = self.runs[0].train[0]
        # Keras builds the compiled metrics (accuracy) on a model's first use: evaluate one
        # batch so that the template's metrics variables exist (their values are reset).
        self.template.evaluate(x, y, batch_size=len(x), verbose=0)
        self.divergence = [_divergence(r.hp) for r in self.runs]

    def _batches(self, index: int, count: int):
        import numpy as np

        first = [r.train[index] for r in self.runs]
        xs = np.empty((count, len(self.runs), *first[0][0].shape), np.float32)
        ys = np.empty((count, len(self.runs), *first[0][1].shape), first[0][1].dtype)
        for k in range(count):
            for p, r in enumerate(self.runs):
                xs[k, p], ys[k, p] = first[p] if k == 0 else r.train[index + k]
        return xs, ys

    def _chunks(self, steps: int) -> list[int]:
        """The steps of each compiled call in an epoch: equal chunks (each new length is a new
        compilation) of at most the `CHUNK_BYTES` / `MAX_CHUNK_STEPS` budget; a
        smaller last batch goes alone."""
        train = self.runs[0].train
        full = steps if len(train[steps - 1][0]) == len(train[0][0]) else steps - 1
        budget = max(1, min(MAX_CHUNK_STEPS, CHUNK_BYTES // (len(self.runs) *
                                                            train[0][0].nbytes)))
        k = max(d for d in range(1, min(budget, full or 1) + 1) if full % d == 0)
        if k < budget // 2:  # no good divisor: full chunks and one shorter
            k = budget
        out = [k] * (full // k) + ([full % k] if full % k else [])
        return out + [1] * (steps - full)

    def train(self) -> list[dict]:
        """Train every member for the configured epochs; returns each member's history
        (`{column: [value per epoch]}`). Members' models hold their final states."""
        from ei_keras import interrupt
        engine = _engine()

        runs, template = self.runs, self.template
        metrics_variables = template.metrics_variables
        n = len(runs)
        epochs = runs[0].cfg.train.epochs
        steps = len(runs[0].train)
        chunk = member_chunk(template, steps, runs[0].spe)
        carry = initial_carry([r.model for r in runs], metrics_variables)
        histories = [{} for _ in runs]
        chunks = self._chunks(steps)
        start = time.time()
        for epoch in range(epochs):
            for r in runs:
                r.train.set_epoch(epoch)
            states = carry[0]
            carry = ((*states[:3], [engine.zeros_like(m) for m in states[3]]), *carry[1:])
            i = 0
            for count in chunks:
                carry = chunk(carry, *self._batches(i, count))
                i += count
                interrupt.raise_if_requested()
            host = engine.to_host(carry)
            self._epoch_end(epoch, host, histories, metrics_variables, steps)
            done = (epoch + 1) * steps
            rate = done * n / max(time.time() - start, 1e-9)
            eta = (epochs * steps - done) * n / rate
            frozen = sum(d.diverged for d in self.divergence)
            self.printer(f"  [{self.name}] epoch {epoch + 1}/{epochs}: {n} members"
                         + (f" ({frozen} frozen)" if frozen else "")
                         + f", {rate:.0f} member-steps/s, ETA {eta:.0f} s")
        self.carry = carry
        return histories

    def _epoch_end(self, epoch, host, histories, metrics_variables, steps) -> None:
        states, _, health, _ = host
        for p, r in enumerate(self.runs):
            div = self.divergence[p]
            if div.diverged:  # frozen in an earlier epoch: its history stopped there
                continue
            member = [[a[p] for a in part] for part in states]
            _assign(r.model, member)
            div.record(health, p, r.model, steps, r.cfg.train.epochs * steps)
            for v, a in zip(metrics_variables, member[3]):
                v.assign(a)
            logs = {k: float(v) for k, v in self.template.get_metrics_result().items()}
            if r.cfg.train.validate_each_epoch and r.validation is not None:
                val = r.model.evaluate(*r.validation, batch_size=1000, verbose=0,
                                       return_dict=True)
                logs.update({f"val_{k}": float(v) for k, v in val.items()})
            for cb in r.measure_callbacks:
                cb.set_model(r.model)
                cb.on_epoch_end(epoch, logs)
            for key, value in logs.items():
                histories[p].setdefault(key, []).append(value)

    def finish(self, histories) -> list[dict]:
        """Each member's `RunSession.finish` (its run directory's files)."""
        out = []
        for p, r in enumerate(self.runs):
            out.append(r.finish(histories[p], self.divergence[p]))
        return out


def train_populations(todo, size: int | None = None, printer=print, overwrite: bool = False,
                      label: str = "population") -> list[dict]:
    """Train `[(run dir, RunConfig), ...]` as populations (`group_cells`) and write
    each run directory; returns every run's `metrics.json` contents, in `todo`'s order.

    Raises:
        ConfigError: the backend has no population engine (before anything is written), or an
            invalid configuration.
    """
    from ei_keras.experiment import RunSession, resolve

    check_backend()
    order = {id(cell): i for i, cell in enumerate(todo)}
    populations = group_cells(todo, size)
    results = [None] * len(todo)
    quiet = (lambda *a: None)
    start, finished = time.time(), 0
    for index, cells in enumerate(populations, start=1):
        name = f"{label} population {index}/{len(populations)}"
        cfg0 = resolve(cells[0][1])["config"]
        printer(f"[{name}] {len(cells)} members: {cfg0.preset}, width {cfg0.model.width}, "
                f"{cfg0.train.epochs} epochs")
        stacks = [contextlib.ExitStack() for _ in cells]
        runs = []
        try:
            for (run_dir, cfg), stack in zip(cells, stacks):
                run = RunSession(cfg, run_dir, printer=quiet, overwrite=overwrite,
                                 engine="population")
                run.open(stack)
                runs.append(run)
            population = Population(runs, printer=printer, name=name)
            histories = population.train()
            metrics = population.finish(histories)
        except BaseException:
            for stack in stacks:  # nothing half-written: each staged folder is removed
                stack.__exit__(*sys.exc_info())
            raise
        for stack, run, m, cell in zip(stacks, runs, metrics, cells):
            stack.close()
            run.printer = printer
            run.done(m)
            results[order[id(cell)]] = m
        finished += len(cells)
        elapsed = time.time() - start
        diverged = sum(m["status"] == "diverged" for m in metrics)
        printer(f"[{name}] done: {len(cells)} members ({diverged} diverged); {finished}/"
                f"{len(todo)} runs in {elapsed:.0f} s, ETA "
                f"{elapsed / finished * (len(todo) - finished):.0f} s")
    return results
