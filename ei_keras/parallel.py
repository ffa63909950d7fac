"""Training the cells of a protocol one after another or in worker processes.

With `jobs > 1` every worker is a fresh process (`spawn`) on the same Keras backend, pinned
to its share of the CPUs (`os.sched_setaffinity`) with its thread pools sized to that share
before any backend starts (XLA, TensorFlow, OpenMP/torch read these settings once, at import).
Cells go to whichever worker is free, so slow and fast cells balance. A worker turns SIGTERM
into KeyboardInterrupt (`ei_keras.interrupt`); when the parent is stopped (Ctrl-C, SIGTERM,
an error in a cell) it sends SIGTERM to every worker, waits for each to remove its partial
folder, and kills a worker that has not ended within a minute. So a stopped protocol leaves no
partial folder behind and finished cells are complete run directories wherever it stopped. A
worker that dies on its own (killed, out of memory) stops the protocol with
`WorkerDiedError` instead of leaving it waiting.
"""

from __future__ import annotations

import functools
import os
import queue
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
              overwrite: bool = False, label: str = "run",
              progress_bar: bool = False) -> list[dict]:
    """Train every `(run dir, RunConfig)` of `todo`; return their metrics (in the order
    they finished), printing progress with an ETA. `progress_bar`: Keras' per-batch progress
    bar for each run when they train one at a time (`jobs` 1); worker processes print one
    line per epoch, which interleaves legibly."""
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
            progress(run_experiment(cfg, run_dir, printer=printer, overwrite=overwrite,
                                    progress_bar=progress_bar))
        return results

    import multiprocessing

    import keras

    from ei_keras import interrupt
    from ei_keras.data import load_fashion_mnist

    for data_dir in dict.fromkeys(cfg.data.data_dir for _, cfg in todo):
        load_fashion_mnist(data_dir)  # bad data files: one error here, before any worker
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
    tasks, done = context.Queue(), context.Queue()
    tasks.cancel_join_thread()  # a stopped protocol exits without feeding the cells left
    for item in [(str(run_dir), cfg, overwrite) for run_dir, cfg in todo] + [None] * jobs:
        tasks.put(item)  # a None tells a worker that nothing is left
    workers = []
    try:
        for j in range(jobs):
            cpu_set = [available[(j * threads + t) % len(available)] for t in range(threads)]
            workers.append(context.Process(target=_worker, args=(tasks, done, cpu_set, threads),
                                           daemon=True))
            workers[-1].start()
    finally:  # the workers have their environment; this process keeps its own
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    running: dict[int, str] = {}  # worker pid -> the cell it trains
    try:
        while len(results) < len(todo):
            interrupt.raise_if_requested()  # a SIGTERM whose KeyboardInterrupt was lost
            try:
                kind, pid, payload = done.get(timeout=0.5)
            except queue.Empty:
                dead = _ended_early(workers, running)
                if dead is None:
                    continue
                try:  # its last message may still be on the way
                    kind, pid, payload = done.get(timeout=2)
                except queue.Empty:
                    raise WorkerDiedError(dead) from None
            if kind == "start":
                running[pid] = payload
            elif kind == "error":
                raise payload
            else:
                running.pop(pid, None)
                progress(payload)
    except BaseException:
        _stop(workers, running.values())
        raise
    for worker in workers:
        worker.join(timeout=_STOP_SECONDS)
    return results


#: Seconds a stopped worker has to remove its partial folder before it is killed.
_STOP_SECONDS = 60


class WorkerDiedError(RuntimeError):
    """A worker process ended without finishing its cell (killed, out of memory)."""


def _ended_early(workers, running: dict[int, str]) -> str | None:
    """What went wrong if a worker ended before its work was done, else None."""
    for worker in workers:
        code = worker.exitcode
        if code is not None and (code != 0 or worker.pid in running):
            cell = running.get(worker.pid)
            return (f"a worker process ended (exit code {code}) "
                    + (f"while training {cell} " if cell else "")
                    + "(killed, or out of memory?); the other workers were stopped, finished "
                    "runs are kept and nothing half-written is left: rerun the same command "
                    "to resume (with fewer --jobs if memory ran out)")
    return None


def _stop(workers, cells) -> None:
    """SIGTERM every worker (each removes its partial folder and exits), SIGKILL those still
    running after `_STOP_SECONDS`, then remove what a killed worker left of `cells`."""
    from ei_keras.run_directory import remove_stale_partials

    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.time() + _STOP_SECONDS
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.time()))
        if worker.is_alive():
            worker.kill()
            worker.join()
    for cell in cells:
        remove_stale_partials(Path(cell).parent, Path(cell).name)


def _worker(tasks, done, cpu_set: list[int], threads: int) -> None:
    """One worker process: train cells from `tasks` until a `None`; report to `done`.

    Stopped by the parent (SIGTERM, turned into KeyboardInterrupt) at any point, even while it
    still imports its backend, it ends quietly: the parent prints the one error line."""
    from ei_keras import interrupt

    interrupt.install_in_worker()
    try:
        _work(tasks, done, cpu_set, threads)
    except KeyboardInterrupt:  # stopped; run_experiment left nothing behind
        done.cancel_join_thread()  # the parent may no longer read what is queued
    finally:  # ending (its work done, or stopped): a stop from now on ends it at once, with
        try:  # no traceback from the queue's exit
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except KeyboardInterrupt:  # a first stop that came just as the work ended (a later
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # one only records: interrupt)


def _work(tasks, done, cpu_set: list[int], threads: int) -> None:
    try:
        os.sched_setaffinity(0, cpu_set)
    except (AttributeError, OSError):
        pass
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        torch.set_num_threads(threads)
    from ei_keras.experiment import run_experiment

    pid = os.getpid()
    printer = functools.partial(_print, f"[job {pid}]")
    while (item := tasks.get()) is not None:
        run_dir, cfg, overwrite = item
        done.put(("start", pid, run_dir))
        try:
            metrics = run_experiment(cfg, Path(run_dir), overwrite=overwrite, printer=printer)
        except Exception as e:  # the parent raises it (it stops the other workers)
            done.put(("error", pid, _picklable(e)))
            return
        done.put(("done", pid, metrics))


def _picklable(error: Exception) -> Exception:
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _print(tag: str, *args) -> None:
    print(tag, *args, flush=True)
