"""Tests of the recurrent E-I layers (`EIRNNCell`, `INormRNNCell`, `INormRNN`) and the recurrent
network, under the backend chosen by KERAS_BACKEND.

- Same numbers everywhere: the states of a several-step sequence (batch > 1), the task
  gradients (backpropagation through time, every error-normalization mode) and the
  normalization-loss gradients equal the float64 unrolled NumPy reference
  (`tests/numpy_reference.py`: the dense layers' references chained over the steps).
- Gradient isolation at every step (task loss: never an inhibitory weight; normalization loss:
  never `W_EE`, the bias or the input), roles declared, the dual-loss trainer's assignment.
- Keras behaviour: `return_sequences`, `stateful` (two half sequences = one whole one, the
  loss of each batch its own steps'), `go_backwards`, `return_state`, config and `.keras`
  round trips; `fit` on real Fashion-MNIST rows lowers the loss.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import numpy_reference as ref
import pytest

from ei_keras import roles, search_space, zoo
from ei_keras.layers import EIDense, EIRNNCell, INormRNN, INormRNNCell
from ei_keras.models import DualLossModel, EIRecurrentNetwork
from ei_keras.models.gradients import gradients
from ei_keras.ops import ERROR_NORMALIZATION_MODES
from ei_keras.optimizers import group_optimizers

EPS32 = float(np.finfo(np.float32).eps)
BATCH, T, D, UNITS, NI = 3, 5, 6, 8, 2
EXCITATORY = ("W_EE", "bias")
INHIBITORY = ("W_IE", "W_EI", "B_IE", "B_EI")
#: max |backend - float64 reference| / max |reference|. The dense layers' tests allow 1e-5 for
#: one step (sums of d + units = 14 terms rounded at ~eps32 each, then the normalization). Each
#: unrolled step adds its own rounding to the state it reads, which carries the earlier steps';
#: while the steps' Jacobians do not amplify (this point's weights are <= 0.4 and its states
#: O(1)), the errors add: T x 1e-5. Measured (max over every case here): 9.0e-7 JAX,
#: 9.6e-7 TensorFlow, 7.2e-7 torch.
TOLERANCE = T * 1e-5
#: The reference point keeps every pre-activation this far from ReLU's kink, so no float32
#: rounding (relative ~T x 1e-5 of |z| <= ~10) can flip a unit between the backend and the
#: reference.
KINK_MARGIN = 1e-3


def to_numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def max_rel_err(actual, expected) -> float:
    expected = np.asarray(expected, np.float64)
    scale = np.abs(expected).max()
    diff = np.abs(np.asarray(actual, np.float64) - expected).max()
    return float(diff / scale) if scale else float(diff)


def point(seed=0, subtractive_only=False):
    """Weights away from the initialisation (where L_norm ~ 0), an input sequence and an
    upstream error, as float32 values (the reference reads the same float32 numbers)."""
    rng = np.random.default_rng(seed)
    w = {"W_EE": rng.uniform(0.0, 0.4, (UNITS, D + UNITS)),
         "bias": rng.normal(0.0, 0.3, UNITS),
         "W_IE": rng.uniform(0.0, 0.4, (NI, D + UNITS)),
         "W_EI": rng.uniform(0.0, 0.5, (UNITS, NI))}
    if not subtractive_only:
        w["B_IE"] = rng.normal(0.0, 0.3, (UNITS, D + UNITS))
        w["B_EI"] = rng.uniform(0.05, 0.2, (UNITS, UNITS))
    x = rng.uniform(0.0, 1.0, (BATCH, T, D))
    c = rng.normal(size=(BATCH, T, UNITS))
    cast = {k: v.astype("float32").astype(np.float64) for k, v in w.items()}
    return cast, x.astype("float32"), c.astype("float32")


def assign(cell, w):
    for name, value in w.items():
        getattr(cell, name).assign(np.asarray(value, "float32"))


def ei_args(w):
    return w["W_EE"], w["W_IE"], w["W_EI"], w["bias"]


def inorm_args(w):
    return (w["W_EE"], w["bias"], w["W_IE"], w["W_EI"], w.get("B_IE"), w.get("B_EI"))


def compare(got: dict, expected: dict) -> dict:
    """The errors above TOLERANCE (relative; absolute where the reference is 0)."""
    errors = {k: max_rel_err(got[k], expected[k]) for k in expected}
    print(f"max relative error {max(errors.values()):.2e} (tolerance {TOLERANCE:.0e})")
    return {k: v for k, v in errors.items() if not v <= TOLERANCE}


# --------------------------------------------------------------------------------------------
# The float64 unrolled reference: outputs and both gradients


@pytest.mark.parametrize("normalization", [None, "layer_norm"])
def test_ei_cell_matches_unrolled_reference(normalization):
    w, x, c = point(1, subtractive_only=True)
    rnn = keras.layers.RNN(EIRNNCell(UNITS, inhibitory_units=NI, normalization=normalization,
                                     seed=0), return_sequences=True)
    rnn.build((None, T, D))
    assign(rnn.cell, w)
    ln = normalization == "layer_norm"
    h = np.zeros((BATCH, UNITS))  # the reference's ReLU inputs stay KINK_MARGIN from 0
    for t in range(T):
        z = ref.ei_dense_forward(np.concatenate([x[:, t], h], axis=-1), *ei_args(w))
        z = ref.layer_norm(z) if ln else z
        assert np.abs(z).min() > KINK_MARGIN
        h = np.maximum(z, 0.0)
    expected = ref.ei_rnn_forward(x, *ei_args(w), layer_norm_z=ln)
    got = {"states": to_numpy(rnn(x))}
    xv = keras.Variable(x, name="x")
    names = ("W_EE", "bias", "W_IE", "W_EI")
    cc = keras.ops.convert_to_tensor(c)
    _, grads = gradients(lambda: keras.ops.sum(cc * rnn(xv)),
                         [getattr(rnn.cell, n) for n in names] + [xv])
    got.update(dict(zip((*names, "x"), grads, strict=True)))
    want = {"states": expected, **ref.ei_rnn_task_gradients(x, *ei_args(w), c, layer_norm_z=ln)}
    assert not compare(got, want), compare(got, want)
    assert (expected > 0).any() and (expected == 0).any()  # ReLU active and inactive


def _kink_free(w, x, subtractive_only):
    """The reference's pre-activations stay KINK_MARGIN from 0 (see KINK_MARGIN)."""
    h = np.zeros((BATCH, UNITS))
    for t in range(T):
        u = np.concatenate([x[:, t], h], axis=-1)
        z = ref.inorm_preactivation(u, *inorm_args(w))
        assert np.abs(z).min() > KINK_MARGIN
        h = np.maximum(z, 0.0)


