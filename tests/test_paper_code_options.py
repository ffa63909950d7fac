"""Options of the paper's code that test our explanations (issue 23 item 2): the I-Norm presets
without the inhibitory gradient clip, and LayerNorm with its backward detached
(``ei_ln_detached``), on every backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ei_keras import zoo
from ei_keras.config import RunConfig
from ei_keras.experiment import resolve
from ei_keras.layers import DetachedLayerNormalization
from ei_keras.optimizers import group_optimizers

EPS32 = float(np.finfo(np.float32).eps)


def _data(n=64, d=12, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, d)).astype("float32"), rng.integers(0, classes, n)


# ---------------------------------------------------------------------------------------------
# opt.inhibitory_clipnorm=0: the I-Norm presets without their inhibitory gradient clip.


@pytest.mark.parametrize("preset", [p for p in zoo.all_names() if "inorm" in p])
def test_inhibitory_clip_can_be_turned_off_for_every_inorm_preset(preset):
    """``opt.inhibitory_clipnorm=0`` removes the presets' 0.1 clip (None keeps it)."""
    off = resolve(RunConfig().with_overrides([f"preset={preset}", "opt.inhibitory_clipnorm=0"]))
    default = resolve(RunConfig(preset=preset))
    assert default["hyperparameters"]["inhibitory_clipnorm"] == 0.1
    assert off["hyperparameters"]["inhibitory_clipnorm"] == 0.0
    assert off["fingerprint"] != default["fingerprint"]
    image = zoo.get(preset).network in ("conv", "rnn")  # they reshape 784 pixels
    for hp, clip in ((off["hyperparameters"], None), (default["hyperparameters"], 0.1)):
        model = zoo.build(preset, width=8, seed=0, input_dim=784 if image else 12, **hp)
        groups = group_optimizers(model.optimizer)
        # the excitatory group keeps its own (rnn_inorm's guard: zoo, "Recurrent presets")
        assert groups["excitatory"].clipnorm == hp.get("excitatory_clipnorm")
        assert groups["inhibitory_input"].clipnorm == clip
        assert groups["inhibitory_output"].clipnorm == clip


def test_an_inorm_preset_trains_without_the_clip():
    x, y = _data()
    model = zoo.build("inorm_gradnorm", width=8, seed=0, input_dim=12, inhibitory_clipnorm=0)
    assert group_optimizers(model.optimizer)["inhibitory_input"].clipnorm is None
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["norm_loss"]).all()


# ---------------------------------------------------------------------------------------------
# LayerNorm forward, identity backward.


def _layer_norm(z, eps=1e-5):
    z = z.astype(np.float64)
    mean = z.mean(-1, keepdims=True)
    return (z - mean) / np.sqrt(z.var(-1, keepdims=True) + eps)


def test_detached_layer_norm_forward_is_layer_norm():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(5, 16)).astype("float32")
    got = keras.ops.convert_to_numpy(DetachedLayerNormalization()(x))
    keras_ln = keras.ops.convert_to_numpy(
        keras.layers.LayerNormalization(center=False, scale=False, epsilon=1e-5)(x))
    # x + (LN(x) - x) in float32: LN's own rounding (<= ~16 eps relative to |y| ~ 1-3) plus
    # two roundings of eps/2 relative to max(|x|, |y|) for the difference and the sum.
    bound = 16 * EPS32 * np.abs(keras_ln) + EPS32 * np.maximum(np.abs(x), np.abs(keras_ln))
    assert (np.abs(got - _layer_norm(x)) <= bound + 1e-7).all()
    assert (np.abs(got - keras_ln) <= bound + 1e-7).all()


@pytest.mark.parametrize("norm, detached", [
    (lambda: DetachedLayerNormalization(), True),
    (lambda: keras.layers.LayerNormalization(center=False, scale=False, epsilon=1e-5), False)])
def test_detached_layer_norm_passes_the_error_through_unchanged(norm, detached):
    """One SGD step of ``Dense -> norm`` on the mean squared error: with the detached norm the
    kernel moves by ``-lr x^T dL/dy`` (the identity backward), with Keras' LayerNorm it does
    not."""
    rng = np.random.default_rng(1)
    batch, d, units, lr = 4, 6, 5, 0.1
    x = rng.uniform(size=(batch, d)).astype("float32")
    t = rng.normal(size=(batch, units)).astype("float32")
    w0 = rng.normal(0.0, 0.5, size=(d, units)).astype("float32")
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(
        units, use_bias=False, kernel_initializer=keras.initializers.Constant(w0)), norm()])
    model.compile(keras.optimizers.SGD(lr), "mse")
    model.train_on_batch(x, t)
    got = keras.ops.convert_to_numpy(model.layers[0].kernel)
    y = _layer_norm(x.astype(np.float64) @ w0)
    g = 2.0 * (y - t) / (batch * units)  # d mean((y - t)^2) / dy
    want = w0 - lr * x.astype(np.float64).T @ g
    # float32: the forward (LN, <= ~16 eps relative on y) carries into g, the product sums 4
    # terms, the update one rounding of eps/2 on |w0|.
    tol = 32 * EPS32 * (np.abs(w0).max() + lr * batch * np.abs(x).max() * np.abs(g).max())
    if detached:
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    else:
        assert np.abs(got - want).max() > 100 * tol


def test_ei_ln_detached_preset_trains_saves_and_loads(tmp_path):
    assert "ei_ln_detached" in zoo.names()
    resolve(RunConfig().with_overrides(["preset=ei_ln_detached"]))
    x, y = _data(d=784)
    model = zoo.build("ei_ln_detached", width=8, seed=0)
    assert all(isinstance(n, DetachedLayerNormalization) for n in model.norms)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"]).all()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert all(isinstance(n, DetachedLayerNormalization) for n in loaded.norms)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.predict(x, verbose=0)),
                               keras.ops.convert_to_numpy(model.predict(x, verbose=0)),
                               rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="center=True"):
        DetachedLayerNormalization(center=True)
