"""Recurrent ``.keras`` files across backends: ``tests/data/rnn_saved_<backend>.keras`` holds a
small ``rnn_inorm_gradnorm`` network (Fashion-MNIST pooled 4x4 to 7x7, read as 7 steps of 7
pixels; 8 units; `INormRNN` with its custom-gradient op and divisive population) after two SGD
steps with momentum, saved under each backend; ``rnn_saved_<backend>.npz`` holds the probe
inputs, that backend's predictions, the optimizer's variables and the loss of one more ``fit``
step. Each backend loads all three files with ``keras.models.load_model`` (no
``custom_objects``) and checks the predictions (float32 rounding, see ``PRED_RTOL``), the
optimizer state (stored values: bit for bit) and that ``fit`` continues with the loss the
saving backend got.

Regenerate once per backend with
``KERAS_BACKEND=<backend> TF_ENABLE_ONEDNN_OPTS=0 python tests/test_rnn_saving.py``.
"""

from __future__ import annotations

import os
import sys

import keras
import numpy as np
import pytest
from test_saving import BACKEND, BACKENDS, DATA_DIR, EPS32, arrays, optimizer_state, predict

from ei_keras import zoo
from ei_keras.models import EIRecurrentNetwork

PRESET = "rnn_inorm_gradnorm"
HYPERPARAMETERS = {"lr_e": 0.01, "lr_ie": 0.2, "lr_ei": 0.03, "momentum": 0.5,
                   "inhibitory_momentum": 0.9, "norm_weight": 0.05, "inhibitory_clipnorm": 0}
WIDTH, SEED, BATCH, STEPS = 8, 5, 32, 7
#: A logit ends a chain of float32 sums, reordered by another CPU or backend (a sum of n terms
#: moves by ~n u of its |terms|, u = eps32 / 2): at each of the 7 steps the drive over
#: u_t = [x_t, h_{t-1}] (7 + 8 terms), the inhibition and the divisive term (8 each) and the
#: statistics over the 8 units; each step reads the state the earlier ones rounded, so the
#: steps add up; then the readout's 8 inputs. Tolerance 2 x that, times max |logit|.
ACCUMULATED_TERMS = STEPS * (15 + 8 + 8 + 8) + 8
PRED_RTOL = ACCUMULATED_TERMS * EPS32


def build():
    return zoo.build(PRESET, width=WIDTH, seed=SEED, input_dim=49,
                     model_overrides={"timesteps": STEPS}, **HYPERPARAMETERS)


def paths(backend: str):
    return DATA_DIR / f"rnn_saved_{backend}.keras", DATA_DIR / f"rnn_saved_{backend}.npz"


def write_golden_files():
    a = arrays()
    model = build()
    model.fit(a["train_x"], a["train_y"], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    keras_path, npz_path = paths(BACKEND)
    model.save(keras_path)
    record = {"probe_x": a["probe_x"], "next_x": a["next_x"], "next_y": a["next_y"],
              "predictions": predict(model, a["probe_x"]),
              **{f"opt:{k}": v for k, v in optimizer_state(model).items()}}
    history = model.fit(a["next_x"], a["next_y"], batch_size=BATCH, epochs=1, shuffle=False,
                        verbose=0)
    record["next_loss"] = np.array(history.history["loss"][0])
    np.savez_compressed(npz_path, **record)
    return keras_path, npz_path


@pytest.mark.parametrize("source", BACKENDS, ids=[f"saved_under_{b}" for b in BACKENDS])
def test_rnn_file_loads_predicts_and_continues(source):
    keras_path, npz_path = paths(source)
    if not (keras_path.exists() and npz_path.exists()):
        pytest.fail(f"missing {keras_path}: run `KERAS_BACKEND={source} "
                    "TF_ENABLE_ONEDNN_OPTS=0 python tests/test_rnn_saving.py`")
    with np.load(npz_path) as f:
        record = {k: f[k] for k in f.files}
    model = keras.models.load_model(keras_path)
    assert isinstance(model, EIRecurrentNetwork) and model.units == WIDTH
    assert model.timesteps == STEPS and model.error_normalization == "full"
    assert [p.rsplit("/", 1)[-1] for p in model.loss_assignment()["normalization"]] == \
        ["W_IE", "W_EI", "B_IE", "B_EI"]
    got = predict(model, record["probe_x"])
    diff = float(np.abs(got - record["predictions"]).max())
    tol = PRED_RTOL * float(np.abs(record["predictions"]).max())
    print(f"{source} file under {BACKEND}: max |prediction difference| {diff:.2e} "
          f"(tolerance {tol:.2e})")
    assert diff <= tol, (diff, tol)
    saved = {k.removeprefix("opt:"): v for k, v in record.items() if k.startswith("opt:")}
    state = optimizer_state(model)
    assert set(state) == set(saved)
    for k, v in saved.items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)
    model.jit_compile = build().jit_compile  # this backend's own (see tests/test_saving.py)
    batch_logits = float(np.abs(predict(model, record["next_x"])).max())
    loss = model.fit(record["next_x"], record["next_y"], batch_size=BATCH, epochs=1,
                     shuffle=False, verbose=0).history["loss"][0]
    loss_tol = 2 * PRED_RTOL * (2 * batch_logits + abs(loss))
    assert abs(loss - float(record["next_loss"])) <= loss_tol, (loss, record["next_loss"])


if __name__ == "__main__":
    if BACKEND == "tensorflow" and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        sys.exit("Set TF_ENABLE_ONEDNN_OPTS=0 (as tests/conftest.py does).")
    for p in write_golden_files():
        print("wrote", p, p.stat().st_size, "bytes")
