"""Shared test set-up. The Keras backend is chosen by KERAS_BACKEND before import; the runner
`scripts/test_all_backends.sh` starts one pytest process per backend.

Every test must pass alone and in any order: the autouse fixture below gives each test a fresh
Keras session, NumPy's and Python's global random state as the session started with, and undoes
a `gc.freeze()` made inside a test (`ei_keras.tuning.run_sweep` freezes the collector's view of
every live object, which would otherwise keep the earlier tests' models alive for the rest of the
process and change what later tests see of memory and finalizers).

JAX: a persistent XLA compilation cache under `.cache/jax/` (ignored by git) lets identical
programs compile once, across the many small models of one run, the subprocesses the tuning tests
start (they inherit the environment set here) and later runs. It changes no result: an entry is
keyed by the program's HLO, the compile options, the XLA flags and the jax/jaxlib versions, and it
holds the very executable a fresh compilation of that key produces. The folder name adds the CPU
model and its feature flags, so an executable built for one CPU (say with AVX-512) is never
loaded on another. `EI_KERAS_TEST_JAX_CACHE=0` turns it off.
"""
import gc
import hashlib
import os
import random
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]


def _cpu_identity() -> str:
    """A short digest of the CPU model and feature flags (Linux), or the platform string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags")]
        text = "\n".join(sorted(set(wanted)))
    except OSError:
        import platform

        text = f"{platform.machine()} {platform.processor()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


if (os.environ.get("KERAS_BACKEND", "tensorflow") == "jax"
        and os.environ.get("EI_KERAS_TEST_JAX_CACHE", "1") != "0"):
    # Environment variables (read when jax is imported): this process and its subprocesses.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          str(ROOT / ".cache" / "jax" / _cpu_identity()))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

if os.environ.get("KERAS_BACKEND", "tensorflow") == "torch":
    import torch  # noqa: F401  (torch must be imported before tensorflow in one process)

import keras  # noqa: E402
import pytest  # noqa: E402

_NUMPY_STATE = np.random.get_state()
_PYTHON_STATE = random.getstate()


def pytest_report_header(config):
    header = f"keras {keras.__version__}, backend {keras.backend.backend()}"
    if keras.backend.backend() == "jax":
        import jax

        header += f", jax compilation cache: {jax.config.jax_compilation_cache_dir}"
    return header


@pytest.fixture(autouse=True)
def _independent_test():
    keras.backend.clear_session(free_memory=False)  # gc.collect() costs ~0.2 s a test
    np.random.set_state(_NUMPY_STATE)
    random.setstate(_PYTHON_STATE)
    frozen = gc.get_freeze_count()
    yield
    if gc.get_freeze_count() > frozen:
        gc.unfreeze()  # back to the oldest generation, collected as usual again
    keras.config.set_dtype_policy("float32")  # a test that set mixed precision and failed


@pytest.fixture
def frozen_gc():
    """For a test that runs a KerasTuner search in this process: the objects alive when it
    starts are moved out of the garbage collector's sight for the test, as ``ei-keras sweep``
    does (``run_sweep(freeze_gc=True)``), and put back afterwards.

    KerasTuner calls ``gc.collect()`` (and Keras' ``clear_session``, which collects again)
    before every trial; late in a suite each of those scans every object the earlier tests
    left alive (measured on TensorFlow after two test modules, 0.9 M objects: 50-60 % of the
    in-process sweep tests' time was the collector, 20-24 s each). Frozen, a collection
    scans only the objects made since, so the test's own garbage is still collected: nothing
    it asserts changes."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def backend():
    return keras.backend.backend()
