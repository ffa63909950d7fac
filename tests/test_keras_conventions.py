"""The layers and the dual-loss model follow Keras' conventions, under the backend chosen by
KERAS_BACKEND (issue #26, item 1).

- Keras' monitor callbacks (``EarlyStopping``, ``ModelCheckpoint``, ``ReduceLROnPlateau``) watch
  ``val_task_loss`` / ``val_norm_loss`` in ``mode="auto"``, knowing both should go down.
- Dense's argument order: ``EIDense(16, "relu")`` is ``EIDense(16, activation="relu")``; the
  positional parameters of every Dale layer are Dense's (Conv2D's for the convolutions), the
  E-I specifics keyword-only.
- ``layer.kernel`` is the effective kernel in Dense's ``(d, units)`` orientation (Conv2D's for
  the convolutions): ``x @ layer.kernel + bias`` equals the pre-activation of a float64 NumPy
  reference (for the I-Norm layers: the numerator ``e - s`` before the normalization).
- ``DualLossModel(inputs, outputs)`` is an instance of ``DualLossModel``, and building one
  leaves the class subclassable.

The golden ``.keras`` files written before these changes (``tests/data``) are loaded and
compared with their stored predictions by ``test_saving.py``, ``test_dual_loss_saving.py`` and
``test_conv_saving.py``.
"""

from __future__ import annotations

import inspect

import conv_reference
import keras
import numpy as np
import pytest
from keras import ops

from ei_keras.layers import EDense, EIConv2D, EIDense, INormConv2D, INormDense
from ei_keras.models import DualLossModel
from ei_keras.optimizers import dale_sgd

D, UNITS = 12, 6
EPS32 = float(np.finfo(np.float32).eps)


def to_numpy(x, dtype=np.float64):
    return np.asarray(ops.convert_to_numpy(x), dtype)


def weight(layer, name):
    return to_numpy(getattr(layer, name))


def dual_model(seed=0):
    inputs = keras.Input((D,))
    h = keras.layers.ReLU()(INormDense(8, error_normalization="full", seed=seed)(inputs))
    model = DualLossModel(inputs, EIDense(3, inhibitory_units=1, seed=seed + 1)(h))
    model.compile(optimizer=dale_sgd(0.05, 0.3, 0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, D)).astype("float32"), np.arange(n) % 3


# -- callbacks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("monitor", ["val_task_loss", "val_norm_loss"])
def test_monitor_callbacks_watch_the_dual_losses_in_auto_mode(monitor, tmp_path):
    """With ``min_delta`` larger than any loss can move, epoch 2 is no improvement on epoch 1:
    EarlyStopping(patience=0) stops there. Keras raises a ValueError in ``mode="auto"`` for a
    metric whose direction it cannot infer, so reaching the stop shows it read "down"."""
    model = dual_model()
    x, y = data()
    stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=0, min_delta=1e3)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor=monitor,
                                                 save_best_only=True)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor=monitor, patience=0, min_delta=1e3)
    history = model.fit(x, y, validation_data=(x, y), batch_size=16, epochs=5, verbose=0,
                        callbacks=[stop, checkpoint, plateau])
    assert len(history.history["loss"]) == 2 and stop.stopped_epoch == 1
    assert (tmp_path / "best.keras").exists()
    for callback in (stop, checkpoint, plateau):
        assert callback.monitor_op is ops.less
    # The logs keep their names: loss, task_loss, norm_loss and the val_ ones.
    assert {"loss", "task_loss", "norm_loss", "val_task_loss", "val_norm_loss"} <= \
        set(history.history)
    results = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(results) == {"loss", "task_loss", "norm_loss"}


# -- argument order --------------------------------------------------------------------------
DENSE_POSITIONAL = [p.name for p in inspect.signature(keras.layers.Dense).parameters.values()
                    if p.kind is p.POSITIONAL_OR_KEYWORD][:10]   # units ... bias_constraint
CONV_POSITIONAL = [p.name for p in inspect.signature(keras.layers.Conv2D).parameters.values()
                   if p.kind is p.POSITIONAL_OR_KEYWORD][:16]   # filters ... bias_constraint


