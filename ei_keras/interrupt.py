"""SIGTERM stops a run like Ctrl-C, even where a raised KeyboardInterrupt would be lost.

A Python signal handler runs wherever the interpreter happens to be. Raising
`KeyboardInterrupt` from it is immediate, but if it lands in a garbage-collection callback
(JAX registers one) or an `atexit` function, Python prints "Exception ignored" and carries
on: the run kept training after `kill -TERM` (measured under JAX with `reproduce --jobs 2`).
So `stop_requested` also records the request, and `raise_if_requested` raises it
again: at the next batch of `fit` (`stop_on_request_callback`) and in the loop where
`ei_keras.parallel` waits for its workers.
"""

from __future__ import annotations

import contextlib
import signal

_requested = False


def stop_requested(signum=None, frame=None) -> None:
    """The SIGTERM handler: record the request, then raise `KeyboardInterrupt` — once. A
    second SIGTERM while the first stop is being handled (a parent stopping its workers
    sends one to each, and a process group may get another) only records it: raised
    there, it would break the cleanup that removes the partial folder and print a
    traceback from the worker's `finally` (seen under PyTorch)."""
    global _requested
    if _requested:
        return
    _requested = True
    raise KeyboardInterrupt


def raise_if_requested() -> None:
    """Raise `KeyboardInterrupt` if SIGTERM arrived (a lost raise is raised again here)."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_stops():
    """Within the block SIGTERM raises `KeyboardInterrupt` (and is remembered)."""
    global _requested
    _requested = False
    previous = signal.signal(signal.SIGTERM, stop_requested)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def install_in_worker() -> None:
    """A worker process: SIGTERM stops it; Ctrl-C is left to the parent (which stops it)."""
    global _requested
    _requested = False
    signal.signal(signal.SIGTERM, stop_requested)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_on_request_callback():
    """A Keras callback that raises `KeyboardInterrupt` at the end of the batch (of the
    `steps_per_execution` group) after a SIGTERM whose raise was lost."""
    import keras

    class StopOnRequest(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise_if_requested()

        def on_epoch_end(self, epoch, logs=None):
            raise_if_requested()

    return StopOnRequest()
