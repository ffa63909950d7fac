"""Mixed precision: a preset trained on Fashion-MNIST under float32, ``mixed_float16`` and
``mixed_bfloat16``, on every backend, from the same initial weights on the same batches.

What it shows: the training loss of each epoch and the test accuracy under each policy (a
dual-loss step that does not scale its losses under ``mixed_float16`` barely moves: its updates
are 2**-15 of float32's), the loss scale the loss-scale optimizer settled on, and the time.
Each backend runs in its own process (the backend is fixed when Keras is imported). On a CPU
float16 and bfloat16 are emulated, so the times say nothing of a GPU's.

Usage::

    python bench/mixed_precision.py                            # inorm_gradnorm, 3 backends
    python bench/mixed_precision.py --presets inorm_gradnorm,ei_ln --train 8192 --epochs 3
    python bench/mixed_precision.py --out bench/results/mixed-precision
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    configure_threads,
    emit,
    parse_results,
    set_library_threads,
    write_outputs,
)

BACKENDS = ("tensorflow", "jax", "torch")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def worker(args) -> None:
    """Every preset and policy on one backend, in this process; one result line per run."""
    configure_threads(args.threads)
    os.environ["KERAS_BACKEND"] = args.backend
    import warnings

    warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept.*")
    if args.backend == "torch":
        import torch  # noqa: F401  (before anything imports TF)
    import keras
    import numpy as np

    set_library_threads(args.threads)
    from ei_keras import zoo
    from ei_keras.data import load_fashion_mnist

    (x, y), (xt, yt) = load_fashion_mnist()
    x, y, xt, yt = x[:args.train], y[:args.train], xt[:args.test], yt[:args.test]
    for preset in args.presets.split(","):
        for policy in POLICIES:
            keras.config.set_dtype_policy(policy)
            try:
                model = zoo.build(preset, width=args.width, seed=0)
                start = time.perf_counter()
                history = model.fit(x, y, batch_size=32, epochs=args.epochs, shuffle=False,
                                    verbose=0)
                seconds = time.perf_counter() - start
                _, accuracy = (model.evaluate(xt, yt, batch_size=500, verbose=0,
                                              return_dict=True)[k]
                               for k in ("loss", "accuracy"))
            finally:
                keras.config.set_dtype_policy("float32")
            scale = getattr(model.optimizer, "dynamic_scale", None)
            emit({"backend": args.backend, "preset": preset, "policy": policy,
                  "loss": [round(v, 4) for v in history.history["loss"]],
                  "test_accuracy": round(float(accuracy), 4),
                  "loss_scale": None if scale is None else float(np.asarray(scale)),
                  "seconds": round(seconds, 1)})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--presets", default="inorm_gradnorm")
    p.add_argument("--width", type=int, default=100)
    p.add_argument("--train", type=int, default=4096, help="first N training images")
    p.add_argument("--test", type=int, default=2000, help="first N test images")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="folder or file stem for .md and .json")
    p.add_argument("--backend", help=argparse.SUPPRESS)  # the worker's
    args = p.parse_args(argv)
    if args.backend:
        worker(args)
        return 0
    records = []
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--backend", backend, "--presets", args.presets,
               "--width", str(args.width), "--train", str(args.train), "--test",
               str(args.test), "--epochs", str(args.epochs), "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr[-3000:])
            print(f"error: the {backend} worker failed (exit {done.returncode})",
                  file=sys.stderr)
            return 1
        records += parse_results(done.stdout)
    lines = [f"{args.train} Fashion-MNIST training images, batch 32, {args.epochs} epochs, "
             f"width {args.width}, seed 0; test accuracy on {args.test} test images.", "",
             "| backend | preset | policy | training loss per epoch | test accuracy | "
             "loss scale | seconds |", "|---|---|---|---|---|---|---|"]
    for r in records:
        scale = "—" if r["loss_scale"] is None else f"{r['loss_scale']:g}"
        lines.append(f"| {r['backend']} | {r['preset']} | {r['policy']} | "
                     f"{' → '.join(f'{v:.4f}' for v in r['loss'])} | "
                     f"{r['test_accuracy']:.4f} | {scale} | {r['seconds']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_outputs(args.out, "mixed-precision", text, vars(args), records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