def positional(cls):
    """The names a call can pass positionally, following ``__init__`` through ``*args``."""
    names = [p.name for p in inspect.signature(cls).parameters.values()
             if p.kind is p.POSITIONAL_OR_KEYWORD]
    if any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(cls).parameters.values()):
        parent = next(c for c in cls.__mro__[1:] if "__init__" in vars(c))
        names += positional(parent)[len(names):]
    return names


@pytest.mark.parametrize("cls, expected", [
    (EDense, DENSE_POSITIONAL), (EIDense, DENSE_POSITIONAL), (INormDense, DENSE_POSITIONAL),
    (EIConv2D, CONV_POSITIONAL), (INormConv2D, CONV_POSITIONAL)])
def test_positional_arguments_are_keras_own(cls, expected):
    assert DENSE_POSITIONAL[:3] == ["units", "activation", "use_bias"]
    assert CONV_POSITIONAL[:2] == ["filters", "kernel_size"] and \
        CONV_POSITIONAL[7:9] == ["activation", "use_bias"]
    assert positional(cls) == expected


@pytest.mark.parametrize("make", [
    lambda *a, **k: EDense(*a, seed=3, **k),
    lambda *a, **k: EIDense(*a, seed=3, **k),
    lambda *a, **k: INormDense(*a, error_normalization="full", seed=3, **k),
], ids=["EDense", "EIDense", "INormDense"])
def test_activation_is_the_second_positional_argument(make):
    x, _ = data(8)
    positional_layer, keyword_layer = make(UNITS, "relu", False), \
        make(UNITS, activation="relu", use_bias=False)
    assert positional_layer.get_config() == {**keyword_layer.get_config(),
                                             "name": positional_layer.name}
    np.testing.assert_array_equal(to_numpy(positional_layer(x)), to_numpy(keyword_layer(x)))
    assert positional_layer.activation is keras.activations.relu and positional_layer.bias is None


def test_conv_arguments_in_conv2d_order():
    x = np.random.default_rng(0).random((2, 9, 9, 3)).astype("float32")
    a = EIConv2D(4, 3, 2, "same", None, 1, 1, "relu", seed=0)
    b = EIConv2D(4, 3, strides=2, padding="same", activation="relu", seed=0)
    np.testing.assert_array_equal(to_numpy(a(x)), to_numpy(b(x)))
    with pytest.raises(ValueError, match="groups=1"):
        EIConv2D(4, 3, groups=2)


def test_inhibitory_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        EIDense(16, "relu", True, None, "zeros", None, None, None, None, None, 3)
    assert EIDense(16, inhibitory_units=3).inhibitory_units == 3
    assert INormDense(16, error_normalization="center").error_normalization == "center"


# -- the effective kernel --------------------------------------------------------------------
def reference_kernel(layer):
    """``(W_EE - W_EI W_IE)^T`` (``W_EE^T`` without inhibition), float64, Dense orientation."""
    w = weight(layer, "W_EE")
    if layer.inhibitory_units is not None:
        w = w - weight(layer, "W_EI") @ weight(layer, "W_IE")
    return w.T


def rounding_bound(x, layer, n_terms):
    """Float32 forward error of ``x W_EE^T - (x W_IE^T) W_EI^T + b`` (float64 ``x``): a dot
    product of ``n`` terms is off by at most ``n * eps * sum |terms|`` (the standard bound);
    the inhibitory product carries the error of ``x W_IE^T`` through ``W_EI`` and adds its own
    ``ni`` terms; the subtraction and the bias add one ``eps`` each of what they sum."""
    a = (n_terms + 2) * (np.abs(x) @ np.abs(weight(layer, "W_EE")).T)
    if layer.inhibitory_units is not None:
        ie = np.abs(x) @ np.abs(weight(layer, "W_IE")).T
        a = a + (n_terms + layer.inhibitory_units + 2) * (ie @ np.abs(weight(layer, "W_EI")).T)
    if layer.bias is not None:
        a = a + 2 * np.abs(weight(layer, "bias"))
    return EPS32 * a + 1e-30


