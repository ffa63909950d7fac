"""Times ei_keras training steps under ONE Keras backend (run by bench/run.py, one process per
backend and thread setting, since the backend is fixed when Keras is imported).

For every (preset, contender) of the spec it builds ``zoo.build(preset, width, seed=0,
jit_compile=..., steps_per_execution=...)`` and times

- ``fit``: ``model.fit(X, Y, batch_size, epochs=1, shuffle=False, verbose=0)`` on NumPy arrays
  of ``steps * batch`` random Fashion-MNIST-shaped samples (784 floats in [0, 1], labels 0-9):
  steps/s of each of ``repeats`` calls, after one warm-up ``fit`` of ``warmup`` steps whose wall
  time (tracing, XLA / inductor compilation, first steps) is reported separately;
- ``train_on_batch``: a Python loop of ``model.train_on_batch`` (returns the logs as floats, so
  one host sync per step): the per-step overhead a hand-written Keras loop pays.

Usage (normally through bench/run.py)::

    python bench/keras_worker.py --backend jax --threads 1 \
        --spec '[{"preset": "ei_ln", "mode": "fit", "jit_compile": true, "spe": 32}]'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import N_IN, N_OUT, configure_threads, emit, set_library_threads, summarize  # noqa: E402,I001


def contender_name(c: dict, backend: str) -> str:
    jit = c.get("jit_compile", "auto")
    if backend == "tensorflow":
        j = "xla" if jit is True else "graph" if jit is False else "auto"
    elif backend == "jax":
        j = "jit" if jit is not False else "eager"
    else:
        j = "torch.compile" if jit is True else "eager"
    spe = c.get("spe", 1)
    return f"{c['mode']} {j}" + (f" spe={spe}" if c["mode"] == "fit" else "")


def time_one(c: dict, width: int, batch: int, steps: int, repeats: int, warmup: int,
             threads: int) -> dict:
    import keras
    import numpy as np

    from ei_keras import zoo

    backend = keras.backend.backend()
    spe = int(c.get("spe", 1))
    keras.utils.set_random_seed(0)
    t_build = time.perf_counter()
    model = zoo.build(c["preset"], width=width, seed=0, jit_compile=c.get("jit_compile", "auto"),
                      steps_per_execution=spe)
    build_s = time.perf_counter() - t_build
    rng = np.random.default_rng(0)
    n = max(steps, warmup)
    X = rng.random((n * batch, N_IN), dtype=np.float32)
    Y = rng.integers(0, N_OUT, n * batch).astype("int32")
    rates, cpu_rates = [], []
    if c["mode"] == "fit":
        t0 = time.perf_counter()
        h = model.fit(X[:warmup * batch], Y[:warmup * batch], batch_size=batch, epochs=1,
                      shuffle=False, verbose=0)
        warm = time.perf_counter() - t0
        Xs, Ys = X[:steps * batch], Y[:steps * batch]
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            h = model.fit(Xs, Ys, batch_size=batch, epochs=1, shuffle=False, verbose=0)
            rates.append(steps / (time.perf_counter() - t0))
            cpu_rates.append(steps / (time.process_time() - c0))
        final = float(h.history["loss"][-1])
    elif c["mode"] == "train_on_batch":
        xb = [X[i * batch:(i + 1) * batch] for i in range(n)]
        yb = [Y[i * batch:(i + 1) * batch] for i in range(n)]
        t0 = time.perf_counter()
        for i in range(warmup):
            logs = model.train_on_batch(xb[i], yb[i])
        warm = time.perf_counter() - t0
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(steps):
                logs = model.train_on_batch(xb[i], yb[i])
            rates.append(steps / (time.perf_counter() - t0))
            cpu_rates.append(steps / (time.process_time() - c0))
        final = float(logs[0] if isinstance(logs, (list, tuple)) else logs)
    else:
        raise ValueError(f"Unknown mode {c['mode']!r}")
    return {
        "kind": "step", "contender": f"keras-{backend} " + contender_name(c, backend),
        "backend": backend, "preset": c["preset"], "width": width, "batch": batch,
        "threads": threads, "mode": c["mode"], "jit_compile": model.jit_compile,
        "steps_per_execution": spe,
        "settings": f"jit_compile={model.jit_compile}, steps_per_execution={spe}",
        "build_s": build_s, "warmup_s": warm, "warmup_steps": warmup, "steps": steps,
        "final_loss": final, **summarize(rates, cpu_rates),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", required=True, choices=["tensorflow", "jax", "torch"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--spec", required=True, help="JSON list of contenders")
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=64)
    args = ap.parse_args(argv)
    configure_threads(args.threads)
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept.*")
    if args.backend == "torch":
        import torch  # noqa: F401  (before anything imports TF: see STYLE.md)
    import keras  # noqa: F401

    if args.backend == "tensorflow":
        import tensorflow  # noqa: F401
    set_library_threads(args.threads)
    for c in json.loads(args.spec):
        width = int(c.get("width", args.width))
        try:
            r = time_one(c, width, args.batch, args.steps, args.repeats, args.warmup,
                         args.threads)
        except Exception as e:  # report and go on with the other contenders
            r = {"kind": "error", "backend": args.backend, "preset": c["preset"],
                 "width": width, "threads": args.threads,
                 "contender": f"keras-{args.backend} " + contender_name(c, args.backend),
                 "error": f"{type(e).__name__}: {str(e)[:300]}"}
        emit(r)


if __name__ == "__main__":
    main()
