"""One training run of one preset on shifted Fashion-MNIST, written to a run directory.

A run directory holds ``config.json`` (the resolved configuration), ``history.csv`` (one row per
epoch: losses, accuracies, hidden moments, alignments), ``metrics.json`` (final test accuracy,
status ``ok``/``diverged``, moments, alignments, seed, backend, library versions, wall time) and
optionally ``model.keras``. It is written in a hidden sibling folder and moved into place at
the end, so a run directory is either complete or absent: never half-written.

Configuration keys (dotted names are what the CLI's ``--key=value`` overrides use)::

    preset, seed,
    model.width, model.depth, model.trainable_ei,
    data.luminosity, data.batch_size, data.train_subset, data.test_subset, data.data_dir,
    train.epochs, train.validate_each_epoch, train.jit_compile, train.steps_per_execution,
    opt.lr_e, opt.lr_ie, opt.lr_ei, opt.momentum, opt.inhibitory_momentum,
    loss.norm_weight, loss.label_smoothing,
    measures.moments, measures.alignment, measures.probe_size,
    output.save_model, condition

``None`` for a hyperparameter means "the preset's default".
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CONFIG: dict = {
    "preset": "ei_ln",
    "condition": None,
    "seed": 0,
    "model": {"width": 234, "depth": 2, "trainable_ei": True},
    "data": {"luminosity": 0.75, "batch_size": 32, "train_subset": None, "test_subset": None,
             "data_dir": None},
    "train": {"epochs": 3, "validate_each_epoch": False, "jit_compile": "auto",
              "steps_per_execution": "auto"},
    "opt": {"lr_e": None, "lr_ie": None, "lr_ei": None, "momentum": None,
            "inhibitory_momentum": None},
    "loss": {"norm_weight": None, "label_smoothing": 0.1},
    "measures": {"moments": True, "alignment": True, "probe_size": 512},
    "output": {"save_model": False},
}


class ConfigError(ValueError):
    """An invalid run configuration; the message names the key and what is expected."""


#: Training steps per compiled call (``train.steps_per_execution="auto"``) on TensorFlow and
#: JAX: one host round trip and one round of callbacks per 32 steps. Measured at width 500
#: (``bench/run.py``): 1.15-1.45x the steps/s of one step per call on TensorFlow, 1.16x on JAX.
#: PyTorch runs one step per call (Keras' torch trainer accepts only 1).
AUTO_STEPS_PER_EXECUTION = 32


def resolve_steps_per_execution(value, backend: str | None = None) -> int:
    """The ``steps_per_execution`` that ``train.steps_per_execution=value`` gives on ``backend``
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


def _parse_value(text: str):
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: dict, overrides) -> dict:
    """A copy of ``config`` with dotted overrides applied.

    Args:
        config: a configuration dict (nested as :data:`DEFAULT_CONFIG`).
        overrides: a mapping ``{"opt.lr_e": 0.1}`` or strings ``"opt.lr_e=0.1"``.

    Raises:
        ConfigError: for an unknown key (with the known keys of that section).
    """
    out = copy.deepcopy(config)
    items = overrides.items() if isinstance(overrides, dict) else (
        o.lstrip("-").split("=", 1) if "=" in o else (o, None) for o in overrides)
    for key, value in items:
        if value is None and not isinstance(overrides, dict):
            raise ConfigError(f"Override {key!r} has no value: write it as {key}=VALUE.")
        if isinstance(value, str) and not isinstance(overrides, dict):
            value = _parse_value(value)
        *parents, leaf = key.split(".")
        node = out
        path = []
        for p in parents:
            path.append(p)
            if not isinstance(node.get(p), dict):
                sections = sorted(k for k, v in node.items() if isinstance(v, dict))
                raise ConfigError(f"Unknown configuration section {'.'.join(path)!r}. "
                                  f"Known sections: {sections}")
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"Unknown configuration key {key!r}. Known keys here: "
                              f"{sorted(node)}")
        node[leaf] = value
    return out


