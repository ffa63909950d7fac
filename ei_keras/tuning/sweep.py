"""Random-search sweeps of one preset at one luminosity with KerasTuner, on one machine or many.

`run_sweep` runs a `keras_tuner.RandomSearch` (`SweepTuner`) whose trials are
`ei_keras.tuning.EIHyperModel` runs. The tuner's state lives in
`<out>/<preset>_r<lum>/` (KerasTuner's project directory) and the run directories in
`<out>/runs/<preset>/r<lum>/trial_<id>/`, where `ei-keras report <out>` reads them.

**Resuming.** Rerunning the same command resumes: KerasTuner reloads its oracle
(`overwrite=False`), keeps the finished trials and puts the trial that was running when the
process died back in its retry queue, so it runs again under the same id (same values, same
seed). Run directories are written atomically (complete or absent); a killed attempt's hidden
staging folders are removed when the trial is redone, and a run directory already complete for
the same trial and values is reused, so no trial appears twice. A sweep directory started with
another search space (another `--config`, `--smoke` or `--epochs`) or another `--seed`
is refused.

**Distributed.** The same command runs as chief or worker through KerasTuner's distributed mode,
chosen by the environment: `KERASTUNER_TUNER_ID` (`chief` for the chief, any other unique
name for a worker), `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` (where the chief
listens; gRPC, needs `grpcio` and `protobuf`: `pip install ei-keras[distributed]`). The
chief only hands out trials and records results; workers train. Waits are bounded by
`timeout` (KerasTuner itself would wait forever for a dead worker, and a worker waits an hour
for a lost chief):

- workers send a heartbeat every `timeout / 6` s (at most 30 s) while they train; the chief
  hands a trial whose worker has been silent for `timeout` s to another worker, and gives up
  (exit code 4, a message saying how to resume) when no worker has contacted it for
  `timeout` s with trials left;
- a worker that cannot reach the chief for `timeout` s exits (code 5) with a message.
"""

from __future__ import annotations

import functools
import gc
import os
import socket
import threading
import time
from pathlib import Path

import keras_tuner

from ei_keras.run_directory import check_keras_file, check_writable_folder, lum_dir
from ei_keras.tuning.hypermodel import OBJECTIVE, EIHyperModel

DEFAULT_TIMEOUT = 900.0
EXIT_NO_WORKERS = 4
EXIT_CHIEF_LOST = 5
_print = functools.partial(print, flush=True)


class SweepTimeoutError(RuntimeError):
    """The chief gave up waiting for workers; the sweep's state is saved for resuming."""


