"""The isolation ablations (issue 23): `task_trains_inhibitory` and `norm_trains_excitatory`,
on every backend.

1. The float64 reference of the lifted gradients (the task error through `s` and `delta`;
   `L_norm` through `e = sg(x) W_EE^T + b`) matches finite differences.
2. `INormDense` with each flag gives exactly those gradients (every mode family: plain and
   GradNorm, divisive and subtractive-only); with both flags off the task loss reaches no
   inhibitory weight and `L_norm` no excitatory one.
3. The dual-loss step moves every variable by exactly `-lr_group x (its task-loss gradient if
   the task loss trains it + its normalization-loss gradient if that loss trains it)`: a
   shared variable gets the sum, one update at its group's rate. With a flag on, that is
   Keras' stock step on the summed loss (MLP and conv presets); the stateless step of the
   population trainer (torch) gives the same update.
4. The config keys reach the network, are refused (one `error:` line, exit 2) on presets
   without I-Norm layers, and the ablations recipe has the four variants.
"""

from __future__ import annotations

import keras
import numpy as np
import numpy_reference as ref
import pytest
from keras import ops

from ei_keras import zoo
from ei_keras.config import ConfigError, RunConfig
from ei_keras.layers import EIDense, INormDense
from ei_keras.losses import SparseSmoothedCrossentropy
from ei_keras.models import DualLossModel, EINetwork
from ei_keras.models.gradients import gradients
from ei_keras.optimizers import dale_sgd

BACKEND = keras.backend.backend()
INHIBITORY = ("W_IE", "W_EI", "B_IE", "B_EI")
EXCITATORY = ("W_EE", "bias")
#: max |backend - float64 reference| / max |reference|: float32 forward and backward through a
#: 16-wide layer (a few hundred ulps at most), as tests/test_layers.py's TOLERANCE.
TOLERANCE = 1e-5
FLAGS = [{"task_trains_inhibitory": True}, {"norm_trains_excitatory": True},
         {"task_trains_inhibitory": True, "norm_trains_excitatory": True}]
FLAG_IDS = ["task_inhib", "norm_exc", "both"]


def to_np(v) -> np.ndarray:
    return np.array(ops.convert_to_numpy(v))


def max_rel_err(actual, expected) -> float:
    expected = np.asarray(expected, np.float64)
    diff = np.abs(np.asarray(actual, np.float64) - expected).max()
    return float(diff / max(np.abs(expected).max(), 1e-30))


def point(d=16, ne=10, ni=3, batch=7, seed=0):
    """Dale-signed float32 weights away from the balanced initialisation (``B_IE`` free), an
    input and an upstream error; float64 copies of the float32 values."""
    rng = np.random.default_rng(seed)
    w_ee = rng.exponential(np.sqrt(2.0 / d), (ne, d))
    w = {"W_EE": w_ee, "bias": rng.normal(0.0, 0.1, ne),
         "W_IE": np.repeat(w_ee.mean(0, keepdims=True), ni, 0) * rng.uniform(0.6, 1.4, (ni, d)),
         "W_EI": rng.uniform(0.1, 1.0, (ne, ni)) / ni, "B_IE": rng.normal(0.0, 0.5, (ne, d)),
         "B_EI": rng.uniform(0.5, 1.5, (ne, ne)) / ne}
    w = {k: v.astype("float32").astype(np.float64) for k, v in w.items()}
    x = rng.uniform(0.0, 1.0, (batch, d)).astype("float32")
    c = rng.normal(size=(batch, ne)).astype("float32")
    return w, x, c


# --------------------------------------------------------------------------------------------
# 1


