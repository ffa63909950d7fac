"""``.keras`` files across backends (SPEC: saved under one backend, loaded under the others).

``tests/data/saved_<backend>.keras`` holds a small trained I-Norm network (``inorm_lateral``:
custom-gradient op, divisive population, non-trainable lateral weights) saved under each backend
after two SGD steps with momentum, so the optimizer has state. ``saved_<backend>.npz`` holds what
that backend saw: the probe inputs and predictions, every optimizer variable, the learning-rate
groups, and the loss and predictions after one more ``fit`` step on a fixed batch. Each backend's
run loads all three files with ``keras.models.load_model`` and no ``custom_objects``
(``ei_keras.models.load_model`` instead, if the library provides one), and checks:

- the same predictions (cross-backend: float32 rounding of different kernels, see ``PRED_TOL``);
- the optimizer state restored exactly (iterations, momentum buffers, learning rates per group);
- ``fit`` continues: one more step gives the loss and predictions the saving backend got from
  its uninterrupted run, and re-saving the continued model round-trips exactly.

Regenerate the files once per backend with
``KERAS_BACKEND=<backend> TF_ENABLE_ONEDNN_OPTS=0 python tests/test_saving.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

import ei_keras.data as data
import ei_keras.models
from ei_keras import zoo
from ei_keras.models import EINetwork
from ei_keras.optimizers import group_learning_rates

BACKEND = keras.backend.backend()
BACKENDS = ("tensorflow", "jax", "torch")
DATA_DIR = Path(__file__).parent / "data"
PRESET = "inorm_lateral"
HYPERPARAMETERS = {"lr_e": 0.05, "lr_ie": 0.2, "lr_ei": 0.03, "momentum": 0.5,
                   "inhibitory_momentum": 0.9, "norm_weight": 0.05, "label_smoothing": 0.1,
                   "inhibitory_clipnorm": 0}
WIDTH, INPUT_DIM, SEED, BATCH = 16, 49, 5, 32

#: Predictions (logits, |logits| up to about 5) of one backend's file under another backend:
#: max |difference| measured 7e-6 (torch or JAX file under TF/JAX). Same backend: identical.
PRED_TOL = 5e-5
#: The loss of the continued step: float32 rounding of a different backend, relative.
LOSS_RTOL = 1e-5

load_model = getattr(ei_keras.models, "load_model", keras.models.load_model)


def pooled(x: np.ndarray) -> np.ndarray:
    """28 x 28 images -> 7 x 7 averages of 4 x 4 blocks, flattened (49 inputs): small files."""
    return x.reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(-1, 49).astype("float32")


def arrays():
    (x_train, y_train), (x_test, _) = data.load_fashion_mnist()
    x = pooled(x_train[:96])
    y = np.asarray(y_train[:96], "int32")
    return {"train_x": x[:64], "train_y": y[:64], "next_x": x[64:96], "next_y": y[64:96],
            "probe_x": pooled(x_test[:16])}


def to_np(v) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(v))


def predict(model, x) -> np.ndarray:
    return to_np(model(ops.convert_to_tensor(x)))


def optimizer_state(model) -> dict:
    return {v.path: to_np(v) for v in model.optimizer.variables}


def paths(backend: str) -> tuple[Path, Path]:
    return DATA_DIR / f"saved_{backend}.keras", DATA_DIR / f"saved_{backend}.npz"


def write_golden_files() -> tuple[Path, Path]:
    """Train, save and record under the running backend (see the module docstring)."""
    DATA_DIR.mkdir(exist_ok=True)
    a = arrays()
    model = zoo.build(PRESET, width=WIDTH, seed=SEED, input_dim=INPUT_DIM, **HYPERPARAMETERS)
    model.fit(a["train_x"], a["train_y"], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    keras_path, npz_path = paths(BACKEND)
    model.save(keras_path)
    record = {
        "probe_x": a["probe_x"], "next_x": a["next_x"], "next_y": a["next_y"],
        "predictions": predict(model, a["probe_x"]),
        "iterations": np.array(int(to_np(model.optimizer.iterations))),
        "learning_rates": np.array(json.dumps(group_learning_rates(model.optimizer))),
        **{f"opt:{k}": v for k, v in optimizer_state(model).items()},
    }
    history = model.fit(a["next_x"], a["next_y"], batch_size=BATCH, epochs=1, shuffle=False,
                        verbose=0)
    record["next_loss"] = np.array(history.history["loss"][0])
    record["next_predictions"] = predict(model, a["probe_x"])
    np.savez_compressed(npz_path, **record)
    return keras_path, npz_path


@pytest.fixture(scope="module", params=BACKENDS, ids=[f"saved_under_{b}" for b in BACKENDS])
def golden(request):
    keras_path, npz_path = paths(request.param)
    if not (keras_path.exists() and npz_path.exists()):
        pytest.fail(f"missing {keras_path} / {npz_path}: run "
                    f"`KERAS_BACKEND={request.param} TF_ENABLE_ONEDNN_OPTS=0 "
                    f"python tests/test_saving.py`")
    with np.load(npz_path) as f:
        record = {k: f[k] for k in f.files}
    return request.param, keras_path, record


def test_loads_predicts_and_keeps_optimizer_state(golden):
    source, keras_path, record = golden
    model = load_model(keras_path)  # no custom_objects
    assert isinstance(model, EINetwork)
    assert model.name == PRESET and model.error_normalization == "lateral"
    assert model.hidden_units == (WIDTH, WIDTH) and model.seed == SEED

    tol = 0.0 if source == BACKEND else PRED_TOL
    got = predict(model, record["probe_x"])
    diff = float(np.abs(got - record["predictions"]).max())
    print(f"{source} file under {BACKEND}: max |prediction difference| = {diff:.2e}")
    assert diff <= tol, diff

    # The learning-rate groups, as dale_sgd made them.
    assert group_learning_rates(model.optimizer) == json.loads(str(record["learning_rates"]))
    assert group_learning_rates(model.optimizer) == pytest.approx(
        {"excitatory": HYPERPARAMETERS["lr_e"], "inhibitory_input": HYPERPARAMETERS["lr_ie"],
         "inhibitory_output": HYPERPARAMETERS["lr_ei"]})
    # Optimizer state: iterations and every momentum buffer, bit for bit.
    assert int(to_np(model.optimizer.iterations)) == int(record["iterations"]) == 2
    saved = {k.removeprefix("opt:"): v for k, v in record.items() if k.startswith("opt:")}
    state = optimizer_state(model)
    assert set(state) == set(saved)
    momenta = [k for k in saved if k.endswith("_momentum")]
    assert len(momenta) == len(model.trainable_variables)
    assert all(np.abs(saved[k]).max() > 0 for k in momenta)
    for k, v in saved.items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)
    # The fixed lateral pooling weights came back too (non-trainable state).
    lateral = [v for v in model.non_trainable_variables if v.path.endswith("lateral_weights")]
    assert len(lateral) == len(model.hidden)
    for v in lateral:
        assert to_np(v).sum() == pytest.approx(1.0, rel=1e-5)


def this_backends_jit_compile() -> bool:
    """What ``jit_compile="auto"`` (the presets' setting) resolves to under this backend."""
    return zoo.build(PRESET, width=WIDTH, seed=SEED, input_dim=INPUT_DIM).jit_compile


def test_loaded_model_compiles_the_way_this_backend_would(golden):
    # Keras stores the *resolved* jit_compile (True under JAX, False under TF-on-CPU and torch).
    # Restored as is, a JAX file trains through torch.compile under torch (62 s for one step
    # here, instead of 0.7 s) and a TF or torch file trains op by op, unjitted, under JAX.
    source, keras_path, _ = golden
    model = load_model(keras_path)
    assert model.jit_compile == this_backends_jit_compile(), (
        f"file saved under {source}: jit_compile={model.jit_compile!r} restored under "
        f"{BACKEND}, whose default is {this_backends_jit_compile()!r}")


def test_fit_continues_like_the_uninterrupted_run(golden, tmp_path):
    source, keras_path, record = golden
    model = load_model(keras_path)
    # Work around the jit_compile restored from another backend (see the test above), which
    # would otherwise cost a minute of torch.compile here.
    model.jit_compile = this_backends_jit_compile()
    history = model.fit(record["next_x"], record["next_y"], batch_size=BATCH, epochs=1,
                        shuffle=False, verbose=0)
    loss = history.history["loss"][0]
    assert int(to_np(model.optimizer.iterations)) == 3
    assert loss == pytest.approx(float(record["next_loss"]), rel=LOSS_RTOL)
    got = predict(model, record["probe_x"])
    diff = float(np.abs(got - record["next_predictions"]).max())
    print(f"{source} file continued under {BACKEND}: loss {loss:.7f} vs "
          f"{float(record['next_loss']):.7f}, max |prediction difference| = {diff:.2e}")
    assert diff <= (1e-6 if source == BACKEND else PRED_TOL), diff
    for v in model.variables:
        if v.path.rsplit("/", 1)[-1] in ("W_EE", "W_IE", "W_EI", "B_EI"):
            assert to_np(v).min() >= 0, v.path

    # The continued model saves and loads again under this backend, exactly.
    again = tmp_path / "continued.keras"
    model.save(again)
    reloaded = load_model(again)
    np.testing.assert_array_equal(predict(reloaded, record["probe_x"]), got)
    assert int(to_np(reloaded.optimizer.iterations)) == 3
    state = optimizer_state(reloaded)
    for k, v in optimizer_state(model).items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)


if __name__ == "__main__":  # write tests/data/saved_<backend>.{keras,npz} for this backend
    if BACKEND == "tensorflow" and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        sys.exit("Set TF_ENABLE_ONEDNN_OPTS=0 (as tests/conftest.py does).")
    for p in write_golden_files():
        print("wrote", p, p.stat().st_size, "bytes")