def kernel_bound(layer):
    """Float32 error of ``W_EE - W_EI W_IE``: ``ni`` products, one subtraction."""
    w = np.abs(weight(layer, "W_EE"))
    if layer.inhibitory_units is not None:
        w = w + (layer.inhibitory_units + 1) * (np.abs(weight(layer, "W_EI"))
                                                @ np.abs(weight(layer, "W_IE")))
    return EPS32 * w.T


DENSE_LAYERS = {
    "EDense": lambda: EDense(UNITS, bias_initializer="random_normal", seed=1),
    "EIDense": lambda: EIDense(UNITS, bias_initializer="random_normal", inhibitory_units=2,
                               seed=1),
    "INormDense": lambda: INormDense(UNITS, bias_initializer="random_normal",
                                     error_normalization="full", seed=1),
}


@pytest.mark.parametrize("name", list(DENSE_LAYERS))
def test_kernel_gives_the_preactivation(name):
    layer = DENSE_LAYERS[name]()
    x = np.random.default_rng(2).normal(size=(16, D)).astype("float32")
    layer(x)
    # Move the weights off their balanced initialisation (W_IE's rows would all be equal).
    rng = np.random.default_rng(3)
    for v in layer.trainable_variables:
        v.assign(to_numpy(v, np.float32) * rng.uniform(0.5, 1.5, v.shape).astype("float32"))
    kernel = to_numpy(layer.kernel)
    assert kernel.shape == (D, UNITS)
    expected = reference_kernel(layer)
    # W_EE - W_EI W_IE in float32: ni products per entry, as rounding_bound.
    assert np.all(np.abs(kernel - expected) <= kernel_bound(layer))
    x64 = x.astype(np.float64)
    reference = x64 @ expected + weight(layer, "bias")
    if name == "INormDense":
        e, s, _ = layer._parts(ops.convert_to_tensor(x))
        preactivation = to_numpy(e) - to_numpy(s)
    else:
        preactivation = to_numpy(layer(x))
    bound = rounding_bound(x64, layer, D)
    assert np.all(np.abs(preactivation - reference) <= bound)
    # And the kernel itself, used as Dense would use it, in float32 (the kernel's own
    # rounding, carried through x, joins the bound).
    dense_like = to_numpy(ops.matmul(ops.convert_to_tensor(x), layer.kernel) + layer.bias)
    assert np.all(np.abs(dense_like - reference)
                  <= 2 * bound + np.abs(x64) @ kernel_bound(layer))


def test_kernel_is_read_only_and_needs_a_build():
    layer = EIDense(UNITS, seed=0)
    # An AttributeError, as Dense's kernel before build (hasattr(layer, "kernel") is False).
    # torch layers are torch.nn.Modules, whose __getattr__ replaces the message with its own.
    with pytest.raises(AttributeError) as raised:
        layer.kernel  # noqa: B018
    if keras.backend.backend() != "torch":
        assert "before it is built" in str(raised.value)
    assert not hasattr(layer, "kernel")
    layer(np.ones((1, D), "float32"))
    with pytest.raises(AttributeError):
        layer.kernel = np.zeros((D, UNITS), "float32")


@pytest.mark.parametrize("make", [
    lambda: EIConv2D(5, 3, strides=2, padding="same", bias_initializer="random_normal",
                     seed=0),
    lambda: INormConv2D(5, 3, padding="valid", bias_initializer="random_normal",
                        error_normalization="full", seed=0),
], ids=["EIConv2D", "INormConv2D"])
def test_conv_kernel_in_conv2d_orientation(make):
    layer = make()
    x = np.random.default_rng(4).random((2, 7, 7, 2)).astype("float32")
    layer(x)
    kernel = to_numpy(layer.kernel)
    assert kernel.shape == (3, 3, 2, 5)
    expected = reference_kernel(layer)          # (d, filters), d in (kh, kw, C) order
    assert np.all(np.abs(kernel.reshape(-1, 5) - expected) <= kernel_bound(layer))
    patches = conv_reference.im2col(x, layer.kernel_size, layer.strides, layer.padding)
    reference = patches @ expected + weight(layer, "bias")
    conv = to_numpy(ops.conv(x, layer.kernel, strides=layer.strides, padding=layer.padding)
                    + layer.bias)
    bound = 2 * rounding_bound(patches, layer, patches.shape[-1]) + \
        np.abs(patches) @ kernel_bound(layer)
    assert np.all(np.abs(conv - reference) <= bound)


