"""Mixed precision end to end, on every backend.

Under ``mixed_float16`` Keras wraps the optimizer in a ``keras.optimizers.LossScaleOptimizer``,
which divides every gradient by its loss scale; the dual-loss step must scale both losses (task
and normalization) by the same factor before differentiating them, as Keras' own trainers do
(JAX: through the stateless optimizer API). Each test trains a model under a mixed policy
and, step by step, a float32 twin that starts each step from the mixed model's weights, on the
same batch, and compares what every trainable variable moved in that step:

1. ``DualLossModel`` (Functional), a subclassed model, ``EINetwork`` presets (I-Norm and
   layer norm) and an ``EIConvNetwork`` preset (conv I-Norm), ``mixed_float16`` and
   ``mixed_bfloat16``: each variable's update has the float32 step's size and direction, to
   the policy's rounding (``SIZE_ULPS``, ``DIRECTION_ULPS``). Steps the loss-scale optimizer
   skips (float16 overflow, while its scale settles from 2**15) move nothing.
2. The inhibitory plasticity schedules (``inhibitory_steps=2``, ``inhibitory_every=2``): the
   normalization-only and task-only updates are unscaled too.
3. An explicit ``LossScaleOptimizer`` (around ``dale_sgd``): under ``mixed_float16`` it trains
   like float32; under float32 it changes nothing (a power-of-two scale is exact); a step whose
   gradients overflow float16 is skipped and halves the scale, also when the step updates a
   subset of the variables (the schedules).
4. ``INormDense`` and ``INormConv2D`` called on their own under ``mixed_float16``: computed in
   float32 and rounded once to float16.

Every test restores the global dtype policy (``restore_dtype_policy``).
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import pytest
from dual_models import SavedSubclassedNet

from ei_keras import zoo
from ei_keras.layers import EIDense, INormConv2D, INormDense
from ei_keras.losses import SparseSmoothedCrossentropy
from ei_keras.models import DualLossModel
from ei_keras.optimizers import dale_sgd

WIDTH, INPUT_DIM, BATCH, STEPS = 24, 64, 16, 3

#: Unit roundoff of each policy's compute dtype: float16 keeps 11 significant bits, bfloat16 8.
UNIT_ROUNDOFF = {"mixed_float16": 2.0 ** -11, "mixed_bfloat16": 2.0 ** -8}
#: One step's update differs from float32's by a few roundings per layer: per layer the float16
#: input, the float16 matmul result and the float16 error signal sent back (about 3u each,
#: two or three layers: ~10u, first order). The size of each variable's update (its norm)
#: must agree to ``SIZE_ULPS * u``, its direction (``||dw_mixed - dw_float32|| /
#: ||dw_float32||``) to ``DIRECTION_ULPS * u``: 1.0e-2 and 2.0e-2 in float16. A step taken
#: without loss scaling is 2**-15 of the float32 one, a doubly scaled one 2**15 times it.
SIZE_ULPS = 20
DIRECTION_ULPS = 40
#: A task-trained layer with one inhibitory unit (the readouts): ``W_EI`` is one column of
#: ones (row-stochastic), so ``W_IE``'s task gradient ``-(W_EI^T delta) h^T`` sums over the
#: units terms that cancel (``delta = softmax - target`` sums to zero over the classes): zero
#: at initialisation, then a small fraction of its terms, each of which is a row of
#: ``W_EE``'s gradient ``delta_j h^T``. Its rounding error is a few u of those terms, not of
#: the cancelled result: ``||dw_mixed - dw_float32|| <= DIRECTION_ULPS * u * ||dW_EE||``.
@pytest.fixture(autouse=True)
def restore_dtype_policy():
    """Every test here sets the global policy; put back the one the test started with."""
    before = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(before)


@contextlib.contextmanager
def dtype_policy(name):
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def to_np(v) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(v), dtype=np.float64)


def batches(n=STEPS, seed=0, input_dim=INPUT_DIM):
    rng = np.random.default_rng(seed)
    return [(rng.random((BATCH, input_dim), dtype=np.float32),
             rng.integers(0, 10, BATCH).astype("int32")) for _ in range(n)]


def paper_optimizer():
    return dale_sgd(0.05, 0.3, 0.1, clipnorm=0.5)


def functional(optimizer=None, **schedule):
    """``Input -> INormDense -> ReLU -> EIDense(10)`` with two inhibitory units in the readout
    (no cancelling readout ``W_IE``; see ``CANCELLING_SIZE_RTOL``)."""
    inputs = keras.Input((INPUT_DIM,))
    h = INormDense(WIDTH, error_normalization="full", seed=0, name="inorm")(inputs)
    h = keras.layers.ReLU()(h)
    outputs = EIDense(10, inhibitory_units=2, seed=1, name="readout")(h)
    model = DualLossModel(inputs, outputs, name="functional")
    model.compile(optimizer=optimizer or paper_optimizer(), loss=SparseSmoothedCrossentropy(0.1),
                  **schedule)
    return model


def subclassed(**schedule):
    model = SavedSubclassedNet(width=WIDTH, seed=0)
    model.build((None, INPUT_DIM))
    model.compile(optimizer=paper_optimizer(), loss=SparseSmoothedCrossentropy(0.1), **schedule)
    return model


def preset(name):
    return lambda **schedule: zoo.build(name, width=WIDTH, seed=0, input_dim=INPUT_DIM,
                                        **schedule)


def conv_preset(**schedule):
    """``EIConvNetwork``: two I-Norm conv layers (4 and 8 filters) on 28 x 28 images."""
    return zoo.build("conv_inorm_gradnorm", width=8, seed=0, **schedule)


def mis_normalize(model):
    """Move the I-Norm layers off their exactly normalized initialisation, so that the
    normalization loss has a real gradient from the first step. (The models trained for
    several steps start as built: there the first step moves ``W_EE`` and the normalization
    loss has a gradient from the second step on. Mis-normalized, their first step's float16
    gradients overflow at the default loss scale 2**15 and that step is skipped, as Keras'
    own trainer would.)"""
    for layer in model.normalization_layers():
        layer.bias.assign(to_np(layer.bias) + 0.3)
        if getattr(layer, "B_IE", None) is not None:
            layer.B_IE.assign(0.6 * to_np(layer.B_IE))


def updates(model, data):
    """Train on each batch once; each trainable variable's total change (float64)."""
    before = [to_np(v) for v in model.trainable_variables]
    for x, y in data:
        model.train_on_batch(x, y)
    return {v.path: to_np(v) - b for v, b in zip(model.trainable_variables, before)}