def test_reference_of_the_lifted_gradients_matches_finite_differences():
    w, x, c = point(d=6, ne=5, ni=2, batch=3)
    x, c = x.astype(np.float64), c.astype(np.float64)
    p = {k: v.copy() for k, v in w.items()}
    for divisive in (True, False):
        names = ("W_EE", "bias", "W_IE", "W_EI") + (("B_IE", "B_EI") if divisive else ())
        args = lambda d=divisive: (x, p["W_EE"], p["bias"], p["W_IE"], p["W_EI"],  # noqa: E731
                                   p["B_IE"] if d else None, p["B_EI"] if d else None)
        # Task loss sum(c z), no stop-gradient on s or delta (mode none: the true derivative;
        # x is held, as sg(x) holds it on the inhibitory path).
        task = ref.inorm_task_gradients(*args(), c=c, task_trains_inhibitory=True)
        norm = ref.inorm_norm_loss_gradients(*args(), norm_weight=0.5,
                                             norm_trains_excitatory=True)
        for name in names:
            fd = ref.numerical_gradient(lambda: (c * ref.inorm_preactivation(*args())).sum(),
                                        p[name])
            assert max_rel_err(task[name], fd) <= 1e-6, ("task", name, divisive)
            fd = ref.numerical_gradient(
                lambda: ref.inorm_norm_loss(*args(), norm_weight=0.5), p[name])
            assert max_rel_err(norm[name], fd) <= 1e-6, ("L_norm", name, divisive)


# --------------------------------------------------------------------------------------------
# 2


@pytest.mark.parametrize("subtractive_only", [False, True], ids=["divisive", "subtractive"])
@pytest.mark.parametrize("mode", ["none", "full"])
@pytest.mark.parametrize("flags", [{}, *FLAGS], ids=["off", *FLAG_IDS])
def test_inorm_dense_gradients_with_the_flags(flags, mode, subtractive_only):
    w, x, c = point()
    layer = INormDense(10, inhibitory_units=3, error_normalization=mode, activation="relu",
                       subtractive_only=subtractive_only, norm_weight=0.3, seed=0, **flags)
    layer.build((None, 16))
    names = EXCITATORY + (INHIBITORY[:2] if subtractive_only else INHIBITORY)
    for name in names:
        getattr(layer, name).assign(w[name].astype("float32"))
    args = (x, w["W_EE"], w["bias"], w["W_IE"], w["W_EI"],
            None if subtractive_only else w["B_IE"], None if subtractive_only else w["B_EI"])
    xv = keras.Variable(x, name="x")
    variables = [getattr(layer, n) for n in names] + [xv]
    cc = ops.convert_to_tensor(c)
    task_on = flags.get("task_trains_inhibitory", False)
    norm_on = flags.get("norm_trains_excitatory", False)
    _, task = gradients(lambda: ops.sum(cc * layer(xv)), variables)
    expected_task = ref.inorm_task_gradients(*args, c=c, mode=mode, activation="relu",
                                             task_trains_inhibitory=task_on)
    _, norm = gradients(lambda: layer.preactivation(xv)[1], variables)
    expected_norm = ref.inorm_norm_loss_gradients(*args, norm_weight=0.3,
                                                  norm_trains_excitatory=norm_on)
    errors = {}
    for what, got, want in (("task", task, expected_task), ("L_norm", norm, expected_norm)):
        for name, g in zip((*names, "x"), got, strict=True):
            if np.abs(want[name]).max():
                errors[f"{what}/{name}"] = max_rel_err(g, want[name])
            else:  # a stop-gradient: exactly nothing
                errors[f"{what}/{name}"] = float(np.abs(g).max())
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, bad
    # Each flag makes a real difference (the lifted gradients are not zero).
    if task_on:
        assert np.abs(expected_task["W_IE"]).max() > 1e-3
    if norm_on:
        assert np.abs(expected_norm["W_EE"]).max() > 1e-4
    # The layer declares what each loss trains.
    shared = {v.path.rsplit("/", 1)[-1] for v in layer.shared_variables}
    declared = {v.path.rsplit("/", 1)[-1] for v in layer.normalization_variables}
    inhibitory = set(names) - set(EXCITATORY)
    assert shared == (inhibitory if task_on else set()) | (set(EXCITATORY) if norm_on else set())
    assert declared == inhibitory | (set(EXCITATORY) if norm_on else set())


