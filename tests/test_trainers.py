"""The dual-loss training step (``ei_keras.models.trainers``), on every backend.

1. One file per backend defines ``train_step``; the one in use is this backend's.
2. Any model gets the step: a Functional ``DualLossModel(inputs, outputs)`` (``keras.Input ->
   INormDense -> ReLU -> EIDense``) and a subclassed model log ``loss``, ``task_loss`` and
   ``norm_loss`` in ``History``, ``evaluate`` and ``CSVLogger``; ``steps_per_execution`` and
   validation still work.
3. With the default schedule the step IS the paper's step: for every preset, one step of the
   dual-loss trainer gives the variables (and loss) that Keras' stock trainer gives on the
   summed loss from the same weights and batch, to float32 rounding (``STEP_RTOL``). The stock
   trainer relies on the stop-gradients; the dual step on the declared assignment: a layer
   whose stop-gradients are missing shows the difference, and the dual step still moves every
   variable by exactly its assigned loss' gradient.
4. The inhibitory plasticity schedules do what they say (checked against updates computed
   independently with ``ei_keras.models.gradients``): ``inhibitory_steps=3`` = the joint update
   then two normalization-only updates; ``inhibitory_every=2`` = the inhibitory variables move
   on batches 0, 2, ... only, the task variables on every batch.
5. lambda is state: a callback that sets ``norm_weight`` changes the next steps' loss and
   updates on every backend (the compiled TF / JAX steps read the variable).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import keras
import numpy as np
import numpy_reference as ref
import pytest
from dual_models import SavedSubclassedNet
from keras import ops

import ei_keras.models.trainers as trainers
from ei_keras import zoo
from ei_keras.layers import EIDense, INormDense
from ei_keras.losses import SparseSmoothedCrossentropy
from ei_keras.models import DualLossModel, DualLossTrainer, EINetwork
from ei_keras.models.gradients import gradients
from ei_keras.optimizers import dale_sgd

BACKEND = keras.backend.backend()
TRAINERS = Path(trainers.__file__).parent
WIDTH, INPUT_DIM, BATCH = 24, 64, 16
#: One process computes both sides of the stock-vs-dual comparison from the same weights; the
#: dual step takes the gradient of each loss separately instead of their sum, so XLA (JAX, TF
#: jit) may fuse and round differently: |difference| <= STEP_RTOL * max|update| +
#: STEP_VTOL * max|v| (a few float32 ulps of the variable).
STEP_RTOL = 1e-5
STEP_VTOL = 4e-7
#: Schedules, against updates composed from independently computed gradients (eager): the
#: same float32 arithmetic in another order.
SCHEDULE_RTOL = 5e-5
SCHEDULE_VTOL = 2e-6


EPS32 = float(np.finfo(np.float32).eps)
#: The readout's W_IE has no gradient at initialisation: its one inhibitory unit projects to
#: every class with the same weight (W_EI's single column, rows normalized to sum 1: all ones),
#: so dL/dW_IE = -(sum_k dL/dz_k) W_EI x = 0, the (smoothed) softmax cross-entropy's gradient
#: summing to 0 over the classes. Whether float32 leaves it exactly in place depends on the
#: CPU's rounding (it did not move on an AMD EPYC, moves by ~1e-7 here): no test requires it
#: to move in a first step.
NO_GRADIENT = "readout/W_IE"


def assert_no_gradient_for_the_readout_w_ie(readout_w_ei):
    """The condition NO_GRADIENT rests on: the readout's W_EI is one uniform column."""
    assert readout_w_ei.shape[1] == 1 and np.all(readout_w_ei == readout_w_ei[0, 0])


def to_np(v) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(v))


def smoothed_cross_entropy(y, logits, smoothing):
    """Mean softmax cross-entropy against one-hot labels smoothed as ``(1 - s) onehot + s / K``
    (float64 NumPy)."""
    k = logits.shape[1]
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    target = np.full(logits.shape, smoothing / k)
    target[np.arange(len(y)), y] += 1 - smoothing
    return float(-(target * log_p).sum(axis=1).mean())


def data(n=4 * BATCH, d=INPUT_DIM, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d), dtype=np.float32), rng.integers(0, 10, n).astype("int32")


def functional_model(width=WIDTH, seed=0, **inorm):
    inputs = keras.Input((INPUT_DIM,))
    h = INormDense(width, error_normalization="full", seed=seed, name="inorm", **inorm)(inputs)
    h = keras.layers.ReLU()(h)
    outputs = EIDense(10, inhibitory_units=1, seed=seed + 1, name="readout")(h)
    return DualLossModel(inputs, outputs, name="functional")