#: Every mode with the divisive population; subtractive-only with the presets' two modes.
INORM_CASES = [(m, False) for m in ERROR_NORMALIZATION_MODES] + [("none", True), ("full", True)]


@pytest.mark.parametrize(("mode", "subtractive_only"), INORM_CASES,
                         ids=[f"{m}-{'subtractive' if s else 'divisive'}" for m, s in INORM_CASES])
def test_inorm_cell_matches_unrolled_reference(mode, subtractive_only):
    w, x, c = point(2, subtractive_only)
    _kink_free(w, x, subtractive_only)
    rnn = INormRNN(INormRNNCell(UNITS, inhibitory_units=NI, error_normalization=mode,
                                subtractive_only=subtractive_only, norm_weight=0.3, seed=0),
                   return_sequences=True)
    rnn.build((None, T, D))
    assign(rnn.cell, w)
    cell = rnn.cell
    lateral = None if cell.lateral_weights is None else to_numpy(cell.lateral_weights)
    names = EXCITATORY + (INHIBITORY[:2] if subtractive_only else INHIBITORY)
    args = inorm_args(w)
    got = {"states": to_numpy(rnn(x))}
    assert len(rnn.losses) == 1
    got["L_norm"] = to_numpy(rnn.losses[0])
    want = {"states": ref.inorm_rnn_forward(x, *args),
            "L_norm": ref.inorm_rnn_norm_loss(x, *args, norm_weight=0.3)}

    xv = keras.Variable(x, name="x")
    variables = [getattr(cell, n) for n in names] + [xv]
    cc = keras.ops.convert_to_tensor(c)
    _, task = gradients(lambda: keras.ops.sum(cc * rnn(xv)), variables)
    expected = ref.inorm_rnn_task_gradients(x, *args, c=c, mode=mode, lateral_weights=lateral)
    got.update({f"task/{n}": g for n, g in zip((*names, "x"), task, strict=True)})
    want.update({f"task/{n}": expected[n] for n in (*names, "x")})
    _, norm = gradients(lambda: rnn.outputs_and_loss(xv)[1], variables)
    expected = ref.inorm_rnn_norm_loss_gradients(x, *args, norm_weight=0.3)
    got.update({f"L_norm/{n}": g for n, g in zip((*names, "x"), norm, strict=True)})
    want.update({f"L_norm/{n}": expected[n] for n in (*names, "x")})
    assert not compare(got, want), compare(got, want)

    # Gradient isolation, exactly (not to a tolerance): disjoint supports.
    for n in names:
        if n in INHIBITORY:
            np.testing.assert_array_equal(got[f"task/{n}"], 0.0, err_msg=f"task reached {n}")
            assert np.abs(got[f"L_norm/{n}"]).max() > 0, n
        else:
            np.testing.assert_array_equal(got[f"L_norm/{n}"], 0.0, err_msg=f"L_norm reached {n}")
            assert np.abs(got[f"task/{n}"]).max() > 0, n
    np.testing.assert_array_equal(got["L_norm/x"], 0.0)
    assert np.abs(got["task/x"][:, 0]).max() > 0  # the error flows back to the first step