def test_the_flags_round_trip_through_get_config_and_are_checked():
    layer = INormDense(4, task_trains_inhibitory=True, seed=0)
    again = INormDense.from_config(layer.get_config())
    assert again.task_trains_inhibitory and not again.norm_trains_excitatory
    with pytest.raises(ValueError, match="task_trains_inhibitory"):
        INormDense(4, task_trains_inhibitory="yes")
    with pytest.raises(ValueError, match="hidden_layer='inorm' only"):
        EINetwork(hidden_units=(8,), hidden_layer="ei", norm_trains_excitatory=True)
    net = EINetwork(hidden_units=(8,), hidden_layer="inorm", norm_trains_excitatory=True,
                    seed=0)
    assert EINetwork.from_config(net.get_config()).hidden[0].norm_trains_excitatory


# --------------------------------------------------------------------------------------------
# 3

WIDTH, INPUT_DIM, BATCH = 12, 20, 16
#: Distinct rates per group, so that a variable updated at the wrong rate is caught.
LR = {"W_IE": 0.3, "B_IE": 0.3, "W_EI": 0.1, "B_EI": 0.1}
LR_E = 0.05
#: The dual step against updates composed from independently computed (eager) gradients:
#: the same float32 arithmetic in another order (tests/test_trainers.py's SCHEDULE_* bounds).
RTOL, VTOL = 5e-5, 2e-6


def data(n=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, INPUT_DIM), dtype=np.float32), rng.integers(0, 10, n).astype("int32")


def functional_model(seed=0, **flags):
    inputs = keras.Input((INPUT_DIM,))
    # Three inhibitory units: with one, W_EI is a column of ones (row-stochastic) and GradNorm's
    # centred error gives the subtractive weights no task gradient at all.
    h = INormDense(WIDTH, inhibitory_units=3, error_normalization="full", seed=seed,
                   name="inorm", norm_weight=0.3, **flags)(inputs)
    h = keras.layers.ReLU()(h)
    outputs = EIDense(10, inhibitory_units=1, seed=seed + 1, name="readout")(h)
    model = DualLossModel(inputs, outputs)
    model.compile(optimizer=dale_sgd(LR_E, 0.3, 0.1), loss=SparseSmoothedCrossentropy(0.1))
    layer = model.get_layer("inorm")  # away from the exactly normalized initialisation
    layer.bias.assign(to_np(layer.bias) + np.float32(0.3))
    layer.B_IE.assign(np.float32(0.6) * to_np(layer.B_IE))
    return model


def expected_step(model, x, y):
    """`{path: expected new value}` from eager gradients of the two losses (float64 SGD)."""
    layer = model.get_layer("inorm")
    variables = model.trainable_variables
    xt, yt = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    _, g_task = gradients(lambda: model.loss(yt, model(xt)), variables)
    _, g_norm = gradients(lambda: layer.preactivation(xt)[1], variables)
    assignment = model.loss_assignment()
    task, norm = set(assignment["task"]), set(assignment["normalization"])
    out, parts = {}, {}
    for v, gt, gn in zip(variables, g_task, g_norm):
        g = (gt if v.path in task else 0.0) + (gn if v.path in norm else 0.0)
        lr = LR.get(v.path.rsplit("/", 1)[-1], LR_E)
        new = to_np(v).astype(np.float64) - lr * np.asarray(g, np.float64)
        out[v.path] = np.maximum(new, 0.0) if v.constraint is not None else new
        parts[v.path] = (gt, gn)
    return out, parts


def check_step(model, before, want):
    for v in model.trainable_variables:
        old = before[v.path]
        step = float(np.abs(want[v.path] - old).max())
        tol = RTOL * step + VTOL * float(np.abs(old).max())
        err = float(np.abs(to_np(v) - want[v.path]).max())
        assert err <= tol, (v.path, err, tol)