def compile_paper(model, **schedule):
    model.compile(optimizer=dale_sgd(0.05, 0.3, 0.1, clipnorm=0.5),
                  loss=SparseSmoothedCrossentropy(0.1),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  **schedule)
    return model


def perturb(layer):
    """A mis-normalized I-Norm layer, so that L_norm has a real gradient (its SVD
    initialisation is exactly normalized)."""
    layer.bias.assign(to_np(layer.bias) + np.float32(0.3))
    if getattr(layer, "B_IE", None) is not None:
        layer.B_IE.assign(np.float32(0.6) * to_np(layer.B_IE))


# --------------------------------------------------------------------------------------------
# 1


def test_one_train_step_per_backend_file_and_this_backend_uses_its_own():
    files = sorted(p.name for p in TRAINERS.glob("*.py")
                   if re.search(r"^\s+def train_step\(", p.read_text(), re.M))
    assert files == ["jax.py", "tensorflow.py", "torch.py"]
    assert DualLossTrainer.__module__ == f"ei_keras.models.trainers.{BACKEND}"
    assert issubclass(EINetwork, DualLossTrainer)


# --------------------------------------------------------------------------------------------
# 2


@pytest.mark.parametrize("kind", ["functional", "subclassed", "subclass_of_dual_loss_model"])
def test_any_model_logs_task_and_norm_loss(kind, tmp_path):
    x, y = data()
    if kind == "functional":
        model = functional_model()
    elif kind == "subclassed":
        model = SavedSubclassedNet(width=WIDTH)
    else:
        # Subclassing DualLossModel still works after a Functional DualLossModel was made
        # (Keras would otherwise have turned the class into a Functional subclass).
        functional_model()

        class Net(DualLossModel):
            def __init__(self):
                super().__init__()
                self.inorm = INormDense(WIDTH, seed=3, name="inorm")
                self.readout = EIDense(10, seed=4, name="readout")

            def call(self, x):
                return self.readout(ops.relu(self.inorm(x)))

        model = Net()
    assert isinstance(model, DualLossTrainer)
    compile_paper(model)
    log = tmp_path / "log.csv"
    history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, shuffle=False,
                        validation_data=(x[:BATCH], y[:BATCH]),
                        callbacks=[keras.callbacks.CSVLogger(str(log))]).history
    for key in ("loss", "task_loss", "norm_loss", "accuracy", "val_loss", "val_task_loss",
                "val_norm_loss"):
        assert key in history and len(history[key]) == 2, sorted(history)
    for e in range(2):
        assert history["norm_loss"][e] > 0
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert {"loss", "task_loss", "norm_loss"} <= set(rows[0])
    assert float(rows[1]["norm_loss"]) == pytest.approx(history["norm_loss"][1], rel=1e-6)
    result = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    # Each part against its definition, computed here in float64 NumPy from the weights (equal
    # batches: the batch-weighted means are means over all samples). The trainer derives one
    # of its three numbers from the other two, so loss = task + norm alone would prove nothing.
    inorm = model.get_layer("inorm")
    w = {n: to_np(getattr(inorm, n)) for n in ("W_EE", "bias", "W_IE", "W_EI", "B_IE", "B_EI")}
    norm = ref.inorm_norm_loss(x, w["W_EE"], w["bias"], w["W_IE"], w["W_EI"], w["B_IE"],
                               w["B_EI"], norm_weight=inorm.norm_weight, epsilon=inorm.epsilon)
    logits = to_np(model.predict(x, batch_size=BATCH, verbose=0)).astype(np.float64)
    task = smoothed_cross_entropy(y, logits, 0.1)
    # float32 against float64: a logit ends sums of INPUT_DIM then 2 x WIDTH terms (drive and
    # divisive pooling, readout), each within n u of its |terms| (u = eps32 / 2); the
    # cross-entropy moves by at most 2 max|dz|, L_norm through its moments (see
    # tests/test_dual_loss_saving.py for that bound).
    rtol = (INPUT_DIM + 2 * WIDTH) * EPS32
    task_tol = rtol * (2 * float(np.abs(logits).max()) + task)
    norm_tol = 16 * rtol * float(np.sqrt(inorm.norm_weight * norm))
    assert norm > 1e-4 and abs(result["norm_loss"] - norm) <= norm_tol, (result, norm)
    assert abs(result["task_loss"] - task) <= task_tol, (result, task)
    assert abs(result["loss"] - (task + norm)) <= task_tol + norm_tol, (result, task + norm)
    assert model.loss_assignment()["normalization"] == [
        v.path for v in model.trainable_variables if v.path.rsplit("/", 1)[-1] in
        ("W_IE", "W_EI", "B_IE", "B_EI") and "readout" not in v.path]


