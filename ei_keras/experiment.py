"""One training run of one preset on shifted Fashion-MNIST, written to a run directory.

The data's shift is `data.shift` at its size (`ei_keras.data.shift_from_config`); the
model's output layer has one unit per label the shift gives (20 for `contrast_signal`).

The configuration is an `ei_keras.config.RunConfig` (its dotted keys are what the CLI's
`key=value` overrides use: `ei-keras train --help` lists them). The run directory's files
and how they are written belong to `ei_keras.run_directory`.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
from collections.abc import Mapping

from ei_keras.config import ConfigError, RunConfig
from ei_keras.extras import require
from ei_keras.run_directory import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    check_run_directory,
    fingerprint,
    remove_stale_partials,
    staged_run_directory,
    write_history,
    write_json_atomic,
)

# The run records scipy's version with the others (library_versions): the research harness.
require("research", "ei_keras.experiment", ("scipy",))

__all__ = ["ConfigError", "RunConfig", "as_config", "resolve", "run_experiment",
           "resolve_steps_per_execution", "library_versions", "AUTO_STEPS_PER_EXECUTION",
           "RunSession"]

#: Training steps per compiled call (`train.steps_per_execution="auto"`) on TensorFlow and
#: JAX: one host round trip and one round of callbacks per 32 steps (`bench/run.py` measures
#: the gain). PyTorch runs one step per call (Keras' torch trainer accepts only 1).
AUTO_STEPS_PER_EXECUTION = 32


def resolve_steps_per_execution(value, backend: str | None = None) -> int:
    """The `steps_per_execution` that `train.steps_per_execution=value` gives on `backend`
    (default: the running one)."""
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if value == "auto":
        return 1 if backend == "torch" else AUTO_STEPS_PER_EXECUTION
    if backend == "torch" and value != 1:
        raise ConfigError(
            "Keras' PyTorch backend runs one step per call: use train.steps_per_execution=auto "
            f"or 1 with --backend torch. Received: train.steps_per_execution={value!r}")
    return int(value)


def as_config(config: RunConfig | Mapping | None) -> RunConfig:
    """A validated `RunConfig` from a `RunConfig`, a nested/dotted mapping or None."""
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(config or {})


def model_overrides(cfg: RunConfig) -> dict:
    """The `model.*` options a run passes to its network (`zoo.build`'s `model_overrides`):
    `trainable_ei`, `gradnorm_on` and the isolation ablations (only when on: the network
    kinds without them, `ei_keras.zoo.ISOLATION_KINDS`, take no such argument)."""
    from ei_keras.zoo import ISOLATION_OPTIONS

    return {"trainable_ei": cfg.model.trainable_ei, "gradnorm_on": cfg.model.gradnorm_on,
            **{k: True for k in ISOLATION_OPTIONS if getattr(cfg.model, k)}}


def resolve(config: RunConfig | Mapping) -> dict:
    """What a configuration resolves to before training, with no data or model:
    `{"config", "hyperparameters", "steps_per_execution", "fingerprint"}`.

    Raises:
        ConfigError: an invalid configuration (names the key).
    """
    import ei_keras
    from ei_keras import zoo

    cfg = as_config(config)
    if cfg.model.width is None:  # the preset's default, recorded (and fingerprinted) as such
        cfg = cfg.with_overrides({"model.width": zoo.default_width(cfg.preset)})
    hp = zoo.hyperparameters(cfg.preset, **cfg.hyperparameter_overrides())
    return {"config": cfg, "hyperparameters": hp,
            "steps_per_execution": resolve_steps_per_execution(cfg.train.steps_per_execution),
            "fingerprint": fingerprint(cfg.flat(), hp, ei_keras.__version__)}


def library_versions() -> dict:
    """Versions of Python, Keras, the active backend and the main libraries."""
    import keras
    import numpy
    import scipy

    import ei_keras

    backend = keras.backend.backend()
    return {
        "python": platform.python_version(),
        "ei_keras": ei_keras.__version__,
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": getattr(sys.modules.get(backend), "__version__", None),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
    }


def _finite_or_none(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def spectrum_record(init: list[dict], end: list[dict]) -> dict:
    """`metrics.json`'s `spectrum`: `svd_entropy_init`, `svd_entropy_end`,
    `spectral_radius_init`, `spectral_radius_end` of the recurrent layer
    (`ei_keras.measures.recurrent_spectrum`; a second recurrent layer's keys end in `_2`)."""
    out = {}
    for k, (a, b) in enumerate(zip(init, end), start=1):
        tail = "" if k == 1 else f"_{k}"
        for name in ("svd_entropy", "spectral_radius"):
            out[f"{name}_init{tail}"] = _finite_or_none(a[name])
            out[f"{name}_end{tail}"] = _finite_or_none(b[name])
    return out


#: What the one-line-per-epoch progress shows, when the logs have it.
EPOCH_LINE_KEYS = ("loss", "task_loss", "norm_loss", "accuracy", "val_accuracy")


def _progress_callback(label: str, epochs: int, printer):
    """A one-line-per-epoch progress callback (for logs and parallel workers, where Keras'
    per-batch progress bar would be noise)."""
    import keras

    def on_epoch_end(epoch, logs=None):
        logs = logs or {}
        parts = [f"{k}={logs[k]:.4g}" for k in EPOCH_LINE_KEYS
                 if isinstance(logs.get(k), (int, float))]
        printer(f"  [{label}] epoch {epoch + 1}/{epochs} " + " ".join(parts))

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def _validation_metrics(model, validation) -> dict:
    """`val_accuracy` and `val_loss` on the held-out split (nothing without one)."""
    if validation is None:
        return {}
    result = model.evaluate(*validation, batch_size=1000, verbose=0, return_dict=True)
    return {"val_accuracy": _finite_or_none(result.get("accuracy")),
            "val_loss": _finite_or_none(result.get("loss"))}


def run_experiment(config: RunConfig | Mapping | None, run_dir, printer=print,
                   overwrite: bool = False, record: Mapping | None = None, *,
                   model=None, callbacks=(), initial_epoch: int = 0,
                   progress_bar: bool = False) -> dict:
    """Train one configuration and write its run directory.

    Args:
        config: a `RunConfig` or a (partial) nested/dotted mapping; missing keys take
            their defaults.
        run_dir: where the run directory goes (must not exist unless `overwrite`).
        printer: progress output (`print`; pass `lambda *a: None` for silence).
        overwrite: replace an existing run directory.
        record: extra entries for `config.json` and `metrics.json` (a sweep's
            `trial_id` and `sweep` description).
        model: train this compiled model (e.g. a KerasTuner tuner's, with weights it loaded)
            instead of building the preset from the configuration.
        callbacks: more Keras callbacks for `fit` (e.g. a tuner's checkpoints and reports).
        initial_epoch: the epoch `fit` starts at (a Hyperband trial continued from its
            checkpoint); the data stream of epoch `e` is the same whatever the start.
        progress_bar: show Keras' per-batch progress bar (`fit(verbose=1)`: every metric
            of the logs, `task_loss` and `norm_loss` included) instead of one line per
            epoch through `printer`. For a terminal; `ei-keras train` turns it on when its
            standard output is one.

    Returns:
        The `metrics.json` contents (with `val_accuracy`/`val_loss` on the held-out
        split when `data.validation_size` > 0). `status` is `"diverged"` when the loss or a
        weight turned non-finite during or at the end of training (training stopped; the run
        counts at chance; `diverged_step`, `diverged_cause` and `message` say where and
        why). `scoring` names the rule (`ei_keras.scoring.PAPER_SCORING`);
        `stability` is the stability event (a finite loss or weight past the bounds: first
        and last step, peaks, group to blame; `ei_keras.divergence.DivergenceMonitor`)
        or None: the run trained on and is scored by its final accuracy. `model_error` is set when
        `output.save_model` was asked for and `model.keras` could not be written (the
        run's other files are kept).

    Raises:
        ConfigError: an invalid configuration (before anything is written).
        ei_keras.run_directory.RunDirectoryError: `run_dir` exists (without `overwrite`)
            or cannot be written.
        ei_keras.data.DataFileError, ei_keras.data.DataNotFoundError: unusable data files.
    """
    run = RunSession(config, run_dir, printer=printer, overwrite=overwrite, record=record,
                     model=model, engine="sequential")
    with contextlib.ExitStack() as stack:
        run.open(stack)
        metrics = run.fit(callbacks=callbacks, initial_epoch=initial_epoch,
                          progress_bar=progress_bar)
    run.done(metrics)
    return metrics


class RunSession:
    """One run directory being written: the configuration resolved, the data and the model
    built, `config.json` written (`open`); then trained, by `fit` (`fit`) or
    by another engine (the population trainer, `ei_keras.population`), and finished
    (`finish`: history, evaluation, measures, `metrics.json`, the model file).
    `run_experiment` is `open`, `fit`, `done`; every engine writes the same files.

    Args:
        config, run_dir, printer, overwrite, record, model: as `run_experiment`.
        engine: what trains the run (`"sequential"`: Keras' `fit`; `"population"`),
            recorded as `engine` in `metrics.json` and under `resolved` in
            `config.json` (beside the backend; not part of the fingerprint: both engines
            give the same run).
    """

    def __init__(self, config, run_dir, printer=print, overwrite: bool = False,
                 record: Mapping | None = None, model=None, engine: str = "sequential"):
        resolved = resolve(config)
        self.cfg: RunConfig = resolved["config"]
        self.hp, self.spe = resolved["hyperparameters"], resolved["steps_per_execution"]
        self.fingerprint = resolved["fingerprint"]
        self.record, self.engine = dict(record or {}), engine
        self.printer, self.overwrite, self.model = printer, overwrite, model
        self.run_dir = check_run_directory(run_dir, overwrite)

    def open(self, stack: contextlib.ExitStack) -> None:
        """Load the data, stage the run directory (inside `stack`), write `config.json`,
        build the model and its measure callbacks."""
        import keras

        from ei_keras import data, zoo
        from ei_keras.measures import (
            HiddenMoments,
            LayerNormAlignment,
            recurrent_spectrum,
            weight_distribution,
        )

        cfg, hp, printer = self.cfg, self.hp, self.printer
        for path in remove_stale_partials(self.run_dir.parent, self.run_dir.name):
            printer(f"[train] removed {path} (left by an interrupted run)")
        self.start = time.time()
        keras.utils.set_random_seed(cfg.seed)
        shift = data.shift_from_config(cfg)
        try:
            self.train, (self.x_test, self.y_test), self.validation = data.make_datasets(
                shift=shift, batch_size=cfg.data.batch_size, seed=cfg.seed,
                train_subset=cfg.data.train_subset, test_subset=cfg.data.test_subset,
                data_dir=cfg.data.data_dir, validation_size=cfg.data.validation_size)
        except data.DataFileError:
            raise
        except ValueError as e:  # a size that does not fit the data: name the keys
            raise ConfigError(f"{e}: data.train_subset (with data.validation_size held out), "
                              "data.test_subset and data.validation_size must fit the data "
                              "(60000 training and 10000 test images).") from None
        size = cfg.shift_family.label(cfg.shift_size).replace(" = ", "=")
        self.label = f"{cfg.label} {size} seed={cfg.seed}"
        self.tmp = stack.enter_context(staged_run_directory(self.run_dir,
                                                            overwrite=self.overwrite))
        write_json_atomic(self.tmp / CONFIG_FILE, {
            **cfg.to_dict(), **self.record,
            "resolved": {"hyperparameters": {**hp, "batch_size": cfg.data.batch_size},
                         "steps_per_execution": self.spe, "backend": keras.backend.backend(),
                         "engine": self.engine},
            "fingerprint": self.fingerprint})
        if self.model is None:
            self.model = zoo.build(cfg.preset, width=cfg.model.width, depth=cfg.model.depth,
                                   seed=cfg.seed, jit_compile=cfg.train.jit_compile,
                                   steps_per_execution=self.spe,
                                   model_overrides=model_overrides(cfg),
                                   inhibitory_steps=cfg.train.inhibitory_steps,
                                   inhibitory_every=cfg.train.inhibitory_every,
                                   num_classes=self.train.num_classes, **hp)
        #: The recurrent spectrum of the weights the run starts from (None: no recurrent
        #: layer), before any training step.
        self.spectrum_init = recurrent_spectrum(self.model)
        #: The excitatory weights' distribution the run starts from (`measures.weights`).
        self.weights_init = weight_distribution(self.model) if cfg.measures.weights else None
        n_probe = min(cfg.measures.probe_size, len(self.x_test))
        self.probe_x, self.probe_y = self.x_test[:n_probe], self.y_test[:n_probe]
        #: The per-epoch measures (callbacks that add to an epoch's logs).
        self.measure_callbacks = []
        if cfg.measures.moments:
            self.measure_callbacks.append(HiddenMoments(self.probe_x))
        if self.alignment:
            self.measure_callbacks.append(LayerNormAlignment(self.probe_x, self.probe_y))

    @property
    def alignment(self) -> bool:
        """Whether the run records the LayerNorm alignment: `measures.alignment`, for models
        that have a LayerNorm twin (the feed-forward networks; a model without one, e.g.
        `EIRecurrentNetwork`, says `layer_norm_twin = False`)."""
        return bool(self.cfg.measures.alignment) and getattr(self.model, "layer_norm_twin", True)

    def fit(self, callbacks=(), initial_epoch: int = 0, progress_bar: bool = False) -> dict:
        """Train with Keras' `fit` (one run), then `finish` (`progress_bar`: as
        `run_experiment`)."""
        from ei_keras import interrupt
        from ei_keras.divergence import DivergenceMonitor

        cfg, hp, train, printer = self.cfg, self.hp, self.train, self.printer
        import keras

        monitor = DivergenceMonitor(rates=hp)
        # Keras epoch e reads stream e; a SIGTERM whose KeyboardInterrupt was lost stops here
        all_callbacks = [train.sync_callback(), monitor, interrupt.stop_on_request_callback(),
                         *self.measure_callbacks]
        if hp.get("norm_weight_schedule"):
            from ei_keras.callbacks import NormWeightSchedule

            all_callbacks.append(NormWeightSchedule(hp["norm_weight_schedule"],
                                                    hp.get("norm_weight_horizon")))
        if not progress_bar:
            all_callbacks.append(_progress_callback(self.label, cfg.train.epochs, printer))
        all_callbacks.extend(callbacks or ())
        printer(f"[train] {self.label}: {cfg.preset}, width {cfg.model.width}, "
                f"{cfg.train.epochs} epochs, lr_e={hp['lr_e']:g} lr_ie={hp['lr_ie']:g} "
                f"lr_ei={hp['lr_ei']:g} on {keras.backend.backend()}")
        fit_kwargs = {}
        if cfg.train.validate_each_epoch:  # the held-out split, never the test set
            fit_kwargs = {"validation_data": self.validation, "validation_batch_size": 1000}
        history = self.model.fit(train, epochs=cfg.train.epochs, shuffle=False,
                                 verbose=1 if progress_bar else 0,
                                 callbacks=all_callbacks, initial_epoch=initial_epoch,
                                 **fit_kwargs)
        if monitor.diverged:
            monitor.locate(train)
        return self.finish(history.history, monitor)

    def finish(self, history: Mapping, monitor) -> dict:
        """Write `history.csv`, evaluate, measure and write `metrics.json` (and the model
        file when asked for) of the model as trained.

        Args:
            history: `{column: [value per epoch]}` (Keras' `History.history`).
            monitor: what watched the training for divergence: `diverged`, `step`,
                `epoch`, `cause`, `message`, `excursion` (the stability event or
                None) and `check_final_loss(loss, what)` (a
                `ei_keras.divergence.DivergenceMonitor` or the population's record).
        """
        import keras

        from ei_keras.measures import (
            gradient_alignment,
            moments,
            output_alignment,
            recurrent_spectrum,
            weight_distribution,
        )
        from ei_keras.scoring import PAPER_SCORING

        cfg, hp, model, tmp = self.cfg, self.hp, self.model, self.tmp
        write_history(tmp / HISTORY_FILE, history)
        train_time = time.time() - self.start
        evaluation = model.evaluate(self.x_test, self.y_test, batch_size=1000, verbose=0,
                                    return_dict=True)
        monitor.check_final_loss(evaluation.get("loss"), "test loss")
        diverged = monitor.diverged
        metrics = {
            "status": "diverged" if diverged else "ok",
            "test_accuracy": _finite_or_none(evaluation.get("accuracy")),
            "test_loss": _finite_or_none(evaluation.get("loss")),
            **_validation_metrics(model, self.validation),
            "diverged_step": monitor.step if diverged else None,
            "diverged_epoch": monitor.epoch + 1 if diverged else None,
            "diverged_cause": monitor.cause if diverged else None,
            "message": monitor.message if diverged else None,
            "scoring": PAPER_SCORING,
            "stability": monitor.excursion,
            "preset": cfg.preset,
            "condition": cfg.label,
            "shift": cfg.data.shift,
            "shift_size": cfg.shift_size,
            "luminosity": cfg.data.luminosity if cfg.data.shift == "luminosity" else None,
            "num_classes": self.train.num_classes,
            "seed": cfg.seed,
            **self.record,
            "backend": keras.backend.backend(),
            "engine": self.engine,
            "versions": library_versions(),
            "hyperparameters": {**hp, "batch_size": cfg.data.batch_size},
            "train_time_s": round(train_time, 2),
        }
        if not diverged:
            if cfg.measures.moments:
                metrics["moments"] = {f"hidden_{k}": {"mean": m, "var": v} for k, (m, v) in
                                      enumerate(moments(model, self.probe_x), start=1)}
            if self.alignment:
                metrics["alignment"] = {
                    "output": output_alignment(model, self.probe_x),
                    "gradient": gradient_alignment(model, self.probe_x, self.probe_y),
                }
            if cfg.measures.weights:
                metrics["weights"] = weight_distribution(model)
        if self.weights_init is not None:
            metrics["weights_init"] = self.weights_init
        if self.spectrum_init is not None:  # the recurrent weights, even of a diverged run
            metrics["spectrum"] = spectrum_record(self.spectrum_init, recurrent_spectrum(model))
        metrics["wall_time_s"] = round(time.time() - self.start, 2)
        write_json_atomic(tmp / METRICS_FILE, metrics)
        if cfg.output.save_model and not diverged:
            try:
                model.save(tmp / MODEL_FILE)
            except OSError as e:  # a full disk: keep the run, say what is missing
                (tmp / MODEL_FILE).unlink(missing_ok=True)
                metrics["model_error"] = (f"{MODEL_FILE} could not be written ({e.strerror or e})"
                                          "; the other files of the run are complete")
                write_json_atomic(tmp / METRICS_FILE, metrics)
        return metrics

    def done(self, metrics: dict) -> None:
        """The run's last progress line (after its directory is in place)."""
        acc = metrics["test_accuracy"]
        diverged = metrics["status"] == "diverged"
        self.printer(f"[done] {self.label}: " +
                     (f"test accuracy {100 * acc:.2f} %" if acc is not None
                      else "no accuracy") +
                     (f" — DIVERGED: {metrics['message']}" if diverged else "") +
                     (f" — {metrics['stability']['message']}" if metrics["stability"] and
                      not diverged else "") +
                     f" ({metrics['wall_time_s']:.0f} s)")