def distributed_role() -> str:
    """`"single"`, `"chief"` or `"worker"`, from KerasTuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")
               if v not in os.environ]
    if missing:
        raise ValueError(f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not: set "
                         "KERASTUNER_TUNER_ID (chief, or a unique worker name) and "
                         "KERASTUNER_ORACLE_PORT, or unset KERASTUNER_ORACLE_IP.")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


class _SweepOracleMixin:
    """Progress lines and the bookkeeping the chief's watchdog needs, on top of any KerasTuner
    oracle: when each running trial's worker was last heard from, and requeueing a trial whose
    worker went silent. A result reported twice for a trial (possible only after a requeue) is
    recorded once."""

    def __init__(self, *args, label: str = "sweep", printer=_print, announce: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.label = label
        self.printer = printer
        self.announce = announce
        self.last_contact = time.monotonic()
        self._heard = {}  # trial_id -> monotonic time its worker was last heard from

    def _contact(self, trial_id=None):
        now = time.monotonic()
        self.last_contact = now
        if trial_id is not None and trial_id in self._heard:
            self._heard[trial_id] = now

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        self._contact()
        trial = super().create_trial(tuner_id)
        if trial.status == "RUNNING":
            self._heard[trial.trial_id] = time.monotonic()
            if self.announce:
                self.printer(f"[sweep {self.label}] trial {trial.trial_id} -> {tuner_id} "
                             f"({self._count_finished()}/{self.planned_trials or '?'} finished)")
        return trial

    def get_trial(self, trial_id):
        self._contact(trial_id)  # workers' heartbeats are get_trial calls
        return super().get_trial(trial_id)

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self._contact(trial_id)
        return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        self._contact()
        trial_id = trial.trial_id
        if trial_id in self.end_order:
            self.printer(f"[sweep {self.label}] trial {trial_id}: second result ignored (the "
                         "trial had been handed to another worker and already finished)")
            for tuner_id, ongoing in list(self.ongoing_trials.items()):
                if ongoing.trial_id == trial_id:
                    self.ongoing_trials.pop(tuner_id)
            return
        if trial_id in self._retry_queue:  # requeued, but its first worker did finish it
            self._retry_queue.remove(trial_id)
        super().end_trial(trial)
        self._heard.pop(trial_id, None)
        self.save()  # KerasTuner saves before dropping the trial from ongoing_trials
        done = self.trials[trial_id]
        best = self.get_best_trials(1)
        best_text = (f"best {best[0].score:.4f} (trial {best[0].trial_id})"
                     if best and best[0].score is not None else "no score yet")
        score = "" if done.score is None else f" {OBJECTIVE}={done.score:.4f}"
        self.printer(f"[sweep {self.label}] trial {trial_id} {done.status.lower()}{score}; "
                     f"{self._count_finished()}/{self.planned_trials or '?'} finished, "
                     f"{best_text}")

    def _count_finished(self) -> int:
        return len(set(self.end_order))

    @property
    def planned_trials(self) -> int | None:
        """How many trials the search makes (None when the oracle decides as it goes)."""
        return getattr(self, "max_trials", None)

    @keras_tuner.synchronized
    def snapshot(self) -> dict:
        """A consistent view of the search for the watchdog."""
        return {"created": len(self.trials), "finished": self._count_finished(),
                "ongoing": {k: t.trial_id for k, t in self.ongoing_trials.items()},
                "retry": list(self._retry_queue), "tuner_ids": set(self.tuner_ids),
                "last_contact": self.last_contact}

    @keras_tuner.synchronized
    def requeue_silent(self, timeout: float) -> list[tuple[str, str, float]]:
        """Give back the trials whose workers have been silent for `timeout` seconds; return
        `[(tuner_id, trial_id, silent seconds)]`."""
        now = time.monotonic()
        stale = []
        for tuner_id, trial in list(self.ongoing_trials.items()):
            silent = now - self._heard.get(trial.trial_id, now)
            if silent > timeout:
                self.ongoing_trials.pop(tuner_id)
                self.tuner_ids.discard(tuner_id)
                if trial.trial_id not in self._retry_queue:
                    self._retry_queue.append(trial.trial_id)
                stale.append((tuner_id, trial.trial_id, silent))
        if stale:
            self.save()
        return stale


class SweepOracle(_SweepOracleMixin, keras_tuner.oracles.RandomSearchOracle):
    """KerasTuner's random-search oracle with the sweep's progress and watchdog bookkeeping."""


class HyperbandSweepOracle(_SweepOracleMixin, keras_tuner.oracles.HyperbandOracle):
    """KerasTuner's Hyperband oracle with the sweep's progress and watchdog bookkeeping."""


class BayesianSweepOracle(_SweepOracleMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    """KerasTuner's Bayesian-optimization oracle (Gaussian process; needs scikit-learn:
    `pip install ei-keras[bayesian]`) with the sweep's progress and watchdog bookkeeping."""


#: `--tuner` name -> oracle class.
TUNERS = {"random": SweepOracle, "hyperband": HyperbandSweepOracle,
          "bayesian": BayesianSweepOracle}
#: Hyperband's halving factor and the fewest epochs its largest bracket trains (`--smoke`
#: fixes the space's epochs at 1, too few for a bracket).
HYPERBAND_FACTOR = 3
HYPERBAND_MIN_MAX_EPOCHS = 3