# --------------------------------------------------------------------------------------------
# Roles and the dual-loss trainer's routing


def test_roles_and_dual_loss_assignment():
    inputs = keras.Input((T, D))
    ei = keras.layers.RNN(EIRNNCell(UNITS, seed=0), return_sequences=True, name="ei_rnn")
    inorm = INormRNN(INormRNNCell(UNITS, error_normalization="full", seed=1), name="inorm_rnn")
    outputs = EIDense(4, inhibitory_units=1, seed=2, name="readout")(inorm(ei(inputs)))
    model = DualLossModel(inputs, outputs)
    expected = {"W_EE": roles.EXCITATORY, "bias": roles.EXCITATORY,
                "W_IE": roles.INHIBITORY_INPUT, "B_IE": roles.INHIBITORY_INPUT,
                "W_EI": roles.INHIBITORY_OUTPUT, "B_EI": roles.INHIBITORY_OUTPUT}
    for cell in (ei.cell, inorm.cell):
        for v in cell.trainable_variables:
            assert roles.role_of(v) == expected[v.name], v.path
    assignment = model.loss_assignment()
    assert sorted(p for p in assignment["normalization"]) == sorted(
        v.path for v in inorm.cell.inhibitory_variables)
    assert sorted(p.rsplit("/", 1)[-1] for p in assignment["normalization"]) == sorted(INHIBITORY)
    # the EI cell's inhibitory weights learn from the task loss, as in EIDense
    assert {v.path for v in ei.cell.trainable_variables} <= set(assignment["task"])
    # one owner of the loss: the wrapper declares the variables, the cell does not
    assert not hasattr(inorm.cell, "normalization_variables")
    assert model.normalization_layers() == [inorm]


# --------------------------------------------------------------------------------------------
# Keras behaviour


def _layers(kind, **kwargs):
    if kind == "ei":
        return keras.layers.RNN(EIRNNCell(UNITS, seed=3), **kwargs)
    return INormRNN(INormRNNCell(UNITS, error_normalization="full", seed=3), **kwargs)