def validate_config(config: dict) -> dict:
    """Check types and ranges of a configuration; return it. Raises :class:`ConfigError`."""
    from ei_keras import zoo

    merged = apply_overrides(DEFAULT_CONFIG, {})
    def merge(dst, src, prefix=""):
        for k, v in src.items():
            if k not in dst:
                raise ConfigError(f"Unknown configuration key {prefix + k!r}. Known keys: "
                                  f"{sorted(dst)}")
            if isinstance(dst[k], dict):
                if not isinstance(v, dict):
                    raise ConfigError(f"{prefix + k!r} must be a section (dict). Received: {v!r}")
                merge(dst[k], v, prefix + k + ".")
            else:
                dst[k] = v
    merge(merged, config)
    try:
        zoo.get(merged["preset"])
    except ValueError as e:
        raise ConfigError(str(e)) from None

    def need(key, ok, what):
        section, _, leaf = key.rpartition(".")
        value = merged[section][leaf] if section else merged[leaf]
        if not ok(value):
            raise ConfigError(f"Expected `{key}` to be {what}. Received: {key}={value!r}")

    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    pos_int = lambda v: is_int(v) and v >= 1
    opt_pos_int = lambda v: v is None or pos_int(v)
    rate = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                   and math.isfinite(v) and v >= 0)
    need("seed", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    need("model.width", pos_int, "an integer >= 1")
    need("model.depth", pos_int, "an integer >= 1")
    need("data.luminosity", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1,
         "a number in [0, 1]")
    need("data.batch_size", pos_int, "an integer >= 1")
    need("data.train_subset", opt_pos_int, "None or an integer >= 1")
    need("data.test_subset", opt_pos_int, "None or an integer >= 1")
    need("train.epochs", pos_int, "an integer >= 1")
    need("train.steps_per_execution", lambda v: v == "auto" or pos_int(v),
         '"auto" or an integer >= 1')
    resolve_steps_per_execution(merged["train"]["steps_per_execution"])
    for k in ("lr_e", "lr_ie", "lr_ei"):
        need(f"opt.{k}", rate, "None or a finite number >= 0")
    for k in ("momentum", "inhibitory_momentum"):
        need(f"opt.{k}", lambda v: v is None or (isinstance(v, (int, float)) and 0 <= v < 1),
             "None or a number in [0, 1)")
    need("loss.norm_weight", rate, "None or a finite number >= 0")
    need("loss.label_smoothing", lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
         "a number in [0, 1)")
    need("measures.probe_size", pos_int, "an integer >= 1")
    return merged


def library_versions() -> dict:
    """Versions of Python, Keras, the active backend and the main libraries."""
    import keras
    import numpy
    import scipy

    import ei_keras

    backend = keras.backend.backend()
    mod = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    return {
        "python": platform.python_version(),
        "ei_keras": ei_keras.__version__,
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": getattr(sys.modules.get(mod), "__version__", None) if mod else None,
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


class _Progress:
    """Minimal per-epoch progress line (Keras' progress bar is too chatty for sweeps)."""

    def __init__(self, label: str, epochs: int, printer):
        import keras

        class CB(keras.callbacks.Callback):
            def on_epoch_end(cb, epoch, logs=None):
                logs = logs or {}
                parts = [f"{k}={logs[k]:.4g}" for k in ("loss", "accuracy", "val_accuracy")
                         if k in logs and isinstance(logs[k], (int, float))]
                printer(f"  [{label}] epoch {epoch + 1}/{epochs} " + " ".join(parts))

        self.callback = CB()


def run_experiment(config: dict, run_dir, printer=print, overwrite: bool = False) -> dict:
    """Train one configuration and write its run directory.

    Args:
        config: a (partial) configuration; missing keys take :data:`DEFAULT_CONFIG` values.
        run_dir: where the run directory goes (created; must not exist unless ``overwrite``).
        printer: progress output (``print``; pass ``lambda *a: None`` for silence).
        overwrite: replace an existing run directory.

    Returns:
        The ``metrics.json`` contents. ``status`` is ``"diverged"`` when the loss or weights
        became non-finite (training stopped; ``diverged_step`` and ``message`` say where and
        why).
    """
    import keras

    from ei_keras import data, zoo
    from ei_keras.divergence import DivergenceMonitor
    from ei_keras.measures import (
        HiddenMoments,
        LayerNormAlignment,
        gradient_alignment,
        moments,
        output_alignment,
    )

    cfg = validate_config(config)
    run_dir = Path(run_dir)
    if run_dir.exists() and not overwrite:
        raise FileExistsError(f"Run directory {run_dir} already exists; choose another or pass "
                              "overwrite=True (--overwrite).")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.partial-", dir=run_dir.parent))
    try:
        start = time.time()
        preset = cfg["preset"]
        hp = zoo.hyperparameters(
            preset, **{k: v for k, v in {**cfg["opt"], **cfg["loss"]}.items() if v is not None})
        label = f"{cfg['condition'] or preset} r={cfg['data']['luminosity']} seed={cfg['seed']}"
        keras.utils.set_random_seed(cfg["seed"])
        train, (x_test, y_test) = data.make_datasets(
            cfg["data"]["luminosity"], batch_size=cfg["data"]["batch_size"], seed=cfg["seed"],
            train_subset=cfg["data"]["train_subset"], test_subset=cfg["data"]["test_subset"],
            data_dir=cfg["data"]["data_dir"])
        spe = resolve_steps_per_execution(cfg["train"]["steps_per_execution"])
        model = zoo.build(preset, width=cfg["model"]["width"], depth=cfg["model"]["depth"],
                          seed=cfg["seed"], jit_compile=cfg["train"]["jit_compile"],
                          steps_per_execution=spe,
                          model_overrides={"trainable_ei": cfg["model"]["trainable_ei"]}, **hp)
        resolved = {**cfg, "hyperparameters": {**hp, "batch_size": cfg["data"]["batch_size"]},
                    "luminosity": cfg["data"]["luminosity"], "epochs": cfg["train"]["epochs"],
                    "width": cfg["model"]["width"], "condition": cfg["condition"] or preset,
                    "steps_per_execution": spe}
        (tmp / "config.json").write_text(json.dumps(resolved, indent=2, default=str))

        n_probe = min(cfg["measures"]["probe_size"], len(x_test))
        probe_x, probe_y = x_test[:n_probe], y_test[:n_probe]
        monitor = DivergenceMonitor()
        callbacks = [train.sync_callback(), monitor]  # Keras epoch e reads stream e
        if cfg["measures"]["moments"]:
            callbacks.append(HiddenMoments(probe_x))
        if cfg["measures"]["alignment"]:
            callbacks.append(LayerNormAlignment(probe_x, probe_y))
        callbacks.append(_Progress(label, cfg["train"]["epochs"], printer).callback)
        printer(f"[train] {label}: {preset}, width {cfg['model']['width']}, "
                f"{cfg['train']['epochs']} epochs, lr_e={hp['lr_e']:g} lr_ie={hp['lr_ie']:g} "
                f"lr_ei={hp['lr_ei']:g} on {keras.backend.backend()}")
        fit_kwargs = {}
        if cfg["train"]["validate_each_epoch"]:
            fit_kwargs["validation_data"] = (x_test, y_test)
            fit_kwargs["validation_batch_size"] = 1000
        history = model.fit(train, epochs=cfg["train"]["epochs"], shuffle=False, verbose=0,
                            callbacks=callbacks, **fit_kwargs)
        write_history(tmp / "history.csv", history.history)
        train_time = time.time() - start
        evaluation = model.evaluate(x_test, y_test, batch_size=1000, verbose=0, return_dict=True)
        metrics = {
            "status": "diverged" if monitor.diverged else "ok",
            "test_accuracy": _finite_or_none(evaluation.get("accuracy")),
            "test_loss": _finite_or_none(evaluation.get("loss")),
            "diverged_step": monitor.step,
            "diverged_epoch": None if monitor.epoch is None else monitor.epoch + 1,
            "message": monitor.message,
            "preset": preset,
            "condition": cfg["condition"] or preset,
            "luminosity": cfg["data"]["luminosity"],
            "seed": cfg["seed"],
            "backend": keras.backend.backend(),
            "versions": library_versions(),
            "hyperparameters": resolved["hyperparameters"],
            "train_time_s": round(train_time, 2),
        }
        if not monitor.diverged:
            if cfg["measures"]["moments"]:
                metrics["moments"] = {f"hidden_{k}": {"mean": m, "var": v} for k, (m, v) in
                                      enumerate(moments(model, probe_x), start=1)}
            if cfg["measures"]["alignment"]:
                metrics["alignment"] = {
                    "output": output_alignment(model, probe_x),
                    "gradient": gradient_alignment(model, probe_x, probe_y),
                }
        if cfg["output"]["save_model"] and not monitor.diverged:
            model.save(tmp / "model.keras")
        metrics["wall_time_s"] = round(time.time() - start, 2)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    acc = metrics["test_accuracy"]
    printer(f"[done] {label}: " + (f"test accuracy {100 * acc:.2f} %" if acc is not None
                                   else "no accuracy") +
            (f" — DIVERGED: {metrics['message']}" if metrics["status"] == "diverged" else "") +
            f" ({metrics['wall_time_s']:.0f} s)")
    return metrics


def write_history(path, history: dict) -> None:
    """Write a Keras ``History.history`` dict as CSV: ``epoch`` then one column per key."""
    keys = sorted(history)
    n = max((len(v) for v in history.values()), default=0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for i in range(n):
            w.writerow([i + 1, *(history[k][i] if i < len(history[k]) else "" for k in keys)])


def read_history(run_dir) -> list[dict]:
    """The rows of a run directory's ``history.csv``."""
    with open(Path(run_dir) / "history.csv", newline="") as f:
        return list(csv.DictReader(f))
