"""Convolutional ``.keras`` files across backends: ``tests/data/conv_saved_<backend>.keras`` holds
a small ``conv_inorm_gradnorm`` network (7x7 images: Fashion-MNIST pooled 4x4; filters 4 and
8; custom-gradient op, divisive population pooled over the map) after two SGD steps with
momentum, saved under each backend; ``conv_saved_<backend>.npz`` holds the probe inputs, that
backend's predictions, the optimizer's variables and the loss of one more ``fit`` step. Each
backend loads all three files with ``keras.models.load_model`` (no ``custom_objects``) and checks
the predictions (float32 rounding, see ``PRED_RTOL``), the optimizer state (stored values: bit
for bit) and that ``fit`` continues with the loss the saving backend got.

Regenerate once per backend with
``KERAS_BACKEND=<backend> TF_ENABLE_ONEDNN_OPTS=0 python tests/test_conv_saving.py``.
"""

from __future__ import annotations

import os
import sys

import keras
import numpy as np
import pytest
from test_saving import BACKEND, BACKENDS, DATA_DIR, EPS32, arrays, optimizer_state, predict

from ei_keras import zoo
from ei_keras.models import EIConvNetwork

PRESET = "conv_inorm_gradnorm"
HYPERPARAMETERS = {"lr_e": 0.01, "lr_ie": 0.2, "lr_ei": 0.03, "momentum": 0.5,
                   "inhibitory_momentum": 0.9, "norm_weight": 0.05, "inhibitory_clipnorm": 0}
WIDTH, SEED, BATCH = 8, 5, 32
#: A logit ends a chain of float32 sums: the first conv's 5*5*1 patch terms, the second's 5*5*4,
#: the readout's 2*2*8 inputs and the I-Norm map statistics (4*4*4 and 2*2*8 terms): reordered
#: by another CPU or backend, a sum of n terms moves by ~n u of its |terms| (u = eps32 / 2).
#: Tolerance 2 x that, times max |logit| (4.98e-5 for these files). Measured: 1.9e-6 to 2.6e-6
#: across the three backends (0 for a backend's own file), on one machine.
ACCUMULATED_TERMS = 25 + 100 + 32 + 64 + 32
PRED_RTOL = ACCUMULATED_TERMS * EPS32


def build():
    return zoo.build(PRESET, width=WIDTH, seed=SEED, input_dim=49,
                     model_overrides={"image_shape": (7, 7, 1)}, **HYPERPARAMETERS)


def paths(backend: str):
    return DATA_DIR / f"conv_saved_{backend}.keras", DATA_DIR / f"conv_saved_{backend}.npz"


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
def test_conv_file_loads_predicts_and_continues(source):
    keras_path, npz_path = paths(source)
    if not (keras_path.exists() and npz_path.exists()):
        pytest.fail(f"missing {keras_path}: run `KERAS_BACKEND={source} "
                    "TF_ENABLE_ONEDNN_OPTS=0 python tests/test_conv_saving.py`")
    with np.load(npz_path) as f:
        record = {k: f[k] for k in f.files}
    model = keras.models.load_model(keras_path)
    assert isinstance(model, EIConvNetwork) and model.filters == (4, 8)
    assert model.hidden[0].statistics == "map" and model.error_normalization == "full"
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