#: The same computation split differently (two calls vs one): the same float32 operations in
#: the same order, up to the backends' fusion; a few eps32 of the state's magnitude.
SPLIT_RTOL = 64 * EPS32


@pytest.mark.parametrize("kind", ["ei", "inorm"])
def test_return_sequences_go_backwards_and_return_state(kind):
    x = np.random.default_rng(0).uniform(size=(BATCH, T, D)).astype("float32")
    seq = _layers(kind, return_sequences=True)
    states = to_numpy(seq(x))
    assert states.shape == (BATCH, T, UNITS)
    last = _layers(kind, return_state=True)
    out, h = last(x)
    np.testing.assert_allclose(to_numpy(out), states[:, -1], rtol=SPLIT_RTOL, atol=1e-7)
    np.testing.assert_allclose(to_numpy(h), states[:, -1], rtol=SPLIT_RTOL, atol=1e-7)
    back = _layers(kind, return_sequences=True, go_backwards=True)
    # go_backwards reads the sequence from its end; Keras returns the states in that order
    np.testing.assert_allclose(to_numpy(back(x)), to_numpy(seq(x[:, ::-1])), rtol=SPLIT_RTOL,
                               atol=1e-7)
    inputs = keras.Input((T, D))
    symbolic = _layers(kind, return_sequences=True, return_state=True)(inputs)
    assert [tuple(t.shape) for t in symbolic] == [(None, T, UNITS), (None, UNITS)]


@pytest.mark.parametrize("kind", ["ei", "inorm"])
def test_stateful_carries_the_state_across_batches(kind):
    x = np.random.default_rng(1).uniform(size=(BATCH, 2 * T, D)).astype("float32")
    whole = _layers(kind, return_sequences=True)
    expected = to_numpy(whole(x))
    stateful = _layers(kind, return_sequences=True, stateful=True)
    first = to_numpy(stateful(x[:, :T]))
    second = to_numpy(stateful(x[:, T:]))
    got = np.concatenate([first, second], axis=1)
    np.testing.assert_allclose(got, expected, rtol=SPLIT_RTOL, atol=1e-7)
    np.testing.assert_allclose(to_numpy(stateful.states[0]), expected[:, -1], rtol=SPLIT_RTOL,
                               atol=1e-7)
    if kind == "inorm":  # each batch's loss is the mean over its own steps
        loss_whole = float(to_numpy(whole.losses[-1]))
        second_loss = float(to_numpy(stateful.losses[-1]))
        first_loss = float(to_numpy(stateful.outputs_and_loss(x[:, :T], initial_state=[
            keras.ops.zeros((BATCH, UNITS))])[1]))
        assert (first_loss + second_loss) / 2 == pytest.approx(loss_whole, rel=1e-5)
    stateful.reset_state()
    np.testing.assert_array_equal(to_numpy(stateful.states[0]), 0.0)
    np.testing.assert_allclose(to_numpy(stateful(x[:, :T])), first, rtol=SPLIT_RTOL, atol=1e-7)


def test_inorm_loss_is_averaged_over_unmasked_steps():
    x = np.random.default_rng(2).uniform(size=(BATCH, T, D)).astype("float32")
    mask = np.ones((BATCH, T), bool)
    mask[0, 3:] = False  # sample 0: 3 steps
    rnn = _layers("inorm")
    rnn.build((None, T, D))
    _, masked = rnn.outputs_and_loss(x, mask=keras.ops.convert_to_tensor(mask))
    per_sample = []
    for i, steps in enumerate((3, T, T)):
        _, loss = rnn.outputs_and_loss(x[i:i + 1, :steps])
        per_sample.append(float(to_numpy(loss)))
    assert float(to_numpy(masked)) == pytest.approx(np.mean(per_sample), rel=1e-5)


