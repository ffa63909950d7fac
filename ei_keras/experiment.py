"""One training run of one preset on shifted Fashion-MNIST, written to a run directory.

The data's shift is `data.shift` at its size (`ei_keras.data.shift_from_config`); the
model's output layer has one unit per label the shift gives (20 for `contrast_signal`).

The configuration is an `ei_keras.config.RunConfig` (its dotted keys are what the CLI's
`key=value` overrides use: `ei-keras train --help` lists them). The run directory's files
and how they are written belong to `ei_keras.run_directory`.
"""

from __future__ import annotations

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
           "resolve_steps_per_execution", "library_versions", "AUTO_STEPS_PER_EXECUTION"]

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


def _progress_callback(label: str, epochs: int, printer):
    """A one-line-per-epoch progress callback (Keras' progress bar is too chatty for sweeps)."""
    import keras

    def on_epoch_end(epoch, logs=None):
        logs = logs or {}
        parts = [f"{k}={logs[k]:.4g}" for k in ("loss", "accuracy", "val_accuracy")
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
                   model=None, callbacks=(), initial_epoch: int = 0) -> dict:
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
    import keras

    from ei_keras import data, interrupt, zoo
    from ei_keras.divergence import DivergenceMonitor
    from ei_keras.measures import (
        HiddenMoments,
        LayerNormAlignment,
        gradient_alignment,
        moments,
        output_alignment,
    )
    from ei_keras.scoring import PAPER_SCORING

    extra_callbacks = list(callbacks or ())
    resolved = resolve(config)
    cfg: RunConfig = resolved["config"]
    hp, spe = resolved["hyperparameters"], resolved["steps_per_execution"]
    record = dict(record or {})
    run_dir = check_run_directory(run_dir, overwrite)
    for path in remove_stale_partials(run_dir.parent, run_dir.name):
        printer(f"[train] removed {path} (left by an interrupted run)")
    start = time.time()
    keras.utils.set_random_seed(cfg.seed)
    shift = data.shift_from_config(cfg)
    try:
        train, (x_test, y_test), validation = data.make_datasets(
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
    label = f"{cfg.label} {size} seed={cfg.seed}"
    with staged_run_directory(run_dir, overwrite=overwrite) as tmp:
        write_json_atomic(tmp / CONFIG_FILE, {
            **cfg.to_dict(), **record,
            "resolved": {"hyperparameters": {**hp, "batch_size": cfg.data.batch_size},
                         "steps_per_execution": spe, "backend": keras.backend.backend()},
            "fingerprint": resolved["fingerprint"]})
        if model is None:
            model = zoo.build(cfg.preset, width=cfg.model.width, depth=cfg.model.depth,
                              seed=cfg.seed, jit_compile=cfg.train.jit_compile,
                              steps_per_execution=spe,
                              model_overrides={"trainable_ei": cfg.model.trainable_ei},
                              inhibitory_steps=cfg.train.inhibitory_steps,
                              inhibitory_every=cfg.train.inhibitory_every,
                              num_classes=train.num_classes, **hp)
        n_probe = min(cfg.measures.probe_size, len(x_test))
        probe_x, probe_y = x_test[:n_probe], y_test[:n_probe]
        monitor = DivergenceMonitor(rates=hp)
        # Keras epoch e reads stream e; a SIGTERM whose KeyboardInterrupt was lost stops here
        callbacks = [train.sync_callback(), monitor, interrupt.stop_on_request_callback()]
        if cfg.measures.moments:
            callbacks.append(HiddenMoments(probe_x))
        if cfg.measures.alignment:
            callbacks.append(LayerNormAlignment(probe_x, probe_y))
        callbacks.append(_progress_callback(label, cfg.train.epochs, printer))
        callbacks.extend(extra_callbacks or ())
        printer(f"[train] {label}: {cfg.preset}, width {cfg.model.width}, "
                f"{cfg.train.epochs} epochs, lr_e={hp['lr_e']:g} lr_ie={hp['lr_ie']:g} "
                f"lr_ei={hp['lr_ei']:g} on {keras.backend.backend()}")
        fit_kwargs = {}
        if cfg.train.validate_each_epoch:  # the held-out split, never the test set
            fit_kwargs = {"validation_data": validation, "validation_batch_size": 1000}
        history = model.fit(train, epochs=cfg.train.epochs, shuffle=False, verbose=0,
                            callbacks=callbacks, initial_epoch=initial_epoch, **fit_kwargs)
        if monitor.diverged:
            monitor.locate(train)
        write_history(tmp / HISTORY_FILE, history.history)
        train_time = time.time() - start
        evaluation = model.evaluate(x_test, y_test, batch_size=1000, verbose=0,
                                    return_dict=True)
        monitor.check_final_loss(evaluation.get("loss"), "test loss")
        diverged = monitor.diverged
        metrics = {
            "status": "diverged" if diverged else "ok",
            "test_accuracy": _finite_or_none(evaluation.get("accuracy")),
            "test_loss": _finite_or_none(evaluation.get("loss")),
            **_validation_metrics(model, validation),
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
            "num_classes": train.num_classes,
            "seed": cfg.seed,
            **record,
            "backend": keras.backend.backend(),
            "versions": library_versions(),
            "hyperparameters": {**hp, "batch_size": cfg.data.batch_size},
            "train_time_s": round(train_time, 2),
        }
        if not diverged:
            if cfg.measures.moments:
                metrics["moments"] = {f"hidden_{k}": {"mean": m, "var": v} for k, (m, v) in
                                      enumerate(moments(model, probe_x), start=1)}
            if cfg.measures.alignment:
                metrics["alignment"] = {
                    "output": output_alignment(model, probe_x),
                    "gradient": gradient_alignment(model, probe_x, probe_y),
                }
        metrics["wall_time_s"] = round(time.time() - start, 2)
        write_json_atomic(tmp / METRICS_FILE, metrics)
        if cfg.output.save_model and not diverged:
            try:
                model.save(tmp / MODEL_FILE)
            except OSError as e:  # a full disk: keep the run, say what is missing
                (tmp / MODEL_FILE).unlink(missing_ok=True)
                metrics["model_error"] = (f"{MODEL_FILE} could not be written ({e.strerror or e})"
                                          "; the other files of the run are complete")
                write_json_atomic(tmp / METRICS_FILE, metrics)
    acc = metrics["test_accuracy"]
    printer(f"[done] {label}: " + (f"test accuracy {100 * acc:.2f} %" if acc is not None
                                   else "no accuracy") +
            (f" — DIVERGED: {metrics['message']}" if diverged else "") +
            (f" — {metrics['stability']['message']}" if metrics["stability"] and not diverged
             else "") +
            f" ({metrics['wall_time_s']:.0f} s)")
    return metrics
