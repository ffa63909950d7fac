"""Backend comparison: the same preset and hyperparameters trained on TensorFlow, JAX and
PyTorch on real (luminosity-shifted Fashion-MNIST) data, side by side.

Each run is ``ei_keras.experiment.run_experiment`` in its own process (the Keras backend is
fixed at import) with the same configuration and seed: the same seed gives the same initial
weights (NumPy initialisation) and the same data stream on every backend, so the backends
differ only by floating-point rounding, which training then amplifies. To judge whether the
differences matter, the same configuration is also trained with other seeds on one backend
(seed noise). Reported per run: time of each epoch (the first includes tracing/compilation),
final training loss and accuracy, test loss and accuracy; then the largest difference between
backends against the spread over seeds.

Usage::

    python bench/backend_compare.py --presets inorm_gradnorm --epochs 3         # full data
    python bench/backend_compare.py --quick                                    # subset, 2 epochs
    python bench/backend_compare.py --out bench/results/backend_compare
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
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
# Explicit per-backend compilation (the "auto" of Keras gives TF *no* XLA on a CPU-only machine).
JIT = {"tensorflow": True, "jax": True, "torch": False}


def worker(args) -> None:
    """One training run in this process; emits one result line."""
    configure_threads(args.threads)
    os.environ["KERAS_BACKEND"] = args.backend
    import warnings

    warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept.*")
    if args.backend == "torch":
        import torch  # noqa: F401  (before anything imports TF)
    import keras  # noqa: F401

    if args.backend == "tensorflow":
        import tensorflow  # noqa: F401
    set_library_threads(args.threads)
    from ei_keras.experiment import run_experiment
    from ei_keras.run_directory import read_history

    stamps = []

    def printer(line):
        if "] epoch " in line:
            stamps.append((time.perf_counter(), time.process_time()))

    config = {
        "preset": args.preset, "seed": args.seed,
        "model": {"width": args.width},
        "data": {"luminosity": args.luminosity, "batch_size": 32,
                 "train_subset": args.train_subset, "test_subset": args.test_subset},
        "train": {"epochs": args.epochs, "jit_compile": JIT[args.backend]},
        "measures": {"moments": False, "alignment": False},
    }
    run_dir = Path(args.runs_dir) / f"{args.preset}-{args.backend}-seed{args.seed}"
    t0 = (time.perf_counter(), time.process_time())
    metrics = run_experiment(config, run_dir, printer=printer, overwrite=True)
    history = read_history(run_dir)
    # Epoch times from the progress callback's timestamps; the first also holds model build,
    # data preparation and compilation (measured from the start of run_experiment).
    epochs = [b[0] - a[0] for a, b in zip([t0] + stamps[:-1], stamps)]
    epochs_cpu = [b[1] - a[1] for a, b in zip([t0] + stamps[:-1], stamps)]
    last = history[-1] if history else {}
    emit({
        "kind": "train", "backend": args.backend, "preset": args.preset, "seed": args.seed,
        "width": args.width, "threads": args.threads, "jit_compile": JIT[args.backend],
        "epochs": args.epochs, "luminosity": args.luminosity, "status": metrics["status"],
        "epoch_s": epochs, "epoch_cpu_s": epochs_cpu, "train_loss": _f(last.get("loss")),
        "train_accuracy": _f(last.get("accuracy")), "test_loss": metrics["test_loss"],
        "test_accuracy": metrics["test_accuracy"], "train_time_s": metrics["train_time_s"],
        "history": [{k: _f(v) for k, v in row.items()} for row in history],
    })


def _f(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def table(records, meta) -> str:
    lines = [f"# Backend comparison ({meta['mode']})", "",
             f"- Width {meta['width']}, batch 32, luminosity {meta['luminosity']}, "
             f"{meta['epochs']} epochs, training samples: {meta['train_subset'] or 60000}, "
             f"test samples: {meta['test_subset'] or 10000}; T={meta['threads']} threads "
             "(OMP_WAIT_POLICY=PASSIVE); jit_compile: TF True (XLA), JAX True, torch False "
             "(eager). Load average before/after: "
             f"{meta['load_before']} / {meta['load_after']}.", ""]
    for preset in meta["presets"]:
        rows = [r for r in records if r.get("preset") == preset and r["kind"] == "train"]
        lines += [f"## {preset}", "",
                  "| backend | seed | epoch wall s (CPU s); 1st incl. data, build, compile | "
                  "train loss | train acc % | test loss | test acc % |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r["seed"], BACKENDS.index(r["backend"]))):
            times = ", ".join(f"{t:.1f} ({c:.1f})" for t, c in
                              zip(r["epoch_s"], r.get("epoch_cpu_s", r["epoch_s"])))
            acc = r["test_accuracy"]
            tr = r["train_accuracy"]
            lines.append(f"| {r['backend']} | {r['seed']} | {times} | {r['train_loss']:.6f} | "
                         f"{100 * tr:.2f} | {r['test_loss']:.6f} | "
                         f"{100 * acc:.2f} |" if acc is not None and tr is not None else
                         f"| {r['backend']} | {r['seed']} | {times} | — | — | — | "
                         f"{r['status']} |")
        for r in records:
            if r["kind"] == "error" and r.get("preset") == preset:
                lines.append(f"| {r.get('backend')} | {r.get('seed')} | failed: "
                             f"{r['error'][:100]} | | | | |")
        same_seed = [r for r in rows if r["seed"] == meta["seed"]
                     and r["test_accuracy"] is not None]
        seeds = [r for r in rows if r["backend"] == meta["noise_backend"]
                 and r["test_accuracy"] is not None]
        if len(same_seed) >= 2:
            accs = {r["backend"]: 100 * r["test_accuracy"] for r in same_seed}
            spread = max(accs.values()) - min(accs.values())
            dloss = max(r["test_loss"] for r in same_seed) - min(r["test_loss"] for r in same_seed)
            lines += ["", f"Seed {meta['seed']} on every backend: test accuracy "
                      + ", ".join(f"{b} {a:.2f} %" for b, a in accs.items())
                      + f"; largest difference between backends {spread:.2f} points "
                      f"(test loss: {dloss:.2e})."]
            if len(seeds) >= 2:
                sa = [100 * r["test_accuracy"] for r in seeds]
                sd = statistics.stdev(sa)
                rng = max(sa) - min(sa)
                verdict = "within" if spread <= max(rng, 2 * sd) else "OUTSIDE"
                lines.append(
                    f"Seed noise on {meta['noise_backend']} (seeds "
                    f"{', '.join(str(r['seed']) for r in seeds)}): test accuracy "
                    f"{', '.join(f'{a:.2f}' for a in sa)} %, range {rng:.2f} points, "
                    f"std {sd:.2f}. The backends agree {verdict} seed noise "
                    f"(difference {spread:.2f} vs seed range {rng:.2f} / 2 std {2 * sd:.2f}).")
            def med(r, k):
                v = r.get(k) or r["epoch_s"]
                return statistics.median(v[1:] or v)
            lines.append("Median time per epoch after the first, wall (CPU of the process): "
                         + ", ".join(f"{r['backend']} {med(r, 'epoch_s'):.1f} s "
                                     f"({med(r, 'epoch_cpu_s'):.1f} s)" for r in same_seed)
                         + ".")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="ei_ln,inorm_gradnorm")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--seed", type=int, default=0, help="the seed run on every backend")
    ap.add_argument("--noise-seeds", default="1,2",
                    help="extra seeds run on --noise-backend to estimate seed noise")
    ap.add_argument("--noise-backend", default="jax")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--luminosity", type=float, default=0.5)
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--test-subset", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="one preset, 6000 training / 2000 test samples, 2 epochs")
    ap.add_argument("--runs-dir", default=None, help="where run directories go (default: temp)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return worker(args)

    if args.quick:
        args.presets = args.presets if "--presets" in (argv or sys.argv) else "inorm_gradnorm"
        args.train_subset = args.train_subset or 6000
        args.test_subset = args.test_subset or 2000
    epochs = args.epochs or (2 if args.quick else 3)
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="ei_keras_backend_compare-")
    presets = args.presets.split(",")
    backends = args.backends.split(",")
    noise = [int(s) for s in args.noise_seeds.split(",") if s.strip()]
    meta = {"mode": "quick" if args.quick else "full", "presets": presets, "width": args.width,
            "epochs": epochs, "luminosity": args.luminosity, "threads": args.threads,
            "train_subset": args.train_subset, "test_subset": args.test_subset,
            "seed": args.seed, "noise_backend": args.noise_backend, "noise_seeds": noise,
            "load_before": [round(x, 2) for x in os.getloadavg()], "runs_dir": runs_dir}
    records = []
    jobs = [(p, b, args.seed) for p in presets for b in backends]
    jobs += [(p, args.noise_backend, s) for p in presets for s in noise if s != args.seed]
    for preset, backend, seed in jobs:
        cmd = [sys.executable, str(HERE / "backend_compare.py"), "--worker", "--backend",
               backend, "--preset", preset, "--seed", str(seed), "--epochs", str(epochs),
               "--width", str(args.width), "--luminosity", str(args.luminosity),
               "--threads", str(args.threads), "--runs-dir", runs_dir]
        for k in ("train_subset", "test_subset"):
            if getattr(args, k):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
        t0 = time.time()
        print(f"[{preset} {backend} seed {seed}]", file=sys.stderr, flush=True)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                               cwd=HERE.parent)
            res = parse_results(p.stdout)
            if p.returncode != 0 or not res:
                tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
                res = [{"kind": "error", "error": f"exit {p.returncode}: {' | '.join(tail)}"}]
        except subprocess.TimeoutExpired:
            res = [{"kind": "error", "error": f"timed out after {args.timeout:.0f} s"}]
        for r in res:
            r.setdefault("preset", preset)
            r.setdefault("backend", backend)
            r.setdefault("seed", seed)
            if r["kind"] == "train":
                print(f"    test acc {r['test_accuracy']}, epochs "
                      f"{[round(t, 1) for t in r['epoch_s']]} s ({time.time() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
            else:
                print(f"    ERROR {r['error']}", file=sys.stderr, flush=True)
        records += res
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    text = table(records, meta)
    print(text)
    if args.out:
        stem = write_outputs(args.out, "backend_compare", text, meta, records)
        print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
