"""Member-steps per second of the population trainer against the sequential ``fit`` path.

For each preset and width: the sequential path (``zoo.build`` + ``model.fit``, what
``run_experiment`` runs, ``steps_per_execution="auto"``) and populations of P members
(:mod:`ei_keras.population`'s compiled chunk: the stateless dual-loss step vectorized over P
stacked states), on random data of Fashion-MNIST's shape (the step's cost does not depend on
the values), on whatever device the backend finds (nothing here names one). Compile time is
reported apart (one warm-up call each). Each population member starts from the same state
(the arithmetic per member is the same as with distinct seeds).

Then: the per member-step time against the FLOP floor (``bench/flops.py``: the matmul FLOPs
of one step and, on a CPU, this machine's fp32 matmul rate), and the projected wall time of
the full protocol (1 200 runs x 50 epochs x 1 875 steps) at the best rate measured.

Usage::

    python bench/population.py --backend jax                      # P = 1, 8, 32, 128, 512
    python bench/population.py --backend jax --quick              # P = 1, 8, 32; width 234
    python bench/population.py --backend torch --quick --out bench/results/population-torch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PROTOCOL_MEMBER_STEPS = 1200 * 50 * 1875


def _sequential(preset, width, steps, batch=32):
    import numpy as np

    from ei_keras import zoo
    from ei_keras.experiment import resolve_steps_per_execution

    rng = np.random.default_rng(0)
    x = rng.random((steps * batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch).astype("int32")
    model = zoo.build(preset, width=width, seed=0,
                      steps_per_execution=resolve_steps_per_execution("auto"))
    t0 = time.perf_counter()
    model.fit(x[:batch * 32], y[:batch * 32], batch_size=batch, epochs=1, verbose=0,
              shuffle=False)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    dt = time.perf_counter() - t0
    return {"member_steps_s": steps / dt, "warmup_s": warm}


def _population(preset, width, members, chunks, batch=32):
    import numpy as np

    from ei_keras import population, zoo

    engine = population._engine()
    model = zoo.build(preset, width=width, seed=0)
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x0 = rng.random((batch, 784), dtype=np.float32)
    model.evaluate(x0, np.zeros(batch, "int32"), batch_size=batch, verbose=0)  # builds metrics
    carry = population.initial_carry([model] * members, model.metrics_variables)
    chunk = population.member_chunk(model, steps=1875, spe=1)  # an epoch of Fashion-MNIST
    k = max(1, min(population.MAX_CHUNK_STEPS,
                   population.CHUNK_BYTES // (members * x0.nbytes)))
    n = members
    xs = rng.random((k, n, batch, 784), dtype=np.float32)
    ys = rng.integers(0, 10, (k, n, batch)).astype("int32")

    def run(carry):
        carry = chunk(carry, xs, ys)
        engine.to_host(carry[2]["alive"])  # wait for the device
        return carry

    t0 = time.perf_counter()
    carry = run(carry)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(chunks):
        carry = run(carry)
    dt = time.perf_counter() - t0
    return {"member_steps_s": n * k * chunks / dt, "warmup_s": warm, "chunk_steps": k,
            "alive": int(engine.to_host(carry[2]["alive"]).sum())}


def _floor(preset, width, device_is_cpu):
    from flops import floors, flops, network_shapes

    fwd, bwd = network_shapes(preset, width)
    out = {"mflop_step": (flops(fwd) + flops(bwd)) / 1e6}
    if device_is_cpu:
        rec = floors([preset], [width], 32, threads=max(1, os.cpu_count() or 1))[0]
        out.update({"peak_gflops": rec["peak_gflops"],
                    "floor_member_steps_s": rec["floor_steps_s_peak"]})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"),
                    choices=["jax", "torch"])
    ap.add_argument("--quick", action="store_true",
                    help="P = 1, 8, 32, width 234, few steps (a loaded or small machine)")
    ap.add_argument("--sizes", default=None, help="comma-separated P (default 1,8,32,128,512)")
    ap.add_argument("--widths", default=None, help="comma-separated widths (default 234,500)")
    ap.add_argument("--presets", default="ei_ln,inorm_gradnorm")
    ap.add_argument("--member-steps", type=int, default=None,
                    help="member-steps timed per population (default 20 000; quick 2 000)")
    ap.add_argument("--out", default=None, help="folder for population.json and .md")
    args = ap.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    if args.backend == "torch":
        import torch  # noqa: F401  (before TensorFlow, which Keras may import)
    import keras

    sizes = [int(s) for s in (args.sizes or ("1,8,32" if args.quick else
                                             "1,8,32,128,512")).split(",")]
    widths = [int(w) for w in (args.widths or ("234" if args.quick else "234,500")).split(",")]
    presets = args.presets.split(",")
    budget = args.member_steps or (2000 if args.quick else 20000)
    device = _device(args.backend)
    cpu = device.startswith("cpu")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    meta = {"backend": args.backend, "keras": keras.__version__, "device": device,
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
            "load_before": load, "quick": args.quick}
    print(json.dumps(meta))
    rows = []
    for preset in presets:
        for width in widths:
            floor = _floor(preset, width, cpu)
            seq = _sequential(preset, width, steps=max(64, budget // 4))
            rows.append({"preset": preset, "width": width, "P": "sequential", **seq, **floor})
            print(json.dumps(rows[-1]), flush=True)
            for p in sizes:
                k = max(1, min(32, (64 * 2 ** 20) // (p * 32 * 784 * 4)))
                chunks = max(2, budget // (p * k))
                pop = _population(preset, width, p, chunks)
                rows.append({"preset": preset, "width": width, "P": p, **pop, **floor,
                             "speedup": pop["member_steps_s"] / seq["member_steps_s"]})
                print(json.dumps(rows[-1]), flush=True)
    meta["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    text = _table(rows, meta)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "population.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (out / "population.md").write_text(text)


def _device(backend) -> str:
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.platform}: {getattr(d, 'device_kind', d)}"
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return "cpu"


def _table(rows, meta) -> str:
    lines = [f"backend {meta['backend']}, device {meta['device']}, {meta['machine']}; load "
             f"{meta['load_before']} before, {meta['load_after']} after",
             "",
             "| preset | width | P | member-steps/s | × sequential | warm-up s | MFLOP/step | "
             "GFLOP/s achieved | of floor | protocol (1 200 × 50 epochs) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = r["member_steps_s"]
        gflops = rate * r["mflop_step"] / 1e3
        floor = r.get("floor_member_steps_s")
        hours = PROTOCOL_MEMBER_STEPS / rate / 3600
        lines.append(
            f"| {r['preset']} | {r['width']} | {r['P']} | {rate:,.0f} | "
            f"{r.get('speedup', 1.0):.2f} | {r['warmup_s']:.1f} | {r['mflop_step']:.1f} | "
            f"{gflops:.1f} | {f'{rate / floor:.0%}' if floor else '—'} | {hours:,.1f} h |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
