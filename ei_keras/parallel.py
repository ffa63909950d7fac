"""Training the cells of a protocol one after another or in worker processes.

With ``jobs > 1`` every worker is a fresh process (``spawn``) on the same Keras backend, pinned
to its share of the CPUs (``os.sched_setaffinity``) with its thread pools sized to that share
before any backend starts (XLA, TensorFlow, OpenMP/torch read these settings once, at import).
Cells go to whichever worker is free, so slow and fast cells balance. A worker turns SIGTERM
into KeyboardInterrupt, so a stopped protocol leaves no partial folder behind; finished cells
are complete run directories wherever the protocol stopped.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

#: Environment variables that size each worker's thread pools (set before its backend starts).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def run_cells(todo: list[tuple[Path, object]], jobs: int = 1, printer=print,
              overwrite: bool = False, label: str = "run") -> list[dict]:
    """Train every ``(run dir, RunConfig)`` of ``todo``; return their metrics (in the order
    they finished), printing progress with an ETA."""
    from ei_keras.experiment import run_experiment

    start = time.time()
    results: list[dict] = []

    def progress(metrics: dict) -> None:
        results.append(metrics)
        done = len(results)
        left = (time.time() - start) / done * (len(todo) - done)
        printer(f"[{label}] {done}/{len(todo)} runs finished"
                + (f", ~{left:.0f} s left" if done < len(todo) else ""))

    if jobs <= 1 or len(todo) <= 1:
        for k, (run_dir, cfg) in enumerate(todo, start=1):
            printer(f"[{label}] run {k}/{len(todo)}")
            progress(run_experiment(cfg, run_dir, printer=printer, overwrite=overwrite))
        return results

    import multiprocessing

    import keras

    jobs = min(jobs, len(todo))
    available = cpus()
    threads = max(1, len(available) // jobs)
    saved = {k: os.environ.get(k) for k in (*_THREAD_VARIABLES, "XLA_FLAGS", "KERAS_BACKEND")}
    os.environ.update({k: str(threads) for k in _THREAD_VARIABLES})
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [
        os.environ.get("XLA_FLAGS"), "--xla_cpu_multi_thread_eigen=false",
        f"intra_op_parallelism_threads={threads}"]))
    os.environ["KERAS_BACKEND"] = keras.backend.backend()
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for j in range(jobs):
        slots.put([available[(j * threads + t) % len(available)] for t in range(threads)])
    try:
        pool = context.Pool(jobs, initializer=_worker_start, initargs=(slots, threads))
    finally:  # the workers have their environment; this process keeps its own
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        work = [(str(run_dir), cfg, overwrite) for run_dir, cfg in todo]
        for metrics in pool.imap_unordered(_worker_run, work):
            progress(metrics)
        pool.close()
    except BaseException:
        pool.terminate()  # SIGTERM: each worker removes its partial folder
        raise
    finally:
        pool.join()
    return results


def _worker_start(slots, threads: int) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    cpu_set = slots.get()
    try:
        os.sched_setaffinity(0, cpu_set)
    except (AttributeError, OSError):
        pass
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        torch.set_num_threads(threads)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _worker_run(item) -> dict:
    from ei_keras.experiment import run_experiment

    run_dir, cfg, overwrite = item
    tag = f"[job {os.getpid()}]"
    return run_experiment(cfg, Path(run_dir), overwrite=overwrite,
                          printer=functools.partial(_print, tag))


def _print(tag: str, *args) -> None:
    print(tag, *args, flush=True)
