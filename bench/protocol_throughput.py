"""Protocol throughput: `reproduce --population` against `reproduce --jobs 2`, side by side.

Issue 22's measure: the same cells of one recipe (default fig5, `--configs` configurations per
cell, 3 epochs) trained twice, each into a fresh temporary folder, by the real command line
(`python -m ei_keras.cli reproduce ... --backend jax`): once with `--jobs 2` (two sequential
worker processes), once with `--population [P]` (one process, populations of up to P members;
no P: every cell of an architecture in one population). Reports wall time and runs per hour of
each, their ratio (the goal: `--population` >= 1.5x `--jobs 2`), and the projection of the
full protocol (1 200 runs) at 3 and at 50 epochs from each measured rate (the 50-epoch figure
scales the whole per-run time by 50 / epochs, the fixed cost per run - data, compilation,
evaluation, report - included: an upper estimate).

Checks that both folders hold the same cells (every run's fingerprint, from its
`config.json`) and compares each cell's status and test accuracy. A cell whose status differs
or whose accuracies differ by more than `--accuracy-tolerance` (default 0.02) is trained a
third time, sequentially, in a fresh process with one thread of math (the *rounding
control*: the same algorithm, another float32 reduction order). Why: the population's
equality test (tests/test_population.py) shows each member equals its sequential run to
float32 rounding after 100 steps, but SGD over thousands of steps does not contract rounding
differences, and for some configurations it amplifies them without bound (measured here: an
I-Norm run with a large sampled `lr_e` ends at 55.0 % or 28.7 % test accuracy on the
sequential engine depending only on the thread count). So a flagged cell is an engine
difference only where the control leaves the sequential run where it was; where the control
moves it as far, the difference is rounding. Engine differences are listed and the exit code
is 1.

The figure must come from a quiet machine (the load average before and after is recorded; a
shared machine's rates say nothing). Usage::

    python bench/protocol_throughput.py                                  # fig5, 30 configs
    python bench/protocol_throughput.py --configs 2 --population 16 --out bench/results/tp
    python bench/protocol_throughput.py --configs 1 --epochs 1 --conditions inorm_gradnorm \\
        --luminosity 0.75 data.train_subset=512 data.test_subset=512   # a check: minutes

Extra `key=value` arguments are passed to both `reproduce` calls (e.g. a smaller training
subset to try the script; a figure for the issue uses none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_RUNS = 1200


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _reproduce(args, out: Path, engine: list[str], log: Path) -> float:
    """One `reproduce` into `out`; its wall time in seconds (output to `log`)."""
    cmd = [sys.executable, "-m", "ei_keras.cli", "reproduce", args.recipe,
           "--backend", args.backend, "--out", str(out), "--configs", str(args.configs), *engine,
           *(["--conditions", args.conditions] if args.conditions else []),
           *(["--luminosity", args.luminosity] if args.luminosity else []),
           f"train.epochs={args.epochs}", *args.overrides]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    dt = time.perf_counter() - t0
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SystemExit(f"error: {' '.join(cmd[2:])} exited with {rc}:\n{tail}")
    return dt


def _runs(folder: Path) -> dict:
    """`{fingerprint: (cell path, status, test accuracy, engine)}` of every finished run."""
    out = {}
    for metrics in sorted(folder.rglob("metrics.json")):
        config = json.loads((metrics.parent / "config.json").read_text())
        m = json.loads(metrics.read_text())
        key = json.dumps(config["fingerprint"], sort_keys=True)
        out[key] = (str(metrics.parent.relative_to(folder)), m["status"],
                    m.get("test_accuracy"), m.get("engine"))
    return out


def _compare(jobs: dict, pop: dict, tolerance: float) -> tuple[list[str], list[str], float]:
    """Structural problems (cells, engines), the cells whose status or test accuracy differ
    beyond `tolerance` between the engines (to be checked against `_control`), and the
    largest accuracy difference."""
    problems, flagged = [], []
    if set(jobs) != set(pop):
        problems.append(f"different cells: {len(set(jobs) - set(pop))} only with --jobs, "
                        f"{len(set(pop) - set(jobs))} only with --population")
    worst = 0.0
    for key in sorted(set(jobs) & set(pop)):
        (cell, s1, a1, e1), (_, s2, a2, e2) = jobs[key], pop[key]
        if (e1, e2) != ("sequential", "population"):
            problems.append(f"{cell}: engines {e1}, {e2}")
        if a1 is not None and a2 is not None:
            worst = max(worst, abs(a1 - a2))
        if s1 != s2 or (a1 is not None and a2 is not None and abs(a1 - a2) > tolerance):
            flagged.append(key)
    return problems, flagged, worst


#: The rounding control: the same sequential run in a fresh process with one thread of
#: math (another reduction order, the same algorithm and the same float32 arithmetic).
_CONTROL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
_CONTROL_CODE = """
import json, sys
from ei_keras.experiment import run_experiment
config = json.loads(open(sys.argv[1]).read())
config = {k: v for k, v in config.items() if k not in ("resolved", "fingerprint")}
run_experiment(config, sys.argv[2], printer=lambda *a: None)
"""


def _control(args, jobs_folder: Path, cells: list[str], out: Path) -> dict:
    """Each of `cells` (run paths under `jobs_folder`) trained again sequentially with
    `_CONTROL_ENV`: `{cell: (status, test accuracy)}`."""
    env = {**os.environ, **_CONTROL_ENV, "KERAS_BACKEND": args.backend,
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = {}
    for i, cell in enumerate(cells, 1):
        print(f"[throughput] rounding control {i}/{len(cells)}: {cell}", flush=True)
        dest = out / cell
        subprocess.run([sys.executable, "-c", _CONTROL_CODE, str(jobs_folder / cell /
                        "config.json"), str(dest)], env=env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        m = json.loads((dest / "metrics.json").read_text())
        result[cell] = (m["status"], m.get("test_accuracy"))
    return result


def _control_lines(flagged: list[str], jobs: dict, pop: dict, control: dict,
                   tolerance: float) -> tuple[list[str], list[str]]:
    """The table of the flagged cells with their rounding control, and the cells where the
    engines differ although the sequential run does not move under the control: problems."""
    def fmt(status, acc):
        return ("—" if acc is None else f"{100 * acc:.2f}") + ("" if status == "ok" else
                                                               f" ({status})")
    lines = ["| cell | --jobs | --population | sequential, 1 thread | verdict |",
             "|---|---|---|---|---|"]
    problems = []
    for key in flagged:
        cell, s1, a1, _ = jobs[key]
        _, s2, a2, _ = pop[key]
        s3, a3 = control[cell]
        moved = s3 != s1 or (a1 is not None and a3 is not None and abs(a3 - a1) > tolerance)
        verdict = ("rounding: the sequential run moves as far" if moved
                   else "ENGINE DIFFERENCE")
        if not moved:
            problems.append(f"{cell}: the engines differ ({fmt(s1, a1)} vs {fmt(s2, a2)}) "
                            f"but the sequential run does not move under the rounding "
                            f"control ({fmt(s3, a3)})")
        lines.append(f"| {cell} | {fmt(s1, a1)} | {fmt(s2, a2)} | {fmt(s3, a3)} | {verdict} |")
    return lines, problems


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="fig5")
    p.add_argument("--configs", type=int, default=30, help="configurations per cell (30)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="worker processes of the baseline (2)")
    p.add_argument("--population", type=int, default=0,
                   help="members per population (default: all cells of an architecture)")
    p.add_argument("--backend", default="jax", choices=("jax", "torch"))
    p.add_argument("--accuracy-tolerance", type=float, default=0.02)
    p.add_argument("--out", help="folder for the table and the JSON (default: print only)")
    p.add_argument("--conditions", help="only these conditions (reproduce --conditions)")
    p.add_argument("--luminosity", help="only these shift sizes (reproduce --luminosity)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)

    meta = {"recipe": args.recipe, "configs": args.configs, "epochs": args.epochs,
            "backend": args.backend, "overrides": args.overrides,
            "cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "load_before": _load()}
    with tempfile.TemporaryDirectory(prefix="protocol-throughput-") as tmp:
        tmp = Path(tmp)
        population = ["--population"] + ([str(args.population)] if args.population else [])
        rows = []
        for name, engine in ((f"--jobs {args.jobs}", ["--jobs", str(args.jobs)]),
                             (" ".join(population), population)):
            folder = tmp / ("jobs" if name.startswith("--jobs") else "population")
            print(f"[throughput] {name}: {folder}", flush=True)
            seconds = _reproduce(args, folder, engine, tmp / f"{folder.name}.log")
            runs = _runs(folder)
            rows.append({"engine": name, "runs": len(runs), "seconds": seconds,
                         "runs_per_hour": len(runs) * 3600 / seconds,
                         "folder": folder, "cells": runs})
        meta["load_after"] = _load()
        jobs, pop = rows[0]["cells"], rows[1]["cells"]
        problems, flagged, worst = _compare(jobs, pop, args.accuracy_tolerance)
        control = _control(args, rows[0]["folder"], [jobs[k][0] for k in flagged],
                           tmp / "control") if flagged else {}
        table, engine_problems = _control_lines(flagged, jobs, pop, control,
                                                args.accuracy_tolerance)
        problems += engine_problems

    base = rows[0]["runs_per_hour"]
    lines = [f"Protocol throughput: {args.recipe}, {args.configs} configurations per cell, "
             f"{args.epochs} epochs, {args.backend}"
             + (f", overrides {' '.join(args.overrides)}" if args.overrides else ""),
             f"Machine: {meta['cpu']}, {meta['cores']} cores ({meta['platform']}); load "
             f"average {meta['load_before']:.2f} before, {meta['load_after']:.2f} after",
             "",
             "| engine | runs | wall s | runs/hour | x --jobs | protocol (1 200 runs), "
             f"{args.epochs} epochs | protocol, 50 epochs |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        per_run = r["seconds"] / max(r["runs"], 1)
        lines.append(f"| {r['engine']} | {r['runs']} | {r['seconds']:.0f} | "
                     f"{r['runs_per_hour']:.1f} | {r['runs_per_hour'] / base:.2f} | "
                     f"{_hours(per_run * PROTOCOL_RUNS)} | "
                     f"{_hours(per_run * PROTOCOL_RUNS * 50 / args.epochs)} |")
    lines += ["", f"Same cells (fingerprints) in both folders; largest test accuracy "
              f"difference {worst:.4f}; {len(flagged)} cells differ in status or by more than "
              f"{args.accuracy_tolerance:g}"]
    if flagged:
        lines += ["", "Each of them trained again sequentially in a fresh process with one "
                  "thread of math (the rounding control: another reduction order, the same "
                  "algorithm). Where that moves the sequential run as far, the difference is "
                  "what float32 rounding does to this run, not the engine:", "", *table]
    lines += ["", "Verdict: " + ("OK" if not problems else "FAILED"), *problems]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "protocol_throughput.md").write_text(text + "\n")
        for r in rows:
            r.pop("folder"), r.pop("cells")
        (out / "protocol_throughput.json").write_text(json.dumps(
            {"meta": meta, "rows": rows, "worst_accuracy_difference": worst,
             "flagged": [jobs[k][0] for k in flagged],
             "control": {c: list(v) for c, v in control.items()},
             "problems": problems}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