def iterations(model) -> int:
    return int(to_np(model.optimizer.iterations))


def cancelling_variables(model) -> dict:
    """``{index of W_IE: index of W_EE}`` (in ``trainable_variables``) of the task-trained
    layers with a single inhibitory unit."""
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    return {index[id(layer.W_IE)]: index[id(layer.W_EE)]
            for layer in model._flatten_layers(include_self=False)
            if getattr(layer, "inhibitory_units", None) == 1 and layer.W_IE.trainable
            and not hasattr(layer, "normalization_variables")}


def compare_steps(build, policy, steps=STEPS, input_dim=INPUT_DIM, size_ulps=SIZE_ULPS,
                  direction_ulps=DIRECTION_ULPS, **schedule) -> dict:
    """Train ``build(**schedule)`` under ``policy`` batch by batch; before each batch a float32
    twin takes the mixed model's weights (and schedule position) and trains on the same batch;
    each step's update of every trainable variable is compared (``assert_step_like_float32``).

    Under ``mixed_float16`` a step whose float16 gradients overflow is skipped by Keras'
    loss-scale optimizer, which halves its scale (what Keras' own trainer does too: the scale
    starts at 2**15 and settles): such a step must move nothing that it skipped, and is not
    compared. ``steps`` steps are compared; returns ``{"skipped": n, "size": worst size
    error, "direction": worst direction error}`` (errors in units of u, printed with -s)."""
    reference = build(**schedule)
    mis_normalize(reference)
    with dtype_policy(policy):
        mixed = build(**schedule)
    assert mixed.dtype_policy.name == policy
    mixed.set_weights(reference.get_weights())
    norm = {i for i, v in enumerate(mixed.trainable_variables)
            if v.path in set(mixed.loss_assignment()["normalization"])}
    compared = skipped = 0
    worst = {"size": 0.0, "direction": 0.0}
    for x, y in batches(3 * steps, input_dim=input_dim):
        reference.set_weights(mixed.get_weights())
        before = [to_np(v) for v in mixed.trainable_variables]
        start_mixed, start_reference = iterations(mixed), iterations(reference)
        with dtype_policy(policy):
            mixed.train_on_batch(x, y)
        reference.train_on_batch(x, y)
        got = [to_np(v) - b for v, b in zip(mixed.trainable_variables, before)]
        want = [to_np(v) - b for v, b in zip(reference.trainable_variables, before)]
        applied = iterations(mixed) - start_mixed
        if applied == iterations(reference) - start_reference:
            # mis-normalized: every variable has a gradient; each step moves them all but
            # the normalization variables on inhibitory_every's task-only steps and the
            # cancelling W_IE (exactly 0 in float32 when W_EI is still all ones).
            assert sum(d.any() for d in want) >= \
                len(want) - len(norm) - len(cancelling_variables(mixed))
            for key, value in assert_step_like_float32(policy, mixed, got, want, size_ulps,
                                                       direction_ulps).items():
                worst[key] = max(worst[key], value)
            compared += 1
            if compared == steps:
                print(f"{mixed.name} {policy} {schedule}: {steps} steps compared, {skipped} "
                      f"skipped; worst size error {worst['size']:.2f} u, direction "
                      f"{worst['direction']:.2f} u")
                return {"skipped": skipped, **worst}
            continue
        # A skipped joint step moves no variable; the normalization-only updates that
        # follow it (inhibitory_steps) may be applied.
        skipped += 1
        for i, d in enumerate(got):
            if i not in norm or applied == 0:
                assert not d.any(), mixed.trainable_variables[i].path
    raise AssertionError(f"only {compared} of {steps} steps taken ({skipped} skipped)")