@pytest.mark.parametrize("flags", [{}, FLAGS[2]], ids=["off", "both"])
def test_each_variable_moves_by_the_sum_of_the_losses_that_train_it(flags):
    x, y = data()
    model = functional_model(**flags)
    layer = model.get_layer("inorm")
    assignment = model.loss_assignment()
    shared = {v.path for v in layer.shared_variables}
    assert set(assignment["task"]) & set(assignment["normalization"]) == shared
    want, parts = expected_step(model, x, y)
    before = {v.path: to_np(v) for v in model.trainable_variables}
    model.train_on_batch(x, y)
    check_step(model, before, want)
    # A shared variable really has two gradients (the sum is not one of them).
    for path in shared:
        gt, gn = parts[path]
        assert np.abs(gt).max() > 1e-6 and np.abs(gn).max() > 1e-6, path
    if not flags:  # the paper's step: each loss trains its own variables
        names = {p.rsplit("/", 1)[-1] for p in assignment["normalization"]}
        assert names == set(INHIBITORY) and not shared


class StockStep:
    """Keras' own trainer of this backend (one gradient of the summed loss)."""

    def train_step(self, *args):
        return keras.Model.train_step(self, *args)


@pytest.mark.parametrize("name, flags", [("inorm", FLAGS[0]), ("inorm_gradnorm", FLAGS[1]),
                                         ("conv_inorm_gradnorm", FLAGS[2])],
                         ids=["inorm-task_inhib", "inorm_gradnorm-norm_exc",
                              "conv_inorm_gradnorm-both"])
def test_with_a_flag_the_step_is_the_stock_step_on_the_summed_loss(name, flags):
    """With a flag on, every variable's gradient is that of task + L_norm (the lifted
    stop-gradient is the only one between them), so Keras' stock trainer on the summed loss
    must give the same step."""
    from ei_keras.models import EIConvNetwork

    preset = zoo.get(name)
    conv = preset.network == "conv"
    base = EIConvNetwork if conv else EINetwork
    stock_cls = type("Stock", (StockStep, base), {})
    shape = (None, 784) if conv else (None, INPUT_DIM)
    models = []
    for cls in (base, stock_cls):
        kwargs = {**preset.model, "seed": 3, "norm_weight": 0.05, **flags}
        kwargs.update({"filters": (4, 8)} if conv else {"hidden_units": (WIDTH, WIDTH)})
        model = cls(name=name, **kwargs)
        model.build(shape)
        hp = zoo.hyperparameters(name, lr_e=0.05, lr_ie=0.3, lr_ei=0.1)
        models.append(zoo.compile_model(model, hp))
    dual, stock = models
    for layer in dual.hidden:  # off the normalized initialisation, in both
        for m in (dual, stock):
            twin = m.get_layer(layer.name)
            twin.bias.assign(to_np(twin.bias) + np.float32(0.3))
    rng = np.random.default_rng(1)
    x = rng.random((BATCH, shape[1]), dtype=np.float32)
    y = rng.integers(0, 10, BATCH).astype("int32")
    before = {v.path: to_np(v) for v in dual.trainable_variables}
    dual.train_on_batch(x, y)
    stock.train_on_batch(x, y)
    for a, b in zip(dual.trainable_variables, stock.trainable_variables):
        old, want = before[a.path], to_np(b)
        # tests/test_trainers.py's STEP_* bounds (XLA may fuse the two programs differently).
        tol = 1e-5 * float(np.abs(want - old).max()) + 4e-7 * float(np.abs(old).max())
        assert float(np.abs(to_np(a) - want).max()) <= tol, a.path


@pytest.mark.skipif(BACKEND != "torch", reason="JAX's trainer is the stateless step (tested "
                    "above); TensorFlow has no population engine")
def test_the_population_step_on_torch_sums_the_gradients_too():
    import torch

    from ei_keras.models.trainers import stateless
    from ei_keras.population._torch import _select, functional_updates

    x, y = data()
    flags = {"task_trains_inhibitory": True, "norm_trains_excitatory": True}
    model = functional_model(**flags)
    model.optimizer.build(model.trainable_variables)
    want, _ = expected_step(model, x, y)
    before = {v.path: to_np(v) for v in model.trainable_variables}
    state = ([v.value.detach() for v in model.trainable_variables],
             [v.value.detach() for v in model.non_trainable_variables],
             [v.value.detach() for v in model.optimizer.variables],
             [v.value.detach() for v in model.metrics_variables])
    with torch.no_grad(), functional_updates(model):
        _, new = stateless.dual_loss_step(model, state, (torch.as_tensor(x), torch.as_tensor(y)),
                                          torch.func.vjp, _select)
    for v, value in zip(model.trainable_variables, new[0]):
        v.assign(value)
    check_step(model, before, want)


