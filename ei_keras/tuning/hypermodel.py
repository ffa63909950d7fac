"""`EIHyperModel`: a zoo preset as a KerasTuner hypermodel. On the user's data (`x`, `y`,
`validation_data` given to `tuner.search`) a trial is `model.fit` on that data; without
data, one trial of a sweep is one `ei_keras.experiment.run_experiment` run.

A trial's values (`lr_e`, `lr_ie`, `lr_ei`, `width`, `norm_weight`, ...) become the
dotted configuration of a run; the run directory lands in
`<out>/runs/<preset>/r<luminosity>/trial_<id>/` with `config.json` (carrying `trial_id`,
`condition` = the preset and `luminosity`), `history.csv` and `metrics.json`, which is
what `ei_keras.analysis.load_runs` and the report read. The trial's objective,
`val_accuracy`, is the final accuracy on a validation set held out of the training images
(`VALIDATION_SIZE` of them, shifted like the test set): the tuner never selects on the
test set, whose accuracy is recorded beside it (`test_accuracy`, the paper's measure). A
diverged trial scores chance, 0.1.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import keras_tuner

from ei_keras.config import SHORT_KEYS, SMOKE_OVERRIDES, ConfigError, RunConfig
from ei_keras.run_directory import CHANCE_ACCURACY, lum_dir

__all__ = ["CHANCE_ACCURACY", "OBJECTIVE", "SMOKE_VALIDATION_SIZE", "VALIDATION_SIZE",
           "EIHyperModel", "lum_dir"]

OBJECTIVE = "val_accuracy"
#: Training images each trial holds out for the objective (full size / `--smoke`).
VALIDATION_SIZE = 5000
SMOKE_VALIDATION_SIZE = 64


class EIHyperModel(keras_tuner.HyperModel):
    """Builds and trains a zoo preset from a trial's hyperparameter values.

    `build(hp)` returns the preset built and compiled by `ei_keras.zoo.build` (the
    Tuner must not be given `optimizer=` or `loss=`, which would recompile it). It
    declares the preset family's search space on `hp` as KerasTuner hypermodels do
    (`ei_keras.tuning.space.declare_search_space`: the learning rates, the width, lambda for
    the I-Norm presets, and fixed depth, batch size, momentum and epochs), so any KerasTuner
    tuner searches it. Entries the tuner was given (`hyperparameters=`, e.g. a narrower
    `hp.Int("width", 8, 16)` or `load_search_space("tuner_configs/ei.json")`) keep their
    definition; the tuner's `tune_new_entries` decides whether the others are searched or
    fixed at their defaults.

    `fit` trains in one of two ways:

    - on the user's data: when `tuner.search` was given data (`x`, `y`,
      `validation_data`, ...), `fit` is `model.fit` with everything the tuner passes (its
      callbacks, `epochs`, `batch_size`, ...), with the trial's `epochs` and
      `batch_size` as defaults for those not given (`batch_size` only for array inputs);
      it returns the `History`, whose `val_` metrics the tuner's objective reads;
    - on the shifted Fashion-MNIST (no data given; needs `runs_dir`): through
      `ei_keras.experiment.run_experiment` (fresh shifts every epoch, divergence
      monitor, run directory written atomically), returning `{"val_accuracy": final accuracy
      on the held-out validation split}`. This is what `ei-keras sweep` runs.

    Args:
        preset: a zoo preset name (`ei_keras.zoo.all_names`).
        luminosity: the shift half-width `r` (Fashion-MNIST runs; default: the run
            configuration's).
        runs_dir: where Fashion-MNIST run directories go:
            `<runs_dir>/<preset>/r<lum>/trial_<id>`.
        smoke: tiny runs for CI (`ei_keras.config.SMOKE_OVERRIDES`).
        overrides: further dotted run-configuration overrides (e.g. `{"data.data_dir": ...}`).
        save_model: also write `model.keras` into each run directory (needed for
            `tuner.get_best_models()`).
        printer: progress output.
        name: the hypermodel's name.
        input_dim: keyword-only, the width of the (flat) inputs `build` sizes the model for
            (default 784, flattened Fashion-MNIST).
        num_classes: keyword-only, output units (default: the configured data's classes).
        declare_space: keyword-only, whether `build` declares the family's search space
            (default True). `ei-keras sweep` turns it off: its space is exactly the file's.

    Example: a stock KerasTuner tuner on the user's data (20 features, 3 classes); the
    width range is the user's, the rest of the `ei` family's space is declared by `build`.

    ```python
    import keras_tuner
    import numpy as np
    from ei_keras.tuning import EIHyperModel

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 20), dtype=np.float32), np.arange(64) % 3
    hp = keras_tuner.HyperParameters()
    hp.Int("width", 8, 16)
    tuner = keras_tuner.RandomSearch(
        EIHyperModel("ei_ln", input_dim=20, num_classes=3, printer=lambda *a: None),
        hyperparameters=hp, objective="val_accuracy", max_trials=2, seed=1,
        directory="runs/tuner", project_name="mine")
    tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
    len(tuner.oracle.trials)  # 2
    "lr_e" in tuner.get_best_hyperparameters()[0].values  # True
    ```
    """

    def __init__(self, preset: str, luminosity: float | None = None, runs_dir=None,
                 smoke: bool = False, overrides: dict | None = None, save_model: bool = False,
                 printer=print, name: str | None = None, *, input_dim: int | None = None,
                 num_classes: int | None = None, declare_space: bool = True):
        from ei_keras import zoo

        zoo.get(preset)  # clear error for an unknown preset
        if luminosity is None:
            luminosity = RunConfig().data.luminosity
        if isinstance(luminosity, bool) or not isinstance(luminosity, (int, float)) or \
                not 0 <= luminosity <= 1:
            raise ValueError(f"Expected `luminosity` in [0, 1]. Received: "
                             f"luminosity={luminosity!r}")
        for key, value in (("input_dim", input_dim), ("num_classes", num_classes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"Expected `{key}` to be an integer >= 1. Received: "
                                 f"{key}={value!r}")
        # tunable: whether KerasTuner adds what build() declares to the tuner's space.
        super().__init__(name=name or f"{preset}_{lum_dir(luminosity)}",
                         tunable=bool(declare_space))
        self.preset = preset
        self.luminosity = float(luminosity)
        self.runs_dir = None if runs_dir is None else Path(runs_dir)
        self.smoke = bool(smoke)
        self.overrides = dict(overrides or {})
        self.save_model = bool(save_model)
        self.printer = printer
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.declare_space = bool(declare_space)
        self.label = f"{preset} {lum_dir(luminosity)}"
        #: The search that drives it (`--tuner`: set by `ei_keras.tuning.SweepTuner`;
        #: None under another tuner), recorded with each trial so that a report never pools
        #: two searches.
        self.tuner_kind = None

    # ---------------------------------------------------------------------------------------
    def values(self, hp) -> dict:
        """The trial's hyperparameter values that this preset uses (`norm_weight` only for the
        I-Norm presets)."""
        from ei_keras import zoo

        out = {k: _plain(v) for k, v in hp.values.items() if k in SHORT_KEYS}
        # lambda without I-Norm, GradNorm's y/z without GradNorm
        for name in (*zoo.unused_hyperparameters(self.preset),
                     *zoo.unused_model_options(self.preset)):
            out.pop(name, None)
        return out

    def declare_hyperparameters(self, hp):
        """KerasTuner's hook (called on the tuner's space before the first trial):
        `declare`."""
        self.declare(hp)

    def declare(self, hp):
        """Declare the preset family's search space on `hp` (names `hp` holds keep their
        definition; nothing with `declare_space=False`); returns `hp`."""
        from ei_keras.tuning.space import declare_search_space, family

        if self.declare_space:
            declare_search_space(hp, family(self.preset))
        return hp

    def run_dir(self, trial_id: str) -> Path:
        """The run directory of trial `trial_id`."""
        if self.runs_dir is None:
            raise keras_tuner.errors.FatalValueError(
                f"EIHyperModel({self.preset!r}) was given no data and no runs_dir. Pass the "
                "data to tuner.search(x, y, validation_data=...), or runs_dir=... to train on "
                "the shifted Fashion-MNIST.")
        return self.runs_dir / self.preset / lum_dir(self.luminosity) / f"trial_{trial_id}"

    def run_config(self, hp, trial_id: str) -> RunConfig:
        """The `ei_keras.config.RunConfig` of a trial. The run seed (initialisation and
        shift streams) is the trial number, so trial `i` of every preset and luminosity
        starts from the same seed, as configuration `i` of the recipes does."""
        overrides = {"preset": self.preset, "seed": int(trial_id),
                     "data.luminosity": self.luminosity,
                     "data.validation_size": VALIDATION_SIZE}
        if self.smoke:
            overrides.update({**SMOKE_OVERRIDES, "data.validation_size": SMOKE_VALIDATION_SIZE})
        overrides.update({SHORT_KEYS[k]: v for k, v in self.values(hp).items()})
        if self.save_model:
            overrides["output.save_model"] = True
        overrides.update(self.overrides)
        return RunConfig().with_overrides(overrides)

    def build(self, hp, seed: int | None = 0):
        """The preset built and compiled with the trial's values (`zoo.build`)."""
        from ei_keras import data, zoo
        from ei_keras.experiment import model_overrides

        cfg = self.run_config(self.declare(hp), "0")
        num_classes = self.num_classes or data.shift_from_config(cfg).num_classes()
        sizes = {} if self.input_dim is None else {"input_dim": self.input_dim}
        return zoo.build(self.preset, width=cfg.model.width, depth=cfg.model.depth, seed=seed,
                         num_classes=num_classes, model_overrides=model_overrides(cfg),
                         **sizes, **cfg.hyperparameter_overrides())

    # ---------------------------------------------------------------------------------------
    def fit(self, hp, model, *args, trial_id: str | None = None, tuner_id: str = "tuner0",
            epochs: int | None = None, initial_epoch: int = 0, callbacks=None, **kwargs):
        """Train one trial. Given data (`x`, `y`, `validation_data`, ...: what
        `tuner.search` was called with), `fit_on_data`. Otherwise train on the shifted
        Fashion-MNIST and write the trial's run directory; return `{"val_accuracy":
        accuracy}` (chance for a diverged trial).

        Under `ei_keras.tuning.SweepTuner` (`trial_id` given) `model` is not
        trained: `run_experiment` builds its own from the same preset and values, seeded by
        the trial number. A complete run directory of the same trial whose fingerprint matches
        (a trial whose process was killed after writing it, before the tuner recorded it) is
        reused instead of trained again; one with another fingerprint stops the sweep with an
        error naming the keys.

        Under any other KerasTuner tuner (`keras_tuner.Hyperband(EIHyperModel(...))`, ...)
        the tuner's `model` is trained from `initial_epoch` to `epochs` with the tuner's
        `callbacks` (its checkpoints and per-epoch reports, on the validation split), so
        Hyperband can continue a trial from its checkpoint; the run directory is
        `trial_<digest of the values and epochs>`.
        """
        from ei_keras.data import DataFileError
        from ei_keras.experiment import resolve, run_experiment
        from ei_keras.run_directory import load_run, sort_finished, stale_runs_error

        if args or any(kwargs.get(k) is not None for k in _DATA_ARGUMENTS):
            return self.fit_on_data(hp, model, *args, epochs=epochs,
                                    initial_epoch=initial_epoch, callbacks=callbacks, **kwargs)
        values = self.values(hp)
        stock = trial_id is None
        if stock:
            trial_id = _digest({**values, "epochs": epochs, "initial_epoch": initial_epoch})
        final = self.run_dir(trial_id)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        start = time.time()
        try:
            cfg = self.run_config(hp, trial_id)
            if epochs is not None:  # Hyperband's budget for this trial
                cfg = cfg.with_overrides({"train.epochs": int(epochs)})
            if stock:  # the tuner's callbacks read the validation accuracy every epoch
                cfg = cfg.with_overrides({"train.validate_each_epoch": True})
            wanted = resolve(cfg)["fingerprint"]
        except ConfigError as e:  # no later trial can do better
            raise keras_tuner.errors.FatalValueError(str(e)) from e
        reusable, stale = sort_finished([(final, wanted)])
        if stale and not stock:  # a finished trial made under other settings: never mixed in
            raise keras_tuner.errors.FatalValueError(str(stale_runs_error(
                stale, fix="A sweep folder holds one sweep: choose a new --out for these "
                "settings.")))
        if reusable and not stock:  # finished under the same fingerprint
            metrics = load_run(final, history=False).metrics
            self.printer(f"[sweep {self.label}] trial {trial_id} ({tuner_id}): complete run "
                         f"directory found, reused: {final}")
        else:
            self.printer(f"[sweep {self.label}] trial {trial_id} ({tuner_id}) starts: {shown}")
            record = {"trial_id": trial_id, "sweep": {"tuner_id": tuner_id, "values": values,
                                                      "project": self.name,
                                                      "tuner": self.tuner_kind}}
            try:
                metrics = run_experiment(
                    cfg, final, printer=self.printer, overwrite=True, record=record,
                    model=model if stock else None, callbacks=callbacks if stock else (),
                    initial_epoch=initial_epoch if stock else 0)
            except (ConfigError, FileNotFoundError, DataFileError) as e:  # no later trial
                raise keras_tuner.errors.FatalValueError(str(e)) from e  # can do better
            except Exception as e:  # out of memory, ...: stop the sweep, never record the
                raise keras_tuner.errors.FatalError(str(e)) from e  # trial as finished
        accuracy = metrics.get(OBJECTIVE)
        ok = metrics.get("status") == "ok" and isinstance(accuracy, (int, float)) and \
            math.isfinite(accuracy)
        classes = metrics.get("num_classes")
        chance = 1.0 / classes if isinstance(classes, int) and classes > 0 else CHANCE_ACCURACY
        score = float(accuracy) if ok else chance
        self.printer(f"[sweep {self.label}] trial {trial_id} ({tuner_id}) done: "
                     f"{OBJECTIVE}={score:.4f}" +
                     ("" if ok else f" (chance: {metrics.get('status')}, "
                      f"{metrics.get('message')})") +
                     f" in {time.time() - start:.1f} s{_rss_note()}")
        # Memory: run_experiment's model and data are released on return; the Tuner calls
        # keras.backend.clear_session() and gc.collect() before building the next trial's model.
        return {OBJECTIVE: score}


    def fit_on_data(self, hp, model, *args, epochs=None, initial_epoch: int = 0,
                    callbacks=None, **kwargs):
        """`model.fit(*args, **kwargs)` on the user's data with the tuner's `callbacks`,
        `epochs` (default: the trial's `epochs`) and `initial_epoch`; `batch_size`
        defaults to the trial's for array inputs (datasets and generators batch themselves).
        Returns the `History`."""
        values = hp.values
        if epochs is None:
            epochs = int(values.get("epochs", 1))
        x = args[0] if args else kwargs.get("x")
        if kwargs.get("batch_size") is None and "batch_size" in values and \
                isinstance(getattr(x, "shape", None), tuple):
            kwargs["batch_size"] = int(values["batch_size"])
        kwargs.pop("trial_id", None)
        kwargs.pop("tuner_id", None)
        return model.fit(*args, epochs=epochs, initial_epoch=initial_epoch,
                         callbacks=callbacks, **kwargs)


#: `fit` arguments that carry the user's data.
_DATA_ARGUMENTS = ("x", "y", "validation_data", "validation_split", "sample_weight")


def _digest(values: dict) -> str:
    """A trial id for tuners that pass none: the same values give the same id (and seed)."""
    import hashlib
    import json

    text = json.dumps(values, sort_keys=True, default=str)
    return str(int(hashlib.sha256(text.encode()).hexdigest()[:7], 16))


def _plain(v):
    """A Python int/float for a (possibly numpy) number, so configurations JSON-round-trip."""
    if hasattr(v, "item"):
        v = v.item()
    return v


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def rss_megabytes() -> float | None:
    """The current resident memory of this process in MB (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _rss_note() -> str:
    rss = rss_megabytes()
    return "" if rss is None else f", RSS {rss:.0f} MB"