@pytest.mark.parametrize("kind", ["ei", "inorm"])
def test_config_and_keras_file_round_trip(kind, tmp_path):
    inputs = keras.Input((T, D))
    outputs = EIDense(3, inhibitory_units=1, seed=4)(_layers(kind)(inputs))
    model = DualLossModel(inputs, outputs)
    x = np.random.default_rng(3).uniform(size=(BATCH, T, D)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    layer = model.layers[1]
    config = layer.get_config()
    clone = type(layer).from_config(json.loads(json.dumps(config))).get_config()
    assert clone["cell"]["config"] == config["cell"]["config"]  # (less the build record)
    assert {k: v for k, v in clone.items() if k != "cell"} == \
        {k: v for k, v in config.items() if k != "cell"}


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="INormRNN"):
        keras.layers.RNN(INormRNNCell(4))(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match="INormRNNCell"):
        INormRNN(EIRNNCell(4))
    with pytest.raises(ValueError, match="normalization"):
        EIRNNCell(4, normalization="batch_norm")
    with pytest.raises(ValueError, match="multiple"):
        EIRecurrentNetwork(units=4, timesteps=5, seed=0).build((None, 784))
    with pytest.raises(ValueError, match="normalizes itself"):
        EIRecurrentNetwork(cell="inorm", normalization="layer_norm")


def test_initialisation_follows_the_dense_layer():
    cell = INormRNNCell(UNITS, seed=5)
    INormRNN(cell).build((None, T, D))
    w_ee, w_ie, w_ei = (to_numpy(cell.W_EE), to_numpy(cell.W_IE), to_numpy(cell.W_EI))
    assert w_ee.shape == (UNITS, D + UNITS) and (w_ee >= 0).all()
    np.testing.assert_allclose(w_ie, np.repeat(w_ee.mean(0, keepdims=True),
                                                cell.inhibitory_units, 0), rtol=1e-6)
    np.testing.assert_allclose(w_ei.sum(1), 1.0, atol=1e-6)
    kernel = to_numpy(cell.kernel)
    recurrent = to_numpy(cell.recurrent_kernel)
    assert kernel.shape == (D, UNITS) and recurrent.shape == (UNITS, UNITS)
    # the effective weight subtracts the mean excitatory row: each input's column sums to ~0
    full = np.concatenate([kernel, recurrent], axis=0)
    np.testing.assert_allclose(full.sum(1), 0.0, atol=1e-5 * np.abs(full).sum(1).max())


# --------------------------------------------------------------------------------------------
# The network on real row-sequential Fashion-MNIST


@pytest.mark.parametrize("preset", ["rnn_ei_ln", "rnn_inorm_gradnorm"])
def test_fit_on_fashion_mnist_rows_lowers_the_loss(preset, tmp_path):
    from ei_keras import data

    (x, y), _ = data.load_fashion_mnist()
    x, y = x[:512].reshape(512, 784).astype("float32"), np.asarray(y[:512], "int32")
    model = zoo.build(preset, width=32, seed=0)
    assert isinstance(model, EIRecurrentNetwork) and model.cell.input_dim == 28
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0).history
    assert history["task_loss"][-1] < history["task_loss"][0] - 0.05, history
    assert all(np.isfinite(history["loss"]))
    if preset.startswith("rnn_inorm"):
        assert all(v > 0 for v in history["norm_loss"])
        assert model.norm_weight == pytest.approx(0.01)
    (z,) = model.hidden_preactivations(x[:16])
    assert tuple(z.shape) == (16 * 28, 32)
    path = tmp_path / "rnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x[:16])), to_numpy(model(x[:16])), rtol=1e-6,
                               atol=1e-6)


