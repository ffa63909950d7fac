"""Shared test set-up. The Keras backend is chosen by KERAS_BACKEND before import; the runner
`scripts/test_all_backends.sh` starts one pytest process per backend."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")

if os.environ.get("KERAS_BACKEND", "tensorflow") == "torch":
    import torch  # noqa: F401  (torch must be imported before tensorflow in one process)

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.backend.clear_session(free_memory=False)  # gc.collect() costs ~0.2 s a test
    yield


@pytest.fixture
def backend():
    return keras.backend.backend()