# -- DualLossModel ---------------------------------------------------------------------------
def test_functional_dual_loss_model_is_a_dual_loss_model():
    model = dual_model()
    assert isinstance(model, DualLossModel) and isinstance(model, keras.Model)
    assert keras.Model in DualLossModel.__bases__   # not rewritten into a Functional subclass
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)

    class Net(DualLossModel):   # subclassed use still works after a functional construction
        def __init__(self):
            super().__init__()
            self.hidden = INormDense(8, error_normalization="full", seed=0)
            self.readout = EIDense(3, inhibitory_units=1, seed=1)

        def call(self, inputs):
            return self.readout(self.hidden(inputs))

    net = Net()
    net.compile(optimizer=dale_sgd(0.05, 0.3, 0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = net.fit(x, y, epochs=1, verbose=0).history
    assert isinstance(net, DualLossModel) and np.isfinite(history["norm_loss"][0])


# -- EIHyperModel with any tuner, on the user's data -----------------------------------------
def samples_seen():
    """A callback counting the samples of every training and validation batch
    (``batch_size=1``: one sample per batch) into a dict that survives KerasTuner's deep copy
    of the callbacks (a function is copied by reference, with its closure)."""
    seen = {"train": 0, "validation": 0}

    def count(key):
        def add(batch, logs=None):
            seen[key] += 1
        return add

    return seen, keras.callbacks.LambdaCallback(on_train_batch_end=count("train"),
                                                on_test_batch_end=count("validation"))


@pytest.mark.usefixtures("frozen_gc")
def test_hypermodel_trains_on_the_data_given_to_search(tmp_path):
    """``keras_tuner.RandomSearch(EIHyperModel(...))`` given only a narrower width (the SVD
    initialisation needs width <= the 12 input features): the hypermodel declares the rest of
    its family's space, each trial trains on exactly the samples passed to ``search`` (12
    features, 3 classes: Fashion-MNIST's 784 x 10 could not even be fed) and the objective is
    read from that training's ``val_`` metrics."""
    import keras_tuner

    from ei_keras import search_space
    from ei_keras.tuning import EIHyperModel

    rng = np.random.default_rng(0)
    x, y = rng.random((24, D)).astype("float32"), np.arange(24) % 3
    x_val, y_val = rng.random((10, D)).astype("float32"), np.arange(10) % 3
    seen, counter = samples_seen()
    hp = keras_tuner.HyperParameters()
    hp.Int("width", 4, D)
    tuner = keras_tuner.RandomSearch(
        EIHyperModel("inorm_gradnorm", input_dim=D, num_classes=3, printer=lambda *a: None),
        hyperparameters=hp, objective="val_accuracy", max_trials=2, seed=1,
        directory=tmp_path, project_name="p")
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=1, batch_size=1, verbose=0,
                 callbacks=[counter])
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2
    assert seen == {"train": 2 * len(x), "validation": 2 * len(x_val)}
    space = {h.name: h for h in tuner.oracle.get_space().space}
    assert {"lr_e", "lr_ie", "lr_ei", "width", "norm_weight", "epochs"} <= set(space)
    assert space["width"].max_value == D   # the given entry kept its definition
    low, high, _ = search_space.space_for("inorm_gradnorm")["lr_e"]
    assert all(low <= t.hyperparameters.values["lr_e"] <= high for t in trials)
    assert all(0 <= t.score <= 1 for t in trials)
    model = tuner.hypermodel.build(tuner.get_best_hyperparameters()[0])
    assert tuple(model.predict(x_val, verbose=0).shape) == (10, 3)


def test_hypermodel_without_data_needs_a_runs_dir():
    import keras_tuner

    from ei_keras import search_space
    from ei_keras.tuning import EIHyperModel

    hypermodel = EIHyperModel("ei_ln", printer=lambda *a: None)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values["width"] == search_space.width_range("ei_ln")[0]
    with pytest.raises(keras_tuner.errors.FatalValueError, match="no data and no runs_dir"):
        hypermodel.fit(hp, model)