# --------------------------------------------------------------------------------------------
# 4


def test_config_keys_reach_the_network_and_are_neutral_off():
    from ei_keras.config import unused_keys
    from ei_keras.experiment import model_overrides

    cfg = RunConfig().with_overrides(["preset=inorm", "model.task_trains_inhibitory=yes",
                                      "model.norm_trains_excitatory=1"])
    net = zoo.build("inorm", width=8, seed=0, model_overrides=model_overrides(cfg))
    assert all(h.task_trains_inhibitory and h.norm_trains_excitatory for h in net.hidden)
    off = RunConfig().flat()
    assert {"model.task_trains_inhibitory", "model.norm_trains_excitatory"} <= \
        set(unused_keys(off))


@pytest.mark.parametrize("argv, key", [
    (["--preset", "ei", "model.task_trains_inhibitory=true"], "model.task_trains_inhibitory"),
    (["--preset", "ei_ln", "model.norm_trains_excitatory=true"], "model.norm_trains_excitatory"),
    (["--preset", "conv_ei", "model.norm_trains_excitatory=true"],
     "model.norm_trains_excitatory"),
    (["--preset", "inorm", "model.gradnorm_on=z"], "model.gradnorm_on"),
    (["--preset", "ei", "model.gradnorm_on=z"], "model.gradnorm_on"),
    (["--preset", "inorm_sub", "model.gradnorm_on=z"], "model.gradnorm_on"),
    (["--preset", "inorm_center", "model.gradnorm_on=z"], "model.gradnorm_on"),
    (["--preset", "rnn_inorm_gradnorm", "model.task_trains_inhibitory=true"],
     "model.task_trains_inhibitory"),
])
def test_model_keys_that_do_not_apply_are_refused(argv, key, tmp_path, capsys):
    """The one rule (as `loss.norm_weight` on `ei`): one `error:` line, exit code 2,
    nothing written."""
    from ei_keras.cli import main

    out = tmp_path / "never"
    rc = main(["train", "--out", str(out), *argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1, err
    assert key in lines[0] and "does not apply" in lines[0] and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="does not apply"):
        RunConfig().with_overrides([f"preset={argv[1]}", argv[2]])


def test_the_keys_apply_where_they_should():
    for name in zoo.all_names():
        gradnorm = zoo.get(name).model.get("error_normalization") in ("full", "decorrelate")
        cfg = {"preset": name}
        if gradnorm:
            RunConfig().with_overrides({**cfg, "model.gradnorm_on": "z"})
        if zoo.has_inorm(name) and zoo.get(name).network in zoo.ISOLATION_KINDS:
            RunConfig().with_overrides({**cfg, "model.task_trains_inhibitory": True,
                                        "model.norm_trains_excitatory": True})
        # the default values are never refused
        RunConfig().with_overrides({**cfg, "model.gradnorm_on": "y",
                                    "model.task_trains_inhibitory": False})


def test_the_ablations_recipe_has_the_isolation_variants():
    from ei_keras import recipes

    protocol = recipes.get("ablations")
    for preset in ("inorm", "inorm_gradnorm"):
        assert protocol.variants[f"{preset}_task_inhib"] == (
            preset, {"model.task_trains_inhibitory": True})
        assert protocol.variants[f"{preset}_norm_exc"] == (
            preset, {"model.norm_trains_excitatory": True})
    cells = dict(recipes.plan(protocol, smoke=True, conditions=["inorm_task_inhib"]))
    assert all(c.model.task_trains_inhibitory and c.preset == "inorm" for c in cells.values())