def test_recurrent_presets_are_zoo_entries_with_their_space():
    assert zoo.rnn_names() == ["rnn_ei", "rnn_ei_ln", "rnn_inorm", "rnn_inorm_gradnorm"]
    for name in zoo.rnn_names():
        preset = zoo.get(name)
        assert preset.network == "rnn" and zoo.default_width(name) == zoo.RNN_DEFAULT_WIDTH
        assert zoo.has_inorm(name) == ("inorm" in name) and name in zoo.all_names()
        low, high, _ = search_space.space_for(name)["lr_e"]  # the default is inside the range
        assert low <= preset.hyperparameters["lr_e"] <= high
        low, high = search_space.width_range(name)
        assert low <= zoo.RNN_DEFAULT_WIDTH <= high
    # the excitatory clip: the recurrent I-Norm presets' default, off unless set elsewhere
    assert zoo.hyperparameters("rnn_inorm")["excitatory_clipnorm"] == 1.0
    assert zoo.hyperparameters("rnn_inorm", excitatory_clipnorm=0)["excitatory_clipnorm"] == 0
    assert "excitatory_clipnorm" not in zoo.hyperparameters("inorm")
    assert "excitatory_clipnorm" not in zoo.hyperparameters("rnn_ei")
    for name, clip in (("rnn_inorm", 1.0), ("rnn_inorm_gradnorm", 1.0), ("rnn_ei_ln", None)):
        groups = group_optimizers(zoo.build(name, width=8, seed=0).optimizer)
        assert groups["excitatory"].clipnorm == clip
        assert groups["inhibitory_input"].clipnorm == (0.1 if "inorm" in name else None)


def test_cli_trains_a_recurrent_preset_with_its_measures(tmp_path, capsys):
    """`ei-keras train --preset rnn_inorm --smoke`: the hidden moments are recorded (over the
    steps), the LayerNorm alignment is not (no LayerNorm twin: `layer_norm_twin`)."""
    from ei_keras import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--preset", "rnn_inorm", "--smoke", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and "alignment" not in metrics
    assert set(metrics["moments"]) == {"hidden_1"}
    assert metrics["hyperparameters"]["excitatory_clipnorm"] == 1.0


def test_svd_entropy_of_known_spectra():
    """`ei_keras.measures.svd_entropy` against the definition applied to singular values
    chosen in advance (`W = U diag(s) V^T` with random orthogonal `U`, `V`: no SVD in the
    expected value). Tolerance: float64 singular values are exact to ~n eps64 |s_max|
    (~1e-15 here), and `dH/dp_i = -(log p_i + 1) / log n` is O(10) at these `p`, so the
    computed H is exact to ~1e-13; 1e-12 leaves room."""
    from ei_keras.measures import spectral_radius, svd_entropy

    rng = np.random.default_rng(0)
    n = 6
    u, _ = np.linalg.qr(rng.normal(size=(n, n)))
    v, _ = np.linalg.qr(rng.normal(size=(n, n)))
    s = np.array([3.0, 2.0, 1.0, 0.5, 0.25, 0.0])  # a zero singular value: 0 log 0 = 0
    w = u @ np.diag(s) @ v.T
    p = s[:5] / s.sum()
    expected = -(p * np.log(p)).sum() / np.log(n)
    assert abs(svd_entropy(w) - expected) <= 1e-12
    assert abs(svd_entropy(-7.0 * w) - expected) <= 1e-12  # scale-free
    assert abs(svd_entropy(u) - 1.0) <= 1e-12  # orthogonal: every s_i equal
    assert svd_entropy(np.outer(rng.normal(size=n), rng.normal(size=n))) <= 1e-12  # rank one
    u4 = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    rect = u4 @ np.diag([4.0, 3.0, 2.0, 1.0]) @ np.linalg.qr(rng.normal(size=(9, 4)))[0].T
    q = np.array([4.0, 3.0, 2.0, 1.0]) / 10.0  # a (4, 9) matrix: n = 4 singular values
    assert abs(svd_entropy(rect) - (-(q * np.log(q)).sum() / np.log(4))) <= 1e-12
    # spectral radius: the eigenvalues of a rotation by 0.3 rad scaled by 2 are 2 e^{+-0.3i}
    rot = 2.0 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    assert abs(spectral_radius(rot) - 2.0) <= 1e-12
    for bad in (np.zeros((3, 3)), np.full((2, 2), np.nan), np.ones(3)):
        with pytest.raises(ValueError):
            svd_entropy(bad)