def assert_step_like_float32(policy, model, got, want, size_ulps=SIZE_ULPS,
                             direction_ulps=DIRECTION_ULPS) -> dict:
    """Asserts the tolerances above; returns the worst size and direction errors in u."""
    u = UNIT_ROUNDOFF[policy]
    worst = {"size": 0.0, "direction": 0.0}
    cancelling = cancelling_variables(model)
    for i, (d_mixed, d_ref) in enumerate(zip(got, want)):
        path = model.trainable_variables[i].path
        assert np.isfinite(d_mixed).all(), path
        error = float(np.linalg.norm(d_mixed - d_ref))
        if i in cancelling:
            terms = float(np.linalg.norm(want[cancelling[i]]))
            assert error <= direction_ulps * u * terms, (path, error, terms)
            worst["direction"] = max(worst["direction"], error / terms / u)
            continue
        if not d_ref.any():  # not in this step (inhibitory_every: a task-only step)
            assert not d_mixed.any(), path
            continue
        size = float(np.linalg.norm(d_ref))
        ratio = float(np.linalg.norm(d_mixed)) / size
        assert abs(ratio - 1) <= size_ulps * u, (path, ratio, (ratio - 1) / u)
        assert error / size <= direction_ulps * u, (path, error / size, error / size / u)
        worst = {"size": max(worst["size"], abs(ratio - 1) / u),
                 "direction": max(worst["direction"], error / size / u)}
    return worst


# --------------------------------------------------------------------------------------------
# 1. Models and policies


MODELS = {"functional": functional, "subclassed": subclassed,
          "inorm_gradnorm": preset("inorm_gradnorm"), "ei_ln": preset("ei_ln")}


@pytest.mark.parametrize("kind", list(MODELS))
def test_mixed_float16_trains_like_float32(kind):
    compare_steps(MODELS[kind], "mixed_float16")


def test_conv_network_under_mixed_float16_trains_like_float32():
    # GradNorm centres the error over each sample's map, so the conv layers' bias and kernel
    # gradients sum a nearly zero-mean error over 196 (then 49) positions: sums that cancel,
    # whose rounding error that cancellation amplifies (measured: 31 u in size, 54 u in
    # direction, the first layer's bias and kernel). Five times looser than the dense
    # models; a missing or doubled loss scale (2**15, 2**11 u) is still far outside.
    compare_steps(conv_preset, "mixed_float16", input_dim=28 * 28, size_ulps=5 * SIZE_ULPS,
                  direction_ulps=5 * DIRECTION_ULPS)


def test_mixed_bfloat16_trains_like_float32():
    # bfloat16 has float32's exponent range: no loss scaling, no step skipped.
    assert compare_steps(functional, "mixed_bfloat16")["skipped"] == 0


# --------------------------------------------------------------------------------------------
# 2. The inhibitory plasticity schedules


@pytest.mark.parametrize("schedule", [{"inhibitory_steps": 2}, {"inhibitory_every": 2}],
                         ids=["inhibitory_steps=2", "inhibitory_every=2"])
def test_schedules_under_mixed_float16_train_like_float32(schedule):
    compare_steps(preset("inorm_gradnorm"), "mixed_float16", **schedule)


