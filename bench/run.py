"""ei_keras speed benchmark: every Keras backend against a plain-PyTorch peer, in one run.

Times training steps (784 -> width -> width -> 10, batch 32, float32, random data of
Fashion-MNIST shape) of the presets ``ei_ln``, ``inorm``, ``inorm_gradnorm`` and
``inorm_lateral`` under

- Keras/TensorFlow: ``fit`` with XLA (``jit_compile=True``) at ``steps_per_execution`` 1 and
  K, ``fit`` in graph mode without XLA (what ``jit_compile="auto"`` gives on a CPU-only
  machine), and a ``train_on_batch`` loop;
- Keras/JAX: ``fit`` (jit) at ``steps_per_execution`` 1 and K, and ``train_on_batch``;
- Keras/PyTorch: ``fit`` eager (``steps_per_execution`` must be 1 on torch), ``train_on_batch``
  and, with ``--keras-torch-compile``, ``fit`` with ``jit_compile=True`` (``torch.compile`` of
  Keras' train step; own process per preset, time-limited; measured: ~85 s to compile, no
  faster than eager, hence opt-in);
- the plain-PyTorch peer (bench/torch_peer.py, same math, checked with ``--check``): eager and
  ``torch.compile``.

Each backend runs in its own subprocess (the Keras backend is fixed at import) with the same
explicit thread setting (bench/_common.py: OpenMP/MKL/TF/XLA pools, ``OMP_WAIT_POLICY=PASSIVE``,
CPU affinity when fewer threads than CPUs). Reported: steps/s median of ``--repeats`` timed runs
(min-max), warm-up/compile wall time separately, the ratio to the eager and the compiled peer,
the fraction of the FLOP floor (bench/flops.py, measured matmul rate), and a width sweep.

Usage::

    python bench/run.py --quick --out bench/results/quick      # about 12-15 minutes
    python bench/run.py --out bench/results/full               # the full table, ~50 min
    python bench/run.py --threads 1,2 --presets ei_ln --sweep-presets none
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import PRESETS, parse_results, write_outputs  # noqa: E402

PY = sys.executable


def keras_contenders(backend: str, spe: int, quick: bool) -> list[dict]:
    """The Keras settings timed for one backend (one dict per contender, without preset)."""
    if backend == "tensorflow":
        out = [{"mode": "fit", "jit_compile": True, "spe": spe},
               {"mode": "fit", "jit_compile": False, "spe": spe},
               {"mode": "train_on_batch", "jit_compile": True}]
        if not quick:
            out.insert(0, {"mode": "fit", "jit_compile": True, "spe": 1})
            out.append({"mode": "fit", "jit_compile": False, "spe": 1})
        return out
    if backend == "jax":
        out = [{"mode": "fit", "jit_compile": True, "spe": spe},
               {"mode": "train_on_batch", "jit_compile": True}]
        if not quick:
            out.insert(0, {"mode": "fit", "jit_compile": True, "spe": 1})
        return out
    return [{"mode": "fit", "jit_compile": False, "spe": 1},
            {"mode": "train_on_batch", "jit_compile": False}]


def run_worker(cmd: list[str], timeout: float, log) -> list[dict]:
    """Run one worker process; its result lines (and a record if it died)."""
    t0 = time.time()
    print(f"  $ {' '.join(cmd[1:])[:160]}", file=log, flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
        res = parse_results(p.stdout)
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            res.append({"kind": "error", "error": f"exit {p.returncode}: {' | '.join(tail)}",
                        "cmd": " ".join(cmd[1:])})
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        res = parse_results(out)
        res.append({"kind": "error", "error": f"timed out after {timeout:.0f} s",
                    "cmd": " ".join(cmd[1:])})
    for r in res:
        if r["kind"] == "step":
            print(f"    {r['contender']:<36} {r['preset']:<15} w={r['width']:<5} "
                  f"T={r['threads']} {r['median']:8.1f} steps/s  (warm-up {r['warmup_s']:.1f} s)",
                  file=log, flush=True)
        elif r["kind"] == "error":
            print(f"    ERROR {r.get('contender', '')} {r.get('preset', '')}: {r['error']}",
                  file=log, flush=True)
    print(f"    ({time.time() - t0:.0f} s)", file=log, flush=True)
    return res


def machine_info() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "['keras', 'tensorflow-cpu', 'jax', 'jaxlib', 'torch', 'numpy']}))")
    try:
        versions = json.loads(subprocess.run([PY, "-c", code], capture_output=True, text=True,
                                             timeout=60).stdout)
    except Exception:  # versions are informative only
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


# ---------------------------------------------------------------------------------------------
# Tables


def fmt_rate(r: dict | None) -> str:
    if not r:
        return "—"
    return f"{r['median']:.1f} ({r['min']:.1f}–{r['max']:.1f})"


def ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b:
        return "—"
    return f"{a['median'] / b['median']:.2f}×"


def index(records):
    return {(r["contender"], r["preset"], r["width"], r["threads"]): r
            for r in records if r["kind"] == "step"}


def best_of(records, backend, preset, width, threads):
    """The fastest ``fit`` contender of a Keras backend (train_on_batch is informational)."""
    cands = [r for r in records if r["kind"] == "step" and r["backend"] == backend
             and r.get("mode") == "fit" and r["preset"] == preset and r["width"] == width
             and r["threads"] == threads]
    return max(cands, key=lambda r: r["median"]) if cands else None


def tables(records, meta) -> str:
    steps = [r for r in records if r["kind"] == "step"]
    fl = {(r["preset"], r["width"], r["threads"]): r for r in records if r["kind"] == "flops"}
    idx = index(records)
    width, threads_list = meta["width"], meta["threads"]
    lines = [f"# ei_keras training-step benchmark ({'quick' if meta['quick'] else 'full'} run)",
             "",
             f"- Machine: {meta['machine']['cpu']} ({meta['machine']['cpus']} CPUs), "
             f"{meta['machine']['platform']}; load average before/after: "
             f"{meta['load_before']} / {meta['load_after']}",
             f"- Versions: {meta['machine']['versions']}",
             f"- Width {width}, batch {meta['batch']}, float32, random data of Fashion-MNIST "
             f"shape; {meta['repeats']} timed runs of {meta['steps']} steps after a warm-up of "
             f"{meta['warmup']} steps; steps/s = median (min–max); K = steps_per_execution = "
             f"{meta['spe']}.",
             "- Threads: T = intra-op threads of every library (OpenMP/MKL, TF intra/inter-op, "
             "XLA Eigen pool, torch intra/inter-op), OMP_WAIT_POLICY=PASSIVE; T=1 also pins "
             "the process to one CPU.",
             "- steps per CPU-s: steps divided by the CPU time of the contender's process (all "
             "its threads); on a busy machine it is far less disturbed than wall-clock steps/s "
             "(read it as work per step; with T=2 it counts both threads).",
             f"- Wall time of the benchmark: {meta['wall_s'] / 60:.1f} min.", ""]
    pc = meta.get("peer_check")
    if pc:
        lines += [f"- Peer check (`python bench/torch_peer.py --check`): "
                  f"{'passed' if pc['ok'] else 'FAILED'} — the plain-PyTorch peer starts from the "
                  "library's weights and matches its losses and weights after SGD steps:", ""]
        lines += [f"      {ln}" for ln in pc["lines"]] + [""]

    lines += ["## FLOP floor of one training step (matmuls of forward + backward)", "",
              "| preset | width | MFLOP fwd + bwd = step | matmuls | T | peak GFLOP/s "
              "(2048³) | per-shape GFLOP/s | floor steps/s (per-shape) | floor at peak |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (p, w, t), r in sorted(fl.items(), key=lambda kv: (kv[0][1] != width, kv[0][1],
                                                          kv[0][2], PRESETS.index(kv[0][0])
                                                          if kv[0][0] in PRESETS else 9)):
        lines.append(f"| {p} | {w} | {r['mflop_fwd']:.1f} + {r['mflop_bwd']:.1f} = "
                     f"{r['mflop_step']:.1f} | {r['n_matmuls']} | {t} | {r['peak_gflops']:.1f} | "
                     f"{r['effective_gflops_shapes']:.1f} | {r['floor_steps_s_shapes']:.0f} | "
                     f"{r['floor_steps_s_peak']:.0f} |")
    lines.append("")

    for t in threads_list:
        lines += [f"## Steps/s at width {width}, T={t}", "",
                  "| preset | contender | settings | warm-up s (steps) | steps/s median "
                  "(min–max) | × peer eager | × peer compiled | % of FLOP floor | "
                  "steps per CPU-s (× compiled peer) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in meta["presets"]:
            pe = idx.get(("torch-peer-eager", p, width, t))
            pc = idx.get(("torch-peer-compiled", p, width, t))
            floor = fl.get((p, width, t))
            rows = [r for r in steps if r["preset"] == p and r["width"] == width
                    and r["threads"] == t]
            order = {"tensorflow": 0, "jax": 1, "torch": 2, "pytorch": 3}
            rows.sort(key=lambda r: (order.get(r["backend"], 9), r["contender"]))
            for r in rows:
                pct = f"{100 * r['median'] / floor['floor_steps_s_shapes']:.0f} %" if floor \
                    else "—"
                cpu = f"{r['cpu_median']:.1f}" if r.get("cpu_median") else "—"
                if r.get("cpu_median") and pc and pc.get("cpu_median"):
                    cpu += f" ({r['cpu_median'] / pc['cpu_median']:.2f}×)"
                lines.append(f"| {p} | {r['contender']} | {r['settings']} | "
                             f"{r['warmup_s']:.1f} ({r['warmup_steps']}) | {fmt_rate(r)} | "
                             f"{ratio(r, pe)} | {ratio(r, pc)} | {pct} | {cpu} |")
            for r in records:
                if r["kind"] == "error" and r.get("preset") == p and r.get("threads") == t \
                        and r.get("width", width) == width:
                    lines.append(f"| {p} | {r.get('contender', '?')} | — | — | failed: "
                                 f"{r['error'][:80]} | — | — | — | — |")
        lines.append("")

        lines += [f"### Target check at width {width}, T={t}: fastest Keras backend ≥ 1.0× "
                  "the compiled peer, none below 0.5×", "",
                  "| preset | peer compiled | best TF fit | best JAX fit | best torch fit | "
                  "fastest / peer | slowest / peer | met | same by steps per CPU-s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in meta["presets"]:
            pc = idx.get(("torch-peer-compiled", p, width, t)) or \
                idx.get(("torch-peer-eager", p, width, t))
            bests = [best_of(records, b, p, width, t) for b in ("tensorflow", "jax", "torch")]
            ok = [b for b in bests if b]
            if not pc or not ok:
                continue
            hi = max(ok, key=lambda r: r["median"])
            lo = min(ok, key=lambda r: r["median"])
            met = hi["median"] >= pc["median"] and lo["median"] >= 0.5 * pc["median"]
            cells = [f"{b['median']:.1f} ({b['contender'].split(' ', 1)[1]})" if b else "—"
                     for b in bests]
            peer_name = "" if pc["contender"].endswith("compiled") else " (eager: no compiled)"
            by_cpu = "—"
            if pc.get("cpu_median") and all(b.get("cpu_median") for b in ok):
                c = [b["cpu_median"] / pc["cpu_median"] for b in ok]
                by_cpu = f"{max(c):.2f}× / {min(c):.2f}×"
            lines.append(f"| {p} | {pc['median']:.1f}{peer_name} | {' | '.join(cells)} | "
                         f"{ratio(hi, pc)} | {ratio(lo, pc)} | {'yes' if met else 'NO'} | "
                         f"{by_cpu} |")
        lines.append("")

    sweep = meta.get("sweep")
    if sweep:
        t = sweep["threads"]
        for p in sweep["presets"]:
            lines += [f"## Width sweep: {p}, T={t} (steps/s median (× compiled peer) · steps "
                      "per CPU-s)", "",
                      "| width | MFLOP/step | floor steps/s | " +
                      " | ".join(sweep["contenders"]) + " |",
                      "|---|---|---|" + "---|" * len(sweep["contenders"])]
            for w in sweep["widths"]:
                f = fl.get((p, w, t))
                if p.startswith("inorm") and w > 784:
                    lines.append(f"| {w} | — | — | " + " | ".join(
                        "n/a (INormDense needs input width ≥ units)"
                        for _ in sweep["contenders"]) + " |")
                    continue
                pc = idx.get(("torch-peer-compiled", p, w, t))
                cells = []
                for c in sweep["contenders"]:
                    r = idx.get((c, p, w, t))
                    cells.append("—" if not r else f"{r['median']:.1f}" +
                                 (f" ({ratio(r, pc)})" if pc else "") +
                                 (f" · {r['cpu_median']:.0f}" if r.get("cpu_median") else ""))
                lines.append(f"| {w} | {f['mflop_step']:.1f} | {f['floor_steps_s_shapes']:.0f} | "
                             if f else f"| {w} | — | — | ")
                lines[-1] += " | ".join(cells) + " |"
            lines.append("")
    return "\n".join(lines)


def figure(records, meta, path) -> None:
    """``path``: steps/s of each contender per preset (first thread setting, log scale) and,
    if there is a width sweep, steps/s against width with the FLOP floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = meta["threads"][0]
    steps = [r for r in records if r["kind"] == "step" and r["width"] == meta["width"]
             and r["threads"] == t and r.get("median")]
    presets = [p for p in meta["presets"] if any(r["preset"] == p for r in steps)]
    contenders = sorted({r["contender"] for r in steps},
                        key=lambda c: (not c.startswith("torch-peer"), c))
    sweep = meta.get("sweep")
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(13 if sweep else 8, 4.8),
                             squeeze=False)
    ax = axes[0][0]
    idx = index(records)
    bar_w = 0.8 / max(1, len(contenders))
    for i, c in enumerate(contenders):
        vals = [(idx.get((c, p, meta["width"], t)) or {}).get("median", 0) for p in presets]
        ax.bar([k + i * bar_w for k in range(len(presets))], vals, bar_w, label=c,
               color=plt.cm.tab20(i % 20), hatch="//" if c.startswith("torch-peer") else None)
    ax.set_xticks([k + 0.4 - bar_w / 2 for k in range(len(presets))], presets)
    ax.set_yscale("log")
    ax.set_ylabel("training steps / s (median, wall)")
    ax.set_title(f"width {meta['width']}, batch {meta['batch']}, T={t}")
    ax.legend(fontsize=6, ncol=2)
    if sweep:
        ax = axes[0][1]
        fl = {(r["preset"], r["width"]): r for r in records
              if r["kind"] == "flops" and r["threads"] == sweep["threads"]}
        styles = ("-", ":", "-.", "--")
        for j, p in enumerate(sweep["presets"]):
            for i, c in enumerate(sweep["contenders"]):
                pts = [(w, idx[(c, p, w, sweep["threads"])]["median"]) for w in sweep["widths"]
                       if (c, p, w, sweep["threads"]) in idx]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ls=styles[j % len(styles)],
                            color=plt.cm.tab10(i % 10), label=f"{p}: {c}")
            floor = [(w, fl[(p, w)]["floor_steps_s_shapes"]) for w in sweep["widths"]
                     if (p, w) in fl]
            if floor:
                ax.plot(*zip(*floor), color="k", lw=1, ls=styles[j % len(styles)],
                        label=f"{p}: matmul FLOP floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("hidden width")
        ax.set_ylabel("training steps / s")
        ax.set_title(f"width sweep, T={sweep['threads']}")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short run: fewer steps/repeats/contenders (checks that all works)")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--backends", default="tensorflow,jax,torch,peer")
    ap.add_argument("--threads", default=None, help="comma-separated (default 1,2; quick: 1)")
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="steps per timed run")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (compile included)")
    ap.add_argument("--spe", type=int, default=32, help="steps_per_execution K for TF/JAX fit")
    ap.add_argument("--sweep-widths", default="100,250,500,1000")
    ap.add_argument("--sweep-presets", default=None,
                    help="presets of the width sweep ('none' to skip; default ei_ln, full run "
                         "also inorm_gradnorm)")
    ap.add_argument("--keras-torch-compile", action="store_true",
                    help="also time Keras/torch fit with jit_compile=True (torch.compile; "
                         "~85 s compile per preset)")
    ap.add_argument("--no-peer-compile", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per worker process")
    ap.add_argument("--out", default=None,
                    help="write OUT.md (tables), OUT.json (all records) and OUT.png (figure); "
                         "a folder or a stem")
    ap.add_argument("--plot-only", default=None, metavar="JSON",
                    help="redraw the tables and figure of an earlier run's OUT.json")
    args = ap.parse_args(argv)

    if args.plot_only:
        saved = json.loads(Path(args.plot_only).read_text())
        print(tables(saved["records"], saved["meta"]))
        png = Path(args.plot_only).with_suffix(".png")
        figure(saved["records"], saved["meta"], png)
        print(f"\nwrote {png}", file=sys.stderr)
        return
    q = args.quick
    threads = [int(t) for t in (args.threads or ("1" if q else "1,2")).split(",")]
    steps = args.steps or (64 if q else 640)
    repeats = args.repeats or 3
    warmup = args.warmup or (args.spe if q else 2 * args.spe)
    presets = args.presets.split(",")
    backends = args.backends.split(",")
    sweep_presets = (args.sweep_presets or ("ei_ln" if q else "ei_ln,inorm_gradnorm"))
    sweep_presets = [] if sweep_presets == "none" else sweep_presets.split(",")
    sweep_widths = [int(w) for w in args.sweep_widths.split(",")]
    keras_torch_compile = args.keras_torch_compile
    width = args.width
    log = sys.stderr
    common = ["--batch", str(args.batch), "--steps", str(steps), "--repeats", str(repeats),
              "--warmup", str(warmup)]

    meta = {"quick": q, "width": width, "batch": args.batch, "steps": steps, "repeats": repeats,
            "warmup": warmup, "spe": args.spe, "threads": threads, "presets": presets,
            "load_before": [round(x, 2) for x in os.getloadavg()], "machine": machine_info()}
    t_start = time.time()
    records: list[dict] = []

    # 0. The peer computes the library's math (same init, losses and weights after SGD steps).
    if "peer" in backends:
        print("[peer --check]", file=log)
        p = subprocess.run([PY, str(HERE / "torch_peer.py"), "--check", "--threads", "1"],
                           capture_output=True, text=True, timeout=args.timeout, cwd=HERE.parent)
        meta["peer_check"] = {"ok": p.returncode == 0, "lines": [
            ln.strip() for ln in p.stdout.splitlines() if ln.strip()][-5:]}
        print("    " + "\n    ".join(meta["peer_check"]["lines"]), file=log)

    # 1. FLOP floors (matmul rates under each thread setting).
    for t in threads:
        ws = sorted({width, *(sweep_widths if sweep_presets and t == threads[0] else [])})
        ps = sorted(set(presets) | set(sweep_presets), key=lambda p: PRESETS.index(p)
                    if p in PRESETS else 9)
        print(f"[flops] T={t}", file=log)
        records += run_worker([PY, str(HERE / "flops.py"), "--json", "--threads", str(t),
                               "--presets", ",".join(ps), "--widths", ",".join(map(str, ws)),
                               "--batch", str(args.batch),
                               "--min-time", "0.1" if q else "0.3"], args.timeout, log)

    # 2. Main table: every backend, every preset, each thread setting.
    def keras_run(backend, t, spec, timeout=args.timeout):
        return run_worker([PY, str(HERE / "keras_worker.py"), "--backend", backend,
                           "--threads", str(t), "--width", str(width), "--spec",
                           json.dumps(spec), *common], timeout, log)

    def peer_run(t, ps, widths, compile_):
        cmd = [PY, str(HERE / "torch_peer.py"), "--json", "--threads", str(t), "--presets",
               ",".join(ps), "--widths", ",".join(map(str, widths)), *common]
        if compile_:
            cmd.append("--compile")
        return run_worker(cmd, args.timeout, log)

    for t in threads:
        for backend in backends:
            print(f"[{backend}] T={t}", file=log)
            if backend == "peer":
                records += peer_run(t, presets, [width], False)
                if not args.no_peer_compile:
                    records += peer_run(t, presets, [width], True)
                continue
            spec = [{"preset": p, **c} for p in presets
                    for c in keras_contenders(backend, args.spe, q)]
            records += keras_run(backend, t, spec)
            if backend == "torch" and keras_torch_compile:
                for p in presets:  # one process each: a hung compile cannot take the rest
                    records += keras_run("torch", t, [{"preset": p, "mode": "fit",
                                                       "jit_compile": True, "spe": 1}],
                                         timeout=min(args.timeout, 900))

    # 3. Width sweep at the first thread setting, the best settings of each backend.
    if sweep_presets:
        t = threads[0]
        have = index(records)
        spe_c = {"tensorflow": {"mode": "fit", "jit_compile": True, "spe": args.spe},
                 "jax": {"mode": "fit", "jit_compile": True, "spe": args.spe},
                 "torch": {"mode": "fit", "jit_compile": False, "spe": 1}}
        names = {"tensorflow": f"keras-tensorflow fit xla spe={args.spe}",
                 "jax": f"keras-jax fit jit spe={args.spe}", "torch": "keras-torch fit eager spe=1"}
        contenders = [names[b] for b in ("tensorflow", "jax", "torch") if b in backends]
        if "peer" in backends:
            contenders += ["torch-peer-eager"] + ([] if args.no_peer_compile
                                                  else ["torch-peer-compiled"])
        for backend in [b for b in ("tensorflow", "jax", "torch") if b in backends]:
            spec = [{"preset": p, "width": w, **spe_c[backend]} for p in sweep_presets
                    for w in sweep_widths if (names[backend], p, w, t) not in have
                    and not (p.startswith("inorm") and w > 784)]
            if spec:
                print(f"[sweep {backend}] T={t}", file=log)
                records += keras_run(backend, t, spec)
        if "peer" in backends:
            for compile_, name in ((False, "torch-peer-eager"), (True, "torch-peer-compiled")):
                if compile_ and args.no_peer_compile:
                    continue
                for p in sweep_presets:
                    ws = [w for w in sweep_widths if (name, p, w, t) not in have
                          and not (p.startswith("inorm") and w > 784)]
                    if ws:
                        print(f"[sweep {name}] {p} T={t}", file=log)
                        records += peer_run(t, [p], ws, compile_)
        meta["sweep"] = {"threads": t, "presets": sweep_presets, "widths": sweep_widths,
                         "contenders": contenders}

    meta["wall_s"] = time.time() - t_start
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    text = tables(records, meta)
    print(text)
    if args.out:
        stem = write_outputs(args.out, "benchmark", text, meta, records)
        figure(records, meta, stem.with_suffix(".png"))
        print(f"\nwrote {stem.with_suffix('.md')}, .json and .png", file=log)


if __name__ == "__main__":
    main()
