"""FLOP floor of one training step (forward + backward) of the ei_keras presets.

Counts the matmul FLOPs (``2 m k n`` for an ``(m, k) @ (k, n)`` product) that the library's
math needs — exactly the products :class:`ei_keras.layers.EIDense` and
:class:`ei_keras.layers.INormDense` compute, and only the gradients that reach a trained
variable — and turns them into a time floor with this machine's measured fp32 matmul rate
(``torch.mm``, each distinct shape measured on its own, plus a large 2048^3 product for the
peak). Element-wise work (LayerNorm, GradNorm, ReLU, loss, SGD, constraints) is
``O(batch * width + #params)`` per step and left out; so the floor is a lower bound that no
implementation can beat, and ``steps/s / floor steps/s`` is the fraction of the machine a
contender uses.

Usage::

    python bench/flops.py --width 500 --threads 1          # table for the four presets
    python bench/flops.py --width 500 --threads 1 --json   # one JSON line per preset
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import N_IN, N_OUT, PRESETS, configure_threads, emit  # noqa: E402


def ei_layer(B, d, ne, ni, need_dx, trainable_ei=True):
    """EIDense ``z = x W_EE^T - (x W_IE^T) W_EI^T + b`` with W_EE, W_IE (and W_EI) trained."""
    fwd = [(B, d, ne), (B, d, ni), (B, ni, ne)]
    bwd = [(ne, B, d), (B, ne, ni), (ni, B, d)]                  # dW_EE, g_h, dW_IE
    if trainable_ei:
        bwd.append((ne, B, ni))                                  # dW_EI
    if need_dx:
        bwd += [(B, ne, d), (B, ni, d)]                          # dx via W_EE and via W_IE
    return fwd, bwd


def inorm_layer(B, d, ne, ni, need_dx, trainable_ei=True, subtractive_only=False):
    """INormDense: task path through W_EE only (x is stop-gradiented in the inhibitory paths);
    the normalization loss reaches W_IE, W_EI and the divisive B_IE, B_EI (ne x ne)."""
    fwd = [(B, d, ne), (B, d, ni), (B, ni, ne)]                  # W_EE, W_IE, W_EI
    bwd = [(ne, B, d), (B, ne, ni), (ni, B, d)]                  # dW_EE, g_h, dW_IE
    if trainable_ei:
        bwd.append((ne, B, ni))                                  # dW_EI
    if not subtractive_only:
        fwd += [(B, d, ne), (B, ne, ne)]                         # B_IE, B_EI
        bwd += [(B, ne, ne), (ne, B, d)]                         # g_q = g_p B_EI, dB_IE
        if trainable_ei:
            bwd.append((ne, B, ne))                              # dB_EI
    if need_dx:
        bwd.append((B, ne, d))                                   # dx via W_EE
    return fwd, bwd


def network_shapes(preset: str, width: int, batch: int = 32, depth: int = 2,
                   trainable_ei: bool = True):
    """``(forward, backward)`` lists of ``(m, k, n)`` matmul shapes of one training step."""
    ni = max(1, width // 10)
    layers = []
    d = N_IN
    for i in range(depth):
        if preset in ("ei", "ei_ln"):
            layers.append(ei_layer(batch, d, width, ni, i > 0))
        elif preset.startswith("inorm"):
            layers.append(inorm_layer(batch, d, width, ni, i > 0, trainable_ei,
                                      subtractive_only=preset == "inorm_sub"))
        else:
            raise ValueError(f"No FLOP model for preset {preset!r}")
        d = width
    layers.append(ei_layer(batch, d, N_OUT, 1, True))
    return [s for f, _ in layers for s in f], [s for _, b in layers for s in b]


def flops(shapes) -> int:
    return sum(2 * m * k * n for m, k, n in shapes)


def mm_gflops(m, k, n, min_time=0.2, reps=3):
    """Best-of-``reps`` fp32 ``torch.mm`` rate for one shape, in GFLOP/s.

    With one thread, each repeat's rate is the larger of the wall-clock and the CPU-time rate:
    equal on a quiet machine, and the second is not lowered when other processes take the
    core away (which would make the floor too pessimistic). With more threads (whose CPU time
    adds up) the wall-clock rate is used."""
    import torch

    threads = torch.get_num_threads()
    a, b = torch.rand(m, k), torch.rand(k, n)
    out = torch.empty(m, n)
    for _ in range(5):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(reps):
        it, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            torch.mm(a, b, out=out)
            it += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        dc = max(time.process_time() - c0, 1e-9)
        work = 2 * m * k * n * it / 1e9
        best = max(best, work / dt, work / dc if threads == 1 else 0.0)
    return best


def floors(presets, widths, batch, threads, min_time=0.2):
    """One record per (preset, width): MFLOP/step and the floor in steps/s."""
    import torch

    torch.set_num_threads(threads)
    peak = mm_gflops(2048, 2048, 2048, min_time=max(0.5, min_time))
    rate: dict = {}
    out = []
    for width in widths:
        for preset in presets:
            if preset.startswith("inorm") and width > N_IN:
                continue  # INormDense's SVD init needs input width >= units
            fwd, bwd = network_shapes(preset, width, batch)
            for s in set(fwd + bwd):
                if s not in rate:
                    rate[s] = mm_gflops(*s, min_time=min_time)
            t = sum(2 * m * k * n / (rate[(m, k, n)] * 1e9) for m, k, n in fwd + bwd)
            total = flops(fwd) + flops(bwd)
            out.append({
                "kind": "flops", "preset": preset, "width": width, "batch": batch,
                "threads": threads, "mflop_fwd": flops(fwd) / 1e6, "mflop_bwd": flops(bwd) / 1e6,
                "mflop_step": total / 1e6, "n_matmuls": len(fwd) + len(bwd),
                "peak_gflops": peak, "floor_steps_s_peak": peak * 1e9 / total,
                "floor_steps_s_shapes": 1.0 / t, "effective_gflops_shapes": total / t / 1e9,
            })
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--widths", default="500")
    ap.add_argument("--width", type=int, default=None, help="shorthand for --widths W")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per rate measurement")
    ap.add_argument("--json", action="store_true", help="machine-readable output lines")
    args = ap.parse_args(argv)
    configure_threads(args.threads)
    widths = [args.width] if args.width else [int(w) for w in args.widths.split(",")]
    records = floors(args.presets.split(","), widths, args.batch, args.threads, args.min_time)
    for r in records:
        if args.json:
            emit(r)
        else:
            print(f"{r['preset']:>15} width {r['width']:5d}: {r['mflop_fwd']:6.1f} + "
                  f"{r['mflop_bwd']:6.1f} = {r['mflop_step']:6.1f} MFLOP/step "
                  f"({r['n_matmuls']} matmuls); floor {r['floor_steps_s_shapes']:7.0f} steps/s at "
                  f"per-shape rates ({r['effective_gflops_shapes']:.1f} GFLOP/s), "
                  f"{r['floor_steps_s_peak']:7.0f} at the 2048^3 peak "
                  f"({r['peak_gflops']:.1f} GFLOP/s), threads={args.threads}")


if __name__ == "__main__":
    main()