# --------------------------------------------------------------------------------------------
# 3. An explicit LossScaleOptimizer


def scaled_functional(initial_scale=2.0 ** 15, **schedule):
    optimizer = keras.optimizers.LossScaleOptimizer(paper_optimizer(),
                                                    initial_scale=initial_scale)
    return functional(optimizer, **schedule)


def test_explicit_loss_scale_optimizer_under_mixed_float16():
    # With inhibitory_every=2: the task-only steps update a subset through it.
    def build(**kw):
        if keras.config.dtype_policy().name == "float32":
            return functional(**kw)
        model = scaled_functional(**kw)
        assert model.optimizer.inner_optimizer.name == "dale_sgd"  # not wrapped again
        return model

    compare_steps(build, "mixed_float16", inhibitory_every=2)


def test_explicit_loss_scale_optimizer_under_float32_changes_nothing():
    # Scaling by a power of two and unscaling is exact in float32 (no overflow here): the
    # updates equal the unscaled ones to float32 rounding of the compiled step (fusion may
    # reorder: a few float32 ulps of the update).
    data = batches()
    plain, scaled = functional(), scaled_functional()
    mis_normalize(plain)
    scaled.set_weights(plain.get_weights())
    got, want = updates(scaled, data), updates(plain, data)
    for path, d in got.items():
        np.testing.assert_allclose(d, want[path], rtol=0,
                                   atol=1e-5 * float(np.abs(want[path]).max()), err_msg=path)


def test_overflowing_steps_are_skipped_and_halve_the_scale_also_for_subset_updates():
    # initial_scale 2**40: the scaled gradient of the float16 logits (2**40 * delta / 16)
    # overflows float16 (max 65504), so every step that includes the task loss has non-finite
    # gradients: the loss-scale optimizer skips it and halves its scale. The normalization
    # loss is computed in float32 (INormDense) from the float32 input: its gradients stay
    # finite, and the extra normalization-only update of inhibitory_steps=2 (a subset update)
    # is applied, unscaled: from the unchanged weights it is the float32 model's first
    # normalization update.
    (x, y), = batches(1)
    with dtype_policy("mixed_float16"):
        every = scaled_functional(2.0 ** 40, inhibitory_every=2)
        before = [to_np(v) for v in every.trainable_variables]
        every.train_on_batch(x, y)  # joint update: skipped
        every.train_on_batch(x, y)  # task-only update (a subset): skipped
        for v, b in zip(every.trainable_variables, before):
            np.testing.assert_array_equal(to_np(v), b, err_msg=v.path)
        assert float(to_np(every.optimizer.dynamic_scale)) == 2.0 ** 38
        assert int(to_np(every.optimizer.iterations)) == 0

        steps = scaled_functional(2.0 ** 40, inhibitory_steps=2)
        mis_normalize(steps)
        start = steps.get_weights()
        got = updates(steps, [(x, y)])
    assert float(to_np(steps.optimizer.dynamic_scale)) == 2.0 ** 39
    reference = functional()
    reference.set_weights(start)
    want = updates(reference, [(x, y)])
    norm_paths = set(steps.loss_assignment()["normalization"])
    u = UNIT_ROUNDOFF["mixed_float16"]
    for path, d in got.items():
        if path not in norm_paths:
            assert not d.any(), path  # the skipped joint update moved nothing
            continue
        size = float(np.linalg.norm(want[path]))
        assert size > 0, path
        assert float(np.linalg.norm(d - want[path])) / size <= DIRECTION_ULPS * u, path


# --------------------------------------------------------------------------------------------
# 4. The I-Norm layers on their own


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_inorm_layers_called_alone_compute_in_float32_and_round_once(kind):
    rng = np.random.default_rng(3)
    if kind == "dense":
        make = lambda: INormDense(8, error_normalization="full", seed=0)  # noqa: E731
        x = rng.random((4, 12), dtype=np.float32)
    else:
        make = lambda: INormConv2D(4, 3, error_normalization="full", seed=0)  # noqa: E731
        x = rng.random((2, 8, 8, 1), dtype=np.float32)
    want = to_np(make()(x))
    with dtype_policy("mixed_float16"):
        layer = make()
        out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert all(v.dtype == "float32" for v in layer.weights)
    # One rounding to float16 of the float32 result: |error| <= u |z| (+ float32 slack).
    err = np.abs(to_np(out) - want)
    assert (err <= UNIT_ROUNDOFF["mixed_float16"] * np.abs(want) + 1e-6).all(), err.max()
