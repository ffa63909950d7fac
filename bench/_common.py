"""Shared helpers of the benchmark scripts (standard library only: imported before any
numerical library, because thread settings must be fixed before those load)."""

from __future__ import annotations

import json
import os
import statistics
import sys

PRESETS = ("ei_ln", "inorm", "inorm_gradnorm", "inorm_lateral")
N_IN, N_OUT = 784, 10
RESULT_TAG = "BENCH_RESULT "


def configure_threads(threads: int) -> None:
    """Fix every library's thread count to ``threads`` before it is imported.

    One setting for every contender: OpenMP/MKL/oneDNN pools (torch, TF's oneDNN kernels),
    TF's intra/inter-op pools, XLA:CPU's Eigen pool (JAX, TF's XLA). ``OMP_WAIT_POLICY=PASSIVE``
    stops idle OpenMP workers from spin-waiting against the Python thread (10-100x outliers on
    2-core machines otherwise). With ``threads < os.cpu_count()`` the process is also pinned to
    the first ``threads`` CPUs, so that no library can use more cores than the others.
    """
    n = str(int(threads))
    env = {
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
        "OMP_WAIT_POLICY": "PASSIVE",
        "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    os.environ.update(env)
    flags = os.environ.get("XLA_FLAGS", "")
    extra = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} " \
            f"intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = f"{flags} {extra}".strip()
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, set(cpus[:threads]))


def set_library_threads(threads: int) -> None:
    """After import: the thread setters of the libraries already loaded in this process."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set or parallel work already started
            pass
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # the runtime is already initialised: env vars did it
            pass


def summarize(rates: list[float], cpu_rates: list[float] | None = None) -> dict:
    """Median, min and max of a list of steps/s (wall clock); ``cpu_median``: the median of
    steps per CPU-second of the process (all its threads), which other processes competing
    for the cores inflate much less than the wall-clock rate."""
    out = {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
           "repeats": [round(r, 3) for r in rates]}
    if cpu_rates:
        out["cpu_median"] = statistics.median(cpu_rates)
    return out


def emit(record: dict) -> None:
    """One result line on stdout, found by the driver among any library output."""
    print(RESULT_TAG + json.dumps(record), flush=True)


def parse_results(text: str) -> list[dict]:
    return [json.loads(line[len(RESULT_TAG):]) for line in text.splitlines()
            if line.startswith(RESULT_TAG)]


def write_outputs(out: str, default_name: str, text: str, meta: dict, records: list):
    """Write ``STEM.md`` (``text``) and ``STEM.json`` (meta + records); return ``STEM``, a
    ``pathlib.Path``. ``out`` is a folder (``out/default_name``) or a stem."""
    from pathlib import Path

    path = Path(out)
    stem = path / default_name if path.is_dir() or str(out).endswith("/") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(text + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "records": records},
                                                    indent=1))
    return stem