class SweepTuner(keras_tuner.Tuner):
    """A KerasTuner tuner over an `EIHyperModel`: random search, Hyperband or Bayesian
    optimization (`kind`), objective `val_accuracy` (max, on the held-out validation
    split). The hypermodel compiles its models; this tuner is given no `optimizer=` or
    `loss=`. It passes each trial's id to the hypermodel (the run's seed and folder name),
    and for Hyperband the trial's epoch budget (each Hyperband trial trains from scratch for
    its budget: run directories stay independent, complete runs).

    Args:
        hypermodel: an `EIHyperModel`.
        hyperparameters: the search space (`keras_tuner.HyperParameters`); entries the
            hypermodel does not declare are refused (`allow_new_entries=False`).
        max_trials: number of trials (random, bayesian; Hyperband sizes itself from the
            space's `epochs`).
        seed: the oracle's seed (>= 1; KerasTuner replaces 0 by a random seed).
        directory, project_name: where KerasTuner keeps its state.
        printer: progress output.
        kind: `"random"`, `"hyperband"` or `"bayesian"` (`TUNERS`).
    """

    def __init__(self, hypermodel: EIHyperModel, hyperparameters, max_trials: int, seed: int,
                 directory, project_name: str, printer=_print, kind: str = "random",
                 **kwargs):
        if kind not in TUNERS:
            raise ValueError(f"Expected --tuner to be one of {', '.join(TUNERS)}. Received: "
                             f"--tuner {kind!r}")
        role = distributed_role()
        common = {"objective": keras_tuner.Objective(OBJECTIVE, "max"), "seed": seed,
                  "hyperparameters": hyperparameters, "allow_new_entries": False,
                  "tune_new_entries": False, "label": hypermodel.label, "printer": printer,
                  "announce": role == "chief"}
        if kind == "hyperband":
            epochs = hyperparameters.values.get("epochs", HYPERBAND_MIN_MAX_EPOCHS)
            oracle = HyperbandSweepOracle(max_epochs=max(int(epochs), HYPERBAND_MIN_MAX_EPOCHS),
                                          factor=HYPERBAND_FACTOR, **common)
        elif kind == "bayesian":
            _require_scikit_learn()
            oracle = BayesianSweepOracle(max_trials=max_trials,
                                         num_initial_points=max(2, min(10, max_trials // 3)),
                                         **common)
        else:
            oracle = SweepOracle(max_trials=max_trials, **common)
        hypermodel.tuner_kind = kind
        super().__init__(oracle=oracle, hypermodel=hypermodel, directory=str(directory),
                         project_name=project_name, overwrite=False, **kwargs)
        self.kind = kind
        self.printer = printer
        self.current_trial_id = None

    def run_trial(self, trial, *args, **kwargs):
        self.current_trial_id = trial.trial_id
        values = trial.hyperparameters.values
        if "tuner/epochs" in values:  # Hyperband's budget for this trial
            kwargs["epochs"] = values["tuner/epochs"]
        try:
            return super().run_trial(trial, *args, trial_id=trial.trial_id,
                                     tuner_id=self.tuner_id, **kwargs)
        finally:
            self.current_trial_id = None

    def load_model(self, trial):
        """The trained model of `trial`, read from its run directory's `model.keras`
        (written when the sweep ran with `save_models=True`)."""
        import keras

        path = self.hypermodel.run_dir(trial.trial_id) / "model.keras"
        if not path.is_file():
            raise ValueError(
                f"Trial {trial.trial_id} has no saved model ({path}). Run the sweep with "
                "save_models=True (--save-models), or rebuild and retrain its configuration: "
                "tuner.hypermodel.build(tuner.get_best_hyperparameters()[0]).")
        return keras.models.load_model(check_keras_file(path))


# --------------------------------------------------------------------------------------------
# Bounded waits


def _require_scikit_learn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ValueError("--tuner bayesian needs scikit-learn (KerasTuner's Gaussian process): "
                         "pip install 'ei-keras[bayesian]'") from None


def _port_open(ip: str, port: int, wait: float = 2.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=wait):
            return True
    except OSError:
        return False


class _WorkerWatch(threading.Thread):
    """On a worker: heartbeats to the chief while a trial trains, and an exit when the chief
    has been unreachable for `timeout` seconds (KerasTuner's client would wait an hour)."""

    def __init__(self, tuner: SweepTuner, timeout: float, printer=_print):
        super().__init__(daemon=True, name="ei-keras-worker-watch")
        self.tuner = tuner
        self.timeout = float(timeout)
        self.interval = max(0.5, min(30.0, self.timeout / 6))
        self.ip = os.environ["KERASTUNER_ORACLE_IP"]
        self.port = int(os.environ["KERASTUNER_ORACLE_PORT"])
        self.printer = printer
        self._beating = None

    def _beat(self, trial_id):
        if self._beating is not None and self._beating.is_alive():
            return  # the previous heartbeat is still waiting for the chief

        def call():
            try:
                self.tuner.oracle.get_trial(trial_id)
            except Exception:  # noqa: BLE001  (the reachability check below decides)
                pass

        self._beating = threading.Thread(target=call, daemon=True)
        self._beating.start()

    def run(self):
        lost_since = None
        while True:
            time.sleep(self.interval)
            if _port_open(self.ip, self.port):
                lost_since = None
                if self.tuner.current_trial_id is not None:
                    self._beat(self.tuner.current_trial_id)
                continue
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > self.timeout:
                trial = self.tuner.current_trial_id
                self.printer(
                    f"error: worker {self.tuner.tuner_id}: the chief at {self.ip}:{self.port} "
                    f"has been unreachable for {self.timeout:.0f} s; exiting. "
                    + (f"Trial {trial} was running here; it is redone when the sweep is "
                       "resumed. " if trial else "")
                    + "Restart the chief and the workers with the same command to resume.")
                os._exit(EXIT_CHIEF_LOST)


def _serve_as_chief(tuner: SweepTuner, timeout: float, printer=_print, poll: float = 0.5):
    """Run KerasTuner's chief (gRPC server) in a thread and watch it: requeue trials of silent
    workers, stop when every trial is finished, give up after `timeout` s without workers."""
    oracle: SweepOracle = tuner.oracle
    failure = []

    def serve():
        try:
            tuner.search(verbose=0)
        except BaseException as e:  # noqa: BLE001  (reported by the main thread)
            failure.append(e)

    server = threading.Thread(target=serve, daemon=True, name="ei-keras-chief")
    server.start()
    ip, port = os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"]
    s = oracle.snapshot()
    printer(f"[sweep {tuner.hypermodel.label}] chief listening on {ip}:{port} for "
            f"{oracle.max_trials} trials"
            + (f" ({s['finished']} finished trials kept)" if s["finished"] else "")
            + (f", interrupted trial(s) {s['retry']} to be redone" if s["retry"] else "")
            + f"; waiting for workers (bounded: {timeout:.0f} s)")
    oracle.last_contact = time.monotonic()
    all_done_since = None
    grace = min(float(timeout), 30.0)
    while True:
        time.sleep(poll)
        if failure:
            raise failure[0]
        if not server.is_alive():  # KerasTuner's own stop: every worker told to stop
            return
        for tuner_id, trial_id, silent in oracle.requeue_silent(timeout):
            printer(f"[sweep {tuner.hypermodel.label}] worker {tuner_id} silent for "
                    f"{silent:.0f} s: trial {trial_id} handed back for another worker")
        s = oracle.snapshot()
        done = (s["created"] >= oracle.max_trials and not s["ongoing"] and not s["retry"])
        if done:
            all_done_since = all_done_since or time.monotonic()
            if not s["tuner_ids"]:
                time.sleep(1.0)  # let the last "stop" answer reach its worker
                return
            if time.monotonic() - all_done_since > grace:
                printer(f"[sweep {tuner.hypermodel.label}] all trials finished; workers "
                        f"{sorted(s['tuner_ids'])} never asked for more work (gone?); "
                        "stopping the chief.")
                return
            continue
        silent = time.monotonic() - s["last_contact"]
        if not s["ongoing"] and silent > timeout:
            raise SweepTimeoutError(
                f"No worker has contacted the chief for {silent:.0f} s (timeout {timeout:.0f} "
                f"s) with {s['finished']}/{oracle.max_trials} trials finished"
                + (f" and trials {s['retry']} waiting to be redone" if s["retry"] else "")
                + f". The sweep state is saved in {tuner.project_dir}: restart the chief and "
                "the workers with the same command to resume.")


# --------------------------------------------------------------------------------------------


def _project_tuner(project_dir: Path) -> str:
    """The `--tuner` of a sweep's project folder, from its name (`<preset>_r<lum>` for
    random search, `..._<tuner>` for the others: `run_sweep`)."""
    suffix = project_dir.name.rsplit("_", 1)[-1]
    return suffix if suffix in TUNERS and suffix != "random" else "random"


def _check_one_tuner(out: Path, tuner: str) -> None:
    """Refuse a second tuner in a sweep folder: its trials would share the run directories'
    ids with the first tuner's, and a report of the folder would pool both searches."""
    if not out.is_dir():
        return
    others = sorted({_project_tuner(d.parent) for d in out.glob("*/oracle.json")} - {tuner})
    if others:
        raise ValueError(f"--out {out} holds a {others[0]} sweep; a sweep folder holds one "
                         f"tuner's trials (a report pools every run under it): choose another "
                         f"--out for --tuner {tuner}.")


def _check_existing_project(project_dir: Path, hp, seed: int) -> None:
    """Refuse to resume a sweep directory started with another space or seed; name the cause
    of unreadable tuner state instead of a bare traceback."""
    import json

    from ei_keras.tuning.space import describe_difference, space_signature

    oracle_file = project_dir / "oracle.json"
    if not oracle_file.is_file():
        return
    advice = (f"The run directories are intact: delete {project_dir} and rerun the same "
              "command; finished trials are then reused from their run directories (same "
              "seed, same configurations).")
    files = [oracle_file, *sorted(project_dir.glob("trial_*/trial.json"))]
    for path in files:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"Unreadable tuner state {path} ({e}), probably from a process "
                             f"killed while writing it. {advice}") from None
        if path == oracle_file:
            oracle_state = state
    theirs, ours = space_signature(oracle_state["hyperparameters"]), space_signature(hp)
    if theirs != ours:
        raise ValueError(
            f"{project_dir} holds a sweep with another search space "
            f"({describe_difference(theirs, ours)}): rerun with the --config, --smoke and "
            "--epochs it was started with, or choose another --out.")
    if oracle_state.get("seed") != seed:
        raise ValueError(f"{project_dir} holds a sweep started with --seed "
                         f"{oracle_state.get('seed')}, not {seed}: rerun with that seed, or "
                         "choose another --out.")


def run_sweep(config_path=None, preset: str = "ei_ln", luminosity: float = 0.75,
              trials: int = 30, out_dir="runs/sweeps", smoke: bool = False,
              epochs: int | None = None, seed: int = 1, timeout: float = DEFAULT_TIMEOUT,
              data_dir=None, save_models: bool = False, printer=_print,
              freeze_gc: bool = False, tuner: str = "random") -> dict:
    """Run (or resume, or join as a distributed chief/worker) a sweep.

    Args:
        config_path: a tuner configuration file (`tuner_configs/ei.json`, ...); None for the
            preset family's own (the committed file, or the same space generated in memory).
        preset: the zoo preset swept.
        luminosity: the shift half-width `r` (training stream and test set).
        trials: number of random configurations (paper: 30).
        out_dir: the sweep root; tuner state in `<out>/<preset>_r<lum>`, run directories in
            `<out>/runs/<preset>/r<lum>/trial_<id>`.
        smoke: tiny trials for CI (width 8 or 16, 1 epoch, 128 train / 128 test samples, no
            moments or alignment measures, no jit compilation).
        epochs: fix the number of epochs (overrides the file's; a different number is a
            different search space, so it cannot resume a sweep started without it).
        seed: the oracle's sampling seed (>= 1). The same seed draws the same configurations,
            so trial `i` of `ei`, `ei_ln` and `e_ln` share values and can be paired.
        timeout: bound on distributed waits in seconds (see the module docstring).
        data_dir: Fashion-MNIST folder (`data.data_dir`).
        save_models: keep `model.keras` in each run directory (for `get_best_models`).
        printer: progress output.
        freeze_gc: move the objects alive now out of the garbage collector's sight (for a
            process that only sweeps, like the CLI's: KerasTuner collects twice per trial, and
            with TensorFlow, torch and Keras loaded each full collection walks millions of
            import-time objects). Off by default: it changes the whole process.
        tuner: `"random"` (the paper's protocol), `"hyperband"` or `"bayesian"`
            (`TUNERS`; distributed mode runs random search only).

    Returns:
        `{"role", "project_dir", "runs_dir", "finished", "best_trial", "best_value",
        "seconds"}` (`finished`/`best_*` are None on a worker, which does not hold the
        oracle).

    Raises:
        ValueError: an invalid configuration file (the message names the field), a preset
            outside the file's family, or a sweep directory started with another space/seed.
        SweepTimeoutError: the chief found no worker within `timeout` s (state saved).
    """
    from ei_keras.tuning.space import (
        default_config_path,
        describe_difference,
        family,
        load_tuner_config,
        resize_space,
        space_signature,
        tuner_config,
        validate_tuner_config,
    )

    start = time.time()
    role = distributed_role()
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"Expected `trials` to be an integer >= 1. Received: trials={trials!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 1:
        raise ValueError(f"Expected `seed` to be an integer >= 1 (KerasTuner draws a random "
                         f"seed for 0). Received: seed={seed!r}")
    if not timeout > 0:
        raise ValueError(f"Expected `timeout` > 0 seconds. Received: timeout={timeout!r}")
    if tuner not in TUNERS:
        raise ValueError(f"Expected --tuner to be one of {', '.join(TUNERS)}. Received: "
                         f"--tuner {tuner!r}")
    if role != "single" and tuner != "random":
        raise ValueError(f"Distributed sweeps (KERASTUNER_* set) run --tuner random only. "
                         f"Received: --tuner {tuner}; unset KERASTUNER_ORACLE_IP to run it "
                         "on one machine.")
    if config_path is None:
        config_path = default_config_path(preset)
    loaded = (load_tuner_config(config_path) if config_path is not None
              else validate_tuner_config(tuner_config(family(preset)), "generated space"))
    if preset not in loaded.presets:
        raise ValueError(f"{config_path or 'The search space'} is for presets "
                         f"{list(loaded.presets)}, not {preset!r}; use tuner_configs/"
                         f"{family(preset)}.json.")
    hp = resize_space(loaded.hyperparameters, epochs=epochs, smoke=smoke)
    out = check_writable_folder(out_dir)
    project_name = f"{preset}_{lum_dir(luminosity)}" + ("" if tuner == "random" else
                                                         f"_{tuner}")
    if role != "worker":
        _check_one_tuner(out, tuner)
        _check_existing_project(out / project_name, hp, seed)
    if role != "chief":  # bad data files: one error now, not a failed trial in the record
        from ei_keras.data import load_fashion_mnist

        load_fashion_mnist(data_dir)
    overrides = {"data.data_dir": str(data_dir)} if data_dir is not None else {}
    hypermodel = EIHyperModel(preset, luminosity, out / "runs", smoke=smoke,
                              overrides=overrides, save_model=save_models, printer=printer,
                              declare_space=False)  # the space is the file's, no more
    kind, tuner = tuner, SweepTuner(hypermodel, hp, max_trials=trials, seed=seed,
                                    directory=out, project_name=project_name, printer=printer,
                                    kind=tuner)
    where = f"{config_path}" if config_path is not None else "generated space"
    if freeze_gc:  # garbage is collected first; objects made afterwards are collected as usual
        gc.collect()
        gc.freeze()
    summary = {"role": role, "tuner": kind, "project_dir": str(tuner.project_dir),
               "runs_dir": str(out / "runs" / preset / lum_dir(luminosity)),
               "finished": None, "best_trial": None, "best_value": None}
    if role == "chief":
        _serve_as_chief(tuner, timeout, printer=printer)
    elif role == "worker":
        watch = _WorkerWatch(tuner, timeout, printer=printer)
        watch.start()
        chief_space = space_signature(tuner.oracle.get_space())
        if chief_space != space_signature(hp):
            raise ValueError("This worker's search space differs from the chief's ("
                             f"{describe_difference(space_signature(hp), chief_space)}): "
                             "start every process with the same --config, --smoke and "
                             "--epochs.")
        printer(f"[sweep {hypermodel.label}] worker {tuner.tuner_id} joined the chief at "
                f"{watch.ip}:{watch.port} ({where})")
        tuner.search(verbose=0)
        printer(f"[sweep {hypermodel.label}] worker {tuner.tuner_id}: no trials left; done")
    else:
        done = len(set(tuner.oracle.end_order))
        redo = list(tuner.oracle._retry_queue)
        planned = tuner.oracle.planned_trials
        printer(f"[sweep {hypermodel.label}] {kind} search, "
                + (f"{planned} trials" if planned else "Hyperband brackets")
                + f" from {where}{' (smoke sizes)' if smoke else ''} into {out}"
                + (f"; resuming: {done} finished trials kept" if done else "")
                + (f", interrupted trial(s) {redo} redone" if redo else ""))
        tuner.search(verbose=0)
    if role != "worker":
        finished = [t for t in tuner.oracle.trials.values()
                    if t.status in ("COMPLETED", "FAILED")]
        best = tuner.oracle.get_best_trials(1)
        summary.update(finished=len(finished),
                       best_trial=best[0].trial_id if best else None,
                       best_value=best[0].score if best else None)
        printer(f"[sweep {hypermodel.label}] finished: {len(finished)}"
                f"/{tuner.oracle.planned_trials or len(finished)} trials"
                + (f", best {OBJECTIVE} {best[0].score:.4f} (trial {best[0].trial_id})"
                   if best and best[0].score is not None else "")
                + f"; run directories in {summary['runs_dir']}; report: ei-keras report {out}")
    summary["seconds"] = round(time.time() - start, 1)
    return summary
