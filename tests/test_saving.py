"""``.keras`` files across backends (SPEC: saved under one backend, loaded under the others).

``tests/data/saved_<backend>.keras`` holds a small trained I-Norm network (``inorm_lateral``:
custom-gradient op, divisive population, non-trainable lateral weights) saved under each backend
after two SGD steps with momentum, so the optimizer has state. ``saved_<backend>.npz`` holds what
that backend saw: the probe inputs and predictions, every optimizer variable, the learning-rate
groups, and the loss and predictions after one more ``fit`` step on a fixed batch. Each backend's
run loads all three files with ``keras.models.load_model`` and no ``custom_objects``
(``ei_keras.models.load_model`` instead, if the library provides one), and checks:

- the same predictions, to float32 rounding (see ``PRED_RTOL``): the files were written by
  another process, on another machine, perhaps under another backend, and every CPU/library
  pair sums in its own order, so no golden number is compared bit for bit;
- the optimizer state restored exactly (iterations, momentum buffers, learning rates per group):
  stored values, not computed ones, written by the one process that wrote both files;
- ``fit`` continues: one more step gives the loss and predictions the saving backend got from
  its uninterrupted run (to float32 rounding), and re-saving the continued model round-trips
  exactly (this process computes both sides).

Regenerate the files once per backend with
``KERAS_BACKEND=<backend> TF_ENABLE_ONEDNN_OPTS=0 python tests/test_saving.py``.
"""

from __future__ import annotations

import functools
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

# -- tolerances: float32 rounding, whichever backend and CPU wrote the file -----------------
EPS32 = float(np.finfo(np.float32).eps)  # 2**-23 = 1.19e-7, twice the unit roundoff u
#: Each logit ends a chain of float32 sums: the 49 inputs, then 16 hidden units, 16 again (the
#: I-Norm drives, inhibition and divisive terms of each layer, and the readout). Another CPU
#: (vector width, FMA), BLAS or backend adds the same terms in another order, and reordering an
#: n-term sum moves it by at most ~n u of its |terms| (Higham's gamma_n, u = eps32 / 2), so a
#: logit may move by about (49 + 16 + 16) u per unit of magnitude; PRED_RTOL = 81 eps32 = 2 x
#: that (9.7e-6), times max |logit| (about 1.1 for these files: 1.1e-5). Measured:
#: 0.7e-6 to 1.7e-6 across backends, 1.7e-6 for the JAX file under JAX on another CPU (AMD EPYC,
#: AVX2).
ACCUMULATED_TERMS = INPUT_DIM + 2 * WIDTH
PRED_RTOL = ACCUMULATED_TERMS * EPS32
#: After one more training step: that forward's rounding plus the step's (a backward pass
#: through the same chain moves the weights by lr x a gradient rounded as much): twice PRED_RTOL.
#: Measured: 2.4e-7 (JAX file under JAX, this machine) to 1.3e-6 (other backends' files).
CONTINUED_RTOL = 2 * PRED_RTOL
#: The continued step's loss (cross-entropy of the 32-sample batch + L_norm, ~2.4) is computed
#: from that batch's logits z: a change of the logits by dz moves the cross-entropy by at most
#: sum_k |p_k - y_k| max|dz| <= 2 max|dz|, and L_norm rounds like any other sum. Tolerance:
#: PRED_RTOL (2 max|z| + loss), about 1e-5 relative. Measured: 0 to 1e-7 relative.


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

    # Computed by the saving process (another machine, perhaps backend) and by this one: equal
    # to float32 rounding, not bit for bit (see PRED_RTOL).
    got = predict(model, record["probe_x"])
    diff = float(np.abs(got - record["predictions"]).max())
    tol = PRED_RTOL * float(np.abs(record["predictions"]).max())
    print(f"{source} file under {BACKEND}: max |prediction difference| = {diff:.2e} "
          f"(tolerance {tol:.2e})")
    assert diff <= tol, (diff, tol)

    # Stored values from here on: the .keras and .npz files were written by one process from
    # the same float32 variables, and loading does no arithmetic, so they agree bit for bit.
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
    for v in lateral:  # a 16-term float32 sum: within 16 eps32 (1.9e-6) of 1
        assert to_np(v).astype(np.float64).sum() == pytest.approx(1.0, abs=WIDTH * EPS32)


@functools.cache
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
    batch_logits = float(np.abs(predict(model, record["next_x"])).max())
    history = model.fit(record["next_x"], record["next_y"], batch_size=BATCH, epochs=1,
                        shuffle=False, verbose=0)
    loss = history.history["loss"][0]
    assert int(to_np(model.optimizer.iterations)) == 3
    # The saving process's uninterrupted run vs this process: float32 rounding (see the rtols).
    loss_tol = PRED_RTOL * (2 * batch_logits + abs(loss))
    assert abs(loss - float(record["next_loss"])) <= loss_tol, (loss, loss_tol)
    got = predict(model, record["probe_x"])
    diff = float(np.abs(got - record["next_predictions"]).max())
    tol = CONTINUED_RTOL * float(np.abs(record["next_predictions"]).max())
    print(f"{source} file continued under {BACKEND}: loss {loss:.7f} vs "
          f"{float(record['next_loss']):.7f} (tolerance {loss_tol:.1e}), "
          f"max |prediction difference| = {diff:.2e} (tolerance {tol:.2e})")
    assert diff <= tol, (diff, tol)
    for v in model.variables:
        if v.path.rsplit("/", 1)[-1] in ("W_EE", "W_IE", "W_EI", "B_EI"):
            assert to_np(v).min() >= 0, v.path

    # The continued model saves and loads again under this backend, exactly: this process
    # computes both sides, with the same kernels.
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