@pytest.mark.parametrize("kind", ["ei", "inorm"])
def test_recurrent_weight_matrix_is_the_state_part_of_the_preactivation(kind):
    """`recurrent_weight_matrix()` (float64, what the spectrum measures) is the cell's
    `recurrent_kernel` transposed, and for `EIRNNCell` what the step computes from the
    state: `z(x=0, h=I) - z(x=0, h=0) = W_rec^T`. Float32 tolerance: each entry of the
    backend's matrix is a sum of `ni` products (W_EI W_IE) and the step's of `d + units`
    terms, each rounded at ~eps32 of the largest term, so `1e-5` of the matrix's scale."""
    from ei_keras.measures import recurrent_spectrum, svd_entropy

    cell = (EIRNNCell(UNITS, inhibitory_units=NI, seed=3) if kind == "ei" else
            INormRNNCell(UNITS, inhibitory_units=NI, seed=3))
    layer = keras.layers.RNN(cell) if kind == "ei" else INormRNN(cell)
    layer.build((None, T, D))
    w = cell.recurrent_weight_matrix()
    assert w.dtype == np.float64 and w.shape == (UNITS, UNITS)
    assert max_rel_err(to_numpy(cell.recurrent_kernel).T, w) <= 1e-5
    if kind == "ei":
        x0 = np.zeros((UNITS, D), "float32")
        eye = np.eye(UNITS, dtype="float32")
        z = to_numpy(cell.step(x0, eye)) - to_numpy(cell.step(x0, np.zeros_like(eye)))
        assert max_rel_err(z.T, w) <= 1e-5
    else:  # every unit's delta_t is the same at initialization (the spectrum's docstring)
        b_ei = to_numpy(cell.B_EI)
        assert np.ptp(b_ei, axis=0).max() <= EPS32 * np.abs(b_ei).max()
    # routed by the model's declared `recurrent_weights()`; a feed-forward network has none
    net = EIRecurrentNetwork(units=UNITS, cell=kind, seed=0)
    net.build((None, 28 * D))
    (spectrum,) = recurrent_spectrum(net)
    assert spectrum["svd_entropy"] == svd_entropy(net.recurrent_weights()[0])
    assert 0.0 <= spectrum["svd_entropy"] <= 1.0 and spectrum["spectral_radius"] > 0
    assert recurrent_spectrum(zoo.build("ei", width=8, seed=0)) is None


def test_cli_train_records_the_recurrent_spectrum(tmp_path, capsys):
    """`ei-keras train --preset rnn_ei --smoke` records the normalized SVD entropy of the
    recurrent weights at initialization and at the end, both in [0, 1], and the spectral
    radius; the init value is the one `recurrent_spectrum` gives for the preset built at the run's
    seed (the initialization depends on the seed and width only)."""
    from ei_keras import cli
    from ei_keras.measures import recurrent_spectrum

    out = tmp_path / "run"
    assert cli.main(["train", "--preset", "rnn_ei", "--smoke", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    spectrum = metrics["spectrum"]
    assert set(spectrum) == {"svd_entropy_init", "svd_entropy_end", "spectral_radius_init",
                             "spectral_radius_end"}
    for key in ("svd_entropy_init", "svd_entropy_end"):
        assert 0.0 <= spectrum[key] <= 1.0, key
    config = json.loads((out / "config.json").read_text())
    built = zoo.build("rnn_ei", width=config["model"]["width"], seed=config["seed"],
                      num_classes=metrics["num_classes"])
    (init,) = recurrent_spectrum(built)
    # the same float32 weights drawn from the same NumPy seed: the same matrix up to the
    # backend's float32 rounding of the initializer (1e-6 relative; H moves by far less)
    assert abs(init["svd_entropy"] - spectrum["svd_entropy_init"]) <= 1e-6
