"""``.keras`` files of any dual-loss model across backends (the 9 saving/loading pairs).

``tests/data/dual_<kind>_<backend>.keras`` holds a small trained model saved under each backend:
``kind`` is ``functional`` (``DualLossModel(inputs, outputs)``: ``keras.Input -> INormDense ->
ReLU -> EIDense``) or ``subclassed`` (``DualLossTrainer`` mixed into a ``keras.Model``
subclass), compiled with ``dale_sgd`` (momentum, so the optimizer has state) and the schedule
``inhibitory_every=2`` (so its counter is state too), trained three steps, with lambda changed
by hand to 0.07 before saving. ``dual_<kind>_<backend>.npz`` holds what the saving backend saw.
Each backend loads all six files with ``keras.models.load_model`` (no ``custom_objects``) and
checks predictions, optimizer state, lambda, the schedule and its counter, then continues
``fit`` for one step and gets the saving backend's own continued loss and predictions.

The old files (``tests/data/saved_<backend>.keras``, written before lambda was a variable)
still load, with lambda from their config.

Regenerate with ``KERAS_BACKEND=<backend> TF_ENABLE_ONEDNN_OPTS=0 python
tests/test_dual_loss_saving.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from dual_models import SavedSubclassedNet
from keras import ops
from test_saving import EPS32

from ei_keras.layers import EIDense, INormDense
from ei_keras.losses import SparseSmoothedCrossentropy
from ei_keras.models import DualLossModel, DualLossTrainer, EINetwork
from ei_keras.optimizers import dale_sgd, group_learning_rates

BACKEND = keras.backend.backend()
BACKENDS = ("tensorflow", "jax", "torch")
KINDS = ("functional", "subclassed")
DATA_DIR = Path(__file__).parent / "data"
WIDTH, INPUT_DIM, BATCH = 16, 49, 32
LAMBDA_SAVED = 0.07
# -- tolerances: float32 rounding, whichever backend and CPU wrote the file (as in
# tests/test_saving.py, whose derivation this follows). A file saved under this very backend
# was still written by another process, perhaps on another CPU (vector width, FMA, thread
# count), so no golden number is compared bit for bit: under JAX on an AMD EPYC the functional
# and subclassed files' own predictions moved by 3.3e-6 to 3.6e-6.
#: Each logit ends a chain of float32 sums: the 49 inputs (drive, inhibition, divisive
#: population), then the 16 hidden units twice (the divisive pooling B_EI, the readout).
#: Reordering an n-term sum moves it by at most ~n u of its |terms| (u = eps32 / 2): PRED_RTOL
#: = 2 x that, times max |logit|.
ACCUMULATED_TERMS = INPUT_DIM + 2 * WIDTH
PRED_RTOL = ACCUMULATED_TERMS * EPS32
#: After one more training step: that forward's rounding plus the step's (the backward pass
#: through the same chain moves the weights by lr x a gradient rounded as much).
CONTINUED_RTOL = 2 * PRED_RTOL


def make(kind):
    if kind == "functional":
        inputs = keras.Input((INPUT_DIM,))
        h = INormDense(WIDTH, error_normalization="full", norm_weight=0.05, seed=3,
                       name="inorm")(inputs)
        outputs = EIDense(10, inhibitory_units=1, seed=4, name="readout")(
            keras.layers.ReLU()(h))
        model = DualLossModel(inputs, outputs, name="functional")
    else:
        model = SavedSubclassedNet(seed=3, name="subclassed")
        model.build((None, INPUT_DIM))
    model.compile(optimizer=dale_sgd(0.05, 0.2, 0.03, momentum=0.5, inhibitory_momentum=0.9),
                  loss=SparseSmoothedCrossentropy(0.1), inhibitory_every=2)
    return model


def arrays():
    rng = np.random.default_rng(42)
    x = rng.random((144, INPUT_DIM), dtype=np.float32)
    y = rng.integers(0, 10, 144).astype("int32")
    return {"train_x": x[:96], "train_y": y[:96], "next_x": x[96:128], "next_y": y[96:128],
            "probe_x": x[128:]}


def to_np(v) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(v))


def predict(model, x):
    return to_np(model(ops.convert_to_tensor(x)))


def optimizer_state(model):
    """Optimizer variables in order (a subclassed model built by hand and the same model built
    by ``load_model`` may name their variables' paths differently; the order is Keras')."""
    return {f"{i:03d}": to_np(v) for i, v in enumerate(model.optimizer.variables)}


def paths(kind, backend):
    return DATA_DIR / f"dual_{kind}_{backend}.keras", DATA_DIR / f"dual_{kind}_{backend}.npz"


def write_golden_files():
    a = arrays()
    out = []
    for kind in KINDS:
        model = make(kind)
        model.fit(a["train_x"], a["train_y"], batch_size=BATCH, epochs=1, shuffle=False,
                  verbose=0)
        model.get_layer("inorm").norm_weight = LAMBDA_SAVED
        keras_path, npz_path = paths(kind, BACKEND)
        model.save(keras_path)
        record = {
            "probe_x": a["probe_x"], "next_x": a["next_x"], "next_y": a["next_y"],
            "predictions": predict(model, a["probe_x"]),
            "counter": np.array(int(to_np(model.inhibitory_counter))),
            "learning_rates": np.array(json.dumps(group_learning_rates(model.optimizer))),
            **{f"opt:{k}": v for k, v in optimizer_state(model).items()},
        }
        history = model.fit(a["next_x"], a["next_y"], batch_size=BATCH, epochs=1,
                            shuffle=False, verbose=0).history
        record["next_loss"] = np.array(history["loss"][0])
        record["next_norm_loss"] = np.array(history["norm_loss"][0])
        record["next_predictions"] = predict(model, a["probe_x"])
        np.savez_compressed(npz_path, **record)
        out += [keras_path, npz_path]
    return out


@pytest.fixture(scope="module", params=[(k, b) for k in KINDS for b in BACKENDS],
                ids=[f"{k}_saved_under_{b}" for k in KINDS for b in BACKENDS])
def golden(request):
    kind, source = request.param
    keras_path, npz_path = paths(kind, source)
    if not (keras_path.exists() and npz_path.exists()):
        pytest.fail(f"missing {keras_path}: run `KERAS_BACKEND={source} "
                    "TF_ENABLE_ONEDNN_OPTS=0 python tests/test_dual_loss_saving.py`")
    with np.load(npz_path) as f:
        record = {k: f[k] for k in f.files}
    return kind, source, keras_path, record


def test_loads_with_state_and_continues_fit(golden, tmp_path):
    kind, source, keras_path, record = golden
    model = keras.models.load_model(keras_path)  # no custom_objects
    assert isinstance(model, DualLossTrainer)
    # A file written before DualLossModel(inputs, outputs) was an instance of DualLossModel
    # loads as one (issue #26).
    assert isinstance(model, DualLossModel) == (kind == "functional")
    assert (model.inhibitory_steps, model.inhibitory_every) == (1, 2)
    assert int(to_np(model.inhibitory_counter)) == int(record["counter"]) == 3
    assert model.get_layer("inorm").norm_weight == pytest.approx(LAMBDA_SAVED)
    assert group_learning_rates(model.optimizer) == json.loads(str(record["learning_rates"]))
    saved = {k.removeprefix("opt:"): v for k, v in record.items() if k.startswith("opt:")}
    state = optimizer_state(model)
    assert set(state) == set(saved)
    # Stored values: the .keras and .npz files were written by one process from the same
    # float32 variables, and loading does no arithmetic, so they agree bit for bit.
    for k, v in saved.items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)
    want = record["predictions"]
    tol = PRED_RTOL * float(np.abs(want).max())
    diff = float(np.abs(predict(model, record["probe_x"]) - want).max())
    assert diff <= tol, (diff, tol)

    batch_logits = float(np.abs(predict(model, record["next_x"])).max())
    history = model.fit(record["next_x"], record["next_y"], batch_size=BATCH, epochs=1,
                        shuffle=False, verbose=0).history
    loss, norm_loss = history["loss"][0], history["norm_loss"][0]
    print(f"{kind} saved under {source}, continued under {BACKEND}: loss "
          f"{loss:.7f} vs {float(record['next_loss']):.7f}, L_norm {norm_loss:.4e} vs "
          f"{float(record['next_norm_loss']):.4e}")
    # The loss of that step is computed from the loaded weights (before the update): the
    # cross-entropy moves by at most sum_k |p_k - y_k| max|dz| <= 2 max|dz| when the logits
    # move by dz, the rest rounds like any other sum.
    loss_tol = PRED_RTOL * (2 * batch_logits + abs(loss))
    assert abs(loss - float(record["next_loss"])) <= loss_tol, (loss, loss_tol)
    # L_norm = lambda mean_batch[a^2 + b^2] (a = mean_j z, b = var_j z - 1, z the normalized
    # pre-activation, entries of a few units) rounds through a and b: |d L_norm| <= 2 lambda
    # (E|a| da + E|b| db) <= 2 sqrt(lambda L_norm) (da + db), since E|a| <= sqrt(E a^2) <=
    # sqrt(L_norm / lambda) (Jensen); da <= PRED_RTOL max|z|, db <= 2 PRED_RTOL max|z| std(z),
    # so da + db <= 8 PRED_RTOL for max|z| <= ~3 and std(z) ~ 1.
    norm_tol = 16 * PRED_RTOL * float(np.sqrt(LAMBDA_SAVED * abs(norm_loss)))
    assert abs(norm_loss - float(record["next_norm_loss"])) <= norm_tol, (norm_loss, norm_tol)
    assert {"task_loss", "norm_loss"} <= set(history)
    got = predict(model, record["probe_x"])
    want = record["next_predictions"]
    diff = float(np.abs(got - want).max())
    assert diff <= CONTINUED_RTOL * float(np.abs(want).max()), diff
    assert int(to_np(model.inhibitory_counter)) == 4

    again = tmp_path / "continued.keras"
    model.save(again)
    reloaded = keras.models.load_model(again)
    # This process computes both sides, with the same kernels: exactly.
    np.testing.assert_array_equal(predict(reloaded, record["probe_x"]), got)
    assert int(to_np(reloaded.inhibitory_counter)) == 4


@pytest.mark.parametrize("source", BACKENDS)
def test_files_from_before_lambda_was_a_variable_still_load(source, tmp_path):
    # tests/data/saved_<backend>.keras was written by the previous version (INormDense without
    # the norm_weight variable); lambda then comes from the config (0.05 there).
    old = DATA_DIR / f"saved_{source}.keras"
    model = keras.models.load_model(old)
    assert isinstance(model, EINetwork)
    assert [layer.norm_weight for layer in model.hidden] == pytest.approx([0.05, 0.05])
    model.norm_weight = 0.2
    path = tmp_path / "resaved.keras"
    model.save(path)
    again = keras.models.load_model(path)
    assert [layer.norm_weight for layer in again.hidden] == pytest.approx([0.2, 0.2])
    assert again.get_config()["norm_weight"] == pytest.approx(0.2)


if __name__ == "__main__":
    if BACKEND == "tensorflow" and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        sys.exit("Set TF_ENABLE_ONEDNN_OPTS=0 (as tests/conftest.py does).")
    for p in write_golden_files():
        print("wrote", p, p.stat().st_size, "bytes")