def test_steps_per_execution_and_jit_keep_working():
    """Grouped, compiled steps (TF/JAX: 4 steps per call under jit) train as one step per call.
    Keras' torch trainer runs one step per call and says so; there the comparison is the
    eager step against itself through ``fit``'s grouping of 1."""
    x, y = data(8 * BATCH)
    a, b = functional_model(seed=5), functional_model(seed=5)
    compile_paper(a)
    spe, jit = (1, False) if BACKEND == "torch" else (4, True)
    if BACKEND == "torch":
        c = functional_model(seed=5)
        c.compile(optimizer=dale_sgd(0.05, 0.3, 0.1), loss=SparseSmoothedCrossentropy(0.1),
                  steps_per_execution=4)
        with pytest.raises(ValueError, match="steps_per_execution"):
            c.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    b.compile(optimizer=dale_sgd(0.05, 0.3, 0.1, clipnorm=0.5),
              loss=SparseSmoothedCrossentropy(0.1), steps_per_execution=spe, jit_compile=jit)
    ha = a.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False).history
    hb = b.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False).history
    for key in ("loss", "task_loss", "norm_loss"):
        assert hb[key][0] == pytest.approx(ha[key][0], rel=1e-5), key
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_allclose(to_np(vb), to_np(va), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# 3


class StockStep:
    """Keras' own trainer of this backend (one gradient of the summed loss)."""

    def train_step(self, *args):
        return keras.Model.train_step(self, *args)

    def test_step(self, *args):
        return keras.Model.test_step(self, *args)


class StockEINetwork(StockStep, EINetwork):
    pass


#: Distinct rates per group so that a variable updated at the wrong rate is caught.
RATES = {"lr_e": 0.05, "lr_ie": 0.3, "lr_ei": 0.1, "momentum": 0.0, "label_smoothing": 0.1}


def preset_model(name, cls):
    preset = zoo.get(name)
    hp = zoo.hyperparameters(name, **RATES)
    kwargs = {**preset.model, "hidden_units": (WIDTH, WIDTH), "seed": 11}
    if kwargs.get("hidden_layer") == "inorm":
        kwargs["norm_weight"] = 0.05
    model = cls(name=name, **kwargs)
    model.build((None, INPUT_DIM))
    for layer in model.hidden:
        perturb(layer)
    return zoo.compile_model(model, hp)


@pytest.mark.parametrize("name", zoo.names())
def test_default_step_equals_the_stock_trainer_step(name):
    x, y = data(BATCH)
    dual, stock = preset_model(name, EINetwork), preset_model(name, StockEINetwork)
    for a, b in zip(dual.weights, stock.weights):
        np.testing.assert_array_equal(to_np(a), to_np(b))
    before = {v.path: to_np(v) for v in dual.trainable_variables}
    out_dual = dual.train_on_batch(x, y, return_dict=True)
    out_stock = stock.train_on_batch(x, y, return_dict=True)
    assert out_dual["loss"] == pytest.approx(out_stock["loss"], rel=1e-6)
    worst = 0.0
    for a, b in zip(dual.variables, stock.variables):
        new_a, new_b = to_np(a), to_np(b)
        old = before.get(a.path, new_b)
        step = float(np.abs(new_b - old).max())
        tol = STEP_RTOL * step + STEP_VTOL * float(np.abs(old).max())
        err = float(np.abs(new_a - new_b).max())
        worst = max(worst, err / tol if tol else (0.0 if err == 0 else np.inf))
        assert err <= tol, (a.path, err, tol)
    # A real step: every variable with a gradient moved by far more than rounding (the
    # readout's W_IE has none, see NO_GRADIENT; it is checked above against the stock step).
    assert_no_gradient_for_the_readout_w_ie(before[dual.readout.W_EI.path])
    current = {v.path: to_np(v) for v in dual.trainable_variables}
    for path, old in before.items():
        if path.endswith(NO_GRADIENT):
            continue
        step = float(np.abs(current[path] - old).max())
        assert step > 10 * STEP_VTOL * float(np.abs(old).max()), (path, step)
    print(f"{name}: worst |dual - stock| / tolerance = {worst:.3f}")


class LeakyNormalization(keras.layers.Layer):
    """A layer whose normalization loss reaches its excitatory weight and whose output reaches
    its inhibitory weight: no stop-gradients at all. It declares ``w_i`` as its normalization
    variable, so the dual step must still route: ``w_e`` <- task loss, ``w_i`` <- L_norm."""

    def build(self, shape):
        self.w_e = self.add_weight(name="w_e", shape=(shape[-1], 8),
                                   initializer=keras.initializers.RandomNormal(seed=1))
        self.w_i = self.add_weight(name="w_i", shape=(shape[-1], 8),
                                   initializer=keras.initializers.RandomNormal(seed=2))

    @property
    def normalization_variables(self):
        return [self.w_i]

    def parts(self, x):
        e = ops.matmul(x, self.w_e)
        s = ops.matmul(x, self.w_i)
        return e - 0.5 * s, ops.mean(ops.square(e - s))

    def call(self, x):
        z, loss = self.parts(x)
        self.add_loss(loss)
        return z


def test_the_assignment_is_explicit_not_inferred_from_stop_gradients():
    x, y = data(BATCH)
    inputs = keras.Input((INPUT_DIM,))
    leaky = LeakyNormalization(name="leaky")
    model = DualLossModel(inputs, keras.layers.Dense(10, name="out")(leaky(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert model.loss_assignment()["normalization"] == [leaky.w_i.path]
    variables = model.trainable_variables
    xt, yt = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    _, task_grads = gradients(lambda: model.loss(yt, model(xt)), variables)
    _, norm_grads = gradients(lambda: leaky.parts(xt)[1], variables)
    before = [to_np(v) for v in variables]
    model.train_on_batch(x, y)
    for v, old, gt, gn in zip(variables, before, task_grads, norm_grads):
        assigned = gn if v is leaky.w_i else gt
        other = gt if v is leaky.w_i else gn
        if v is leaky.w_i or v is leaky.w_e:
            assert np.abs(other).max() > 1e-3  # the summed loss would have mixed them
        np.testing.assert_allclose(to_np(v), old - 0.1 * assigned, rtol=1e-5, atol=1e-6,
                                   err_msg=v.path)


# --------------------------------------------------------------------------------------------
# 4


def sgd_step(values, grads, lr, clipnorm, nonneg):
    g = grads.astype(np.float64)
    if clipnorm:
        g = g * clipnorm / max(float(np.linalg.norm(g)), clipnorm)
    out = values.astype(np.float64) - lr * g
    return np.maximum(out, 0.0) if nonneg else out


LR = {"W_IE": 0.3, "B_IE": 0.3, "W_EI": 0.1, "B_EI": 0.1}


def norm_update(layer, x):
    """One normalization-only update of ``layer``'s inhibitory variables, from independently
    computed gradients (NumPy SGD with the clip and NonNeg)."""
    norm_vars = layer.normalization_variables
    _, grads = gradients(lambda: _norm(layer, x), norm_vars)
    for v, g in zip(norm_vars, grads):
        name = v.path.rsplit("/", 1)[-1]
        v.assign(sgd_step(to_np(v), g, LR[name], 0.5, v.constraint is not None)
                 .astype("float32"))


def _norm(layer, x):
    return layer.preactivation(x)[1]  # lambda * L_norm, without add_loss


def check_close(got, want, old, what):
    step = float(np.abs(want - old).max())
    tol = SCHEDULE_RTOL * step + SCHEDULE_VTOL * float(np.abs(old).max())
    err = float(np.abs(got - want).max())
    assert err <= tol, (what, err, tol)


def test_inhibitory_steps_is_joint_update_then_normalization_only_updates():
    x, y = data(BATCH)
    model = compile_paper(functional_model(seed=7), inhibitory_steps=3)
    twin = compile_paper(functional_model(seed=7))  # default step
    for m in (model, twin):
        perturb(m.get_layer("inorm"))
    model.train_on_batch(x, y)
    twin.train_on_batch(x, y)  # the joint update
    layer = twin.get_layer("inorm")
    xt = ops.convert_to_tensor(x)
    for _ in range(2):
        norm_update(layer, xt)
    norm_paths = set(model.loss_assignment()["normalization"])
    for a, b in zip(model.trainable_variables, twin.trainable_variables):
        check_close(to_np(a), to_np(b), to_np(b), a.path)
    moved = [v for v in model.trainable_variables if v.path in norm_paths]
    assert len(moved) == 4


def test_inhibitory_every_updates_inhibition_on_one_batch_in_k():
    x, y = data(4 * BATCH)
    model = compile_paper(functional_model(seed=9), inhibitory_every=2)
    perturb(model.get_layer("inorm"))
    norm_paths = set(model.loss_assignment()["normalization"])
    history = []
    for step in range(4):
        before = {v.path: to_np(v) for v in model.trainable_variables}
        model.train_on_batch(x[step * BATCH:(step + 1) * BATCH],
                             y[step * BATCH:(step + 1) * BATCH])
        moved = {v.path for v in model.trainable_variables
                 if np.abs(to_np(v) - before[v.path]).max() > 0}
        history.append(moved)
        # The task variables learn on every batch; at the first, the readout's W_IE has no
        # gradient (NO_GRADIENT), then W_EI's column is no longer uniform and it has one.
        task_paths = set(before) - norm_paths
        if step == 0:
            assert_no_gradient_for_the_readout_w_ie(before[model.get_layer("readout").W_EI.path])
            task_paths = {p for p in task_paths if not p.endswith(NO_GRADIENT)}
        assert task_paths <= moved, step
        if step % 2 == 0:
            assert norm_paths <= moved, step
        else:
            assert not (norm_paths & moved), step
    assert int(to_np(model.inhibitory_counter)) == 4
    # ... also through fit (the counter continues across calls and epochs).
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    assert int(to_np(model.inhibitory_counter)) == 8


def test_schedules_need_an_optimizer_that_can_update_a_subset():
    model = functional_model()
    multi = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(
        default_optimizer=keras.optimizers.SGD(0.1)))
    with pytest.raises(ValueError, match="dale_sgd"):
        model.compile(optimizer=multi, loss="mse", inhibitory_every=2)
    with pytest.raises(ValueError, match="inhibitory_steps"):
        model.compile(optimizer="sgd", loss="mse", inhibitory_steps=0)


# --------------------------------------------------------------------------------------------
# 5


class SetLambda(keras.callbacks.Callback):
    def __init__(self, epoch, value):
        super().__init__()
        self.epoch, self.value = epoch, value

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.get_layer("inorm").norm_weight = self.value


@pytest.mark.parametrize("kind", ["functional", "ei_network"])
def test_changing_lambda_during_training_takes_effect(kind):
    x, y = data(4 * BATCH)
    if kind == "functional":
        model = compile_paper(functional_model(seed=2))
        layers = [model.get_layer("inorm")]
    else:
        model = zoo.build("inorm_gradnorm", width=WIDTH, seed=2, input_dim=INPUT_DIM)
        layers = list(model.hidden)
    for layer in layers:
        perturb(layer)

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snaps.append({v.path: to_np(v) for layer in layers
                          for v in layer.normalization_variables})

    class SetLambdaEverywhere(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                if kind == "functional":
                    self.model.get_layer("inorm").norm_weight = 0.0
                else:
                    self.model.norm_weight = 0.0
            if epoch == 2:
                for layer in layers:
                    layer.norm_weight = 1.0

    snaps = []
    history = model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, shuffle=False,
                        callbacks=[SetLambdaEverywhere(), Snapshot()]).history
    assert history["norm_loss"][0] > 0
    assert history["norm_loss"][1] == 0.0  # lambda = 0: no normalization loss ...
    for path, value in snaps[1].items():  # ... and the inhibitory variables stay put
        np.testing.assert_array_equal(value, snaps[0][path], err_msg=path)
    assert history["norm_loss"][2] > 0
    assert all(layer.norm_weight == 1.0 for layer in layers)


def test_zoo_passes_the_schedule_to_compile_and_it_is_saved():
    model = zoo.build("inorm_gradnorm", width=WIDTH, seed=0, input_dim=INPUT_DIM,
                      inhibitory_steps=2, inhibitory_every=3)
    assert (model.inhibitory_steps, model.inhibitory_every) == (2, 3)
    config = model.get_compile_config()
    assert (config["inhibitory_steps"], config["inhibitory_every"]) == (2, 3)
    default = zoo.build("ei_ln", width=WIDTH, seed=0, input_dim=INPUT_DIM)
    assert (default.inhibitory_steps, default.inhibitory_every) == (1, 1)
