"""`EIHyperModel`: one trial of a sweep is one `ei_keras.experiment.run_experiment` run.

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
    Tuner must not be given `optimizer=` or `loss=`, which would recompile it). `fit`
    trains through `ei_keras.experiment.run_experiment` (shifted training stream with
    fresh shifts every epoch, divergence monitor, run directory written atomically) and returns
    `{"val_accuracy": final accuracy on the held-out validation split}`.

    Args:
        preset: a zoo preset name (`ei_keras.zoo.all_names`).
        luminosity: the shift half-width `r`.
        runs_dir: where run directories go: `<runs_dir>/<preset>/r<lum>/trial_<id>`.
        smoke: tiny runs for CI (`ei_keras.config.SMOKE_OVERRIDES`).
        overrides: further dotted run-configuration overrides (e.g. `{"data.data_dir": ...}`).
        save_model: also write `model.keras` into each run directory (needed for
            `tuner.get_best_models()`).
        printer: progress output.

    Example:

    ```python
    import keras_tuner
    from ei_keras.tuning import EIHyperModel, load_search_space

    hp = load_search_space("tuner_configs/ei.json")
    model = EIHyperModel("ei_ln", 0.75, "runs/sweeps/runs").build(hp)
    ```
    """

    def __init__(self, preset: str, luminosity: float, runs_dir, smoke: bool = False,
                 overrides: dict | None = None, save_model: bool = False, printer=print,
                 name: str | None = None):
        from ei_keras import zoo

        zoo.get(preset)  # clear error for an unknown preset
        if not isinstance(luminosity, (int, float)) or not 0 <= luminosity <= 1:
            raise ValueError(f"Expected `luminosity` in [0, 1]. Received: "
                             f"luminosity={luminosity!r}")
        super().__init__(name=name or f"{preset}_{lum_dir(luminosity)}", tunable=False)
        self.preset = preset
        self.luminosity = float(luminosity)
        self.runs_dir = Path(runs_dir)
        self.smoke = bool(smoke)
        self.overrides = dict(overrides or {})
        self.save_model = bool(save_model)
        self.printer = printer
        self.label = f"{preset} {lum_dir(luminosity)}"

    # ---------------------------------------------------------------------------------------
    def values(self, hp) -> dict:
        """The trial's hyperparameter values that this preset uses (`norm_weight` only for the
        I-Norm presets)."""
        from ei_keras.tuning.space import family

        out = {k: _plain(v) for k, v in hp.values.items() if k in SHORT_KEYS}
        if "inorm" not in family(self.preset):  # "inorm" and "conv_inorm" have lambda
            out.pop("norm_weight", None)
        return out

    def run_dir(self, trial_id: str) -> Path:
        """The run directory of trial `trial_id`."""
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

        cfg = self.run_config(hp, "0")
        return zoo.build(self.preset, width=cfg.model.width, depth=cfg.model.depth, seed=seed,
                         num_classes=data.shift_from_config(cfg).num_classes(),
                         **cfg.hyperparameter_overrides())

    # ---------------------------------------------------------------------------------------
    def fit(self, hp, model, *args, trial_id: str | None = None, tuner_id: str = "tuner0",
            epochs: int | None = None, initial_epoch: int = 0, callbacks=None, **kwargs):
        """Train one trial and write its run directory; return `{"val_accuracy": accuracy}`
        (chance for a diverged trial).

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
        from ei_keras.experiment import resolve, run_experiment
        from ei_keras.run_directory import load_run, sort_finished, stale_runs_error

        del args, kwargs
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
                                                      "project": self.name}}
            try:
                metrics = run_experiment(
                    cfg, final, printer=self.printer, overwrite=True, record=record,
                    model=model if stock else None, callbacks=callbacks if stock else (),
                    initial_epoch=initial_epoch if stock else 0)
            except (ConfigError, FileNotFoundError) as e:  # no later trial can do better
                raise keras_tuner.errors.FatalValueError(str(e)) from e
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
