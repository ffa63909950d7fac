"""The convolutional presets (``conv_ei``, ``conv_ei_ln``, ``conv_inorm``,
``conv_inorm_gradnorm``) and :class:`~ei_keras.models.EIConvNetwork`, under the backend chosen by
KERAS_BACKEND: listed by ``ei-keras presets``, built at the documented size, trained by
``ei-keras train --smoke``, measured by the per-epoch measures, saved and loaded.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ei_keras import cli, measures, zoo
from ei_keras.layers import EIConv2D, INormConv2D
from ei_keras.models import EIConvNetwork

CONV = ("conv_ei", "conv_ei_ln", "conv_inorm", "conv_inorm_gradnorm")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_conv_presets_are_listed_apart_from_the_papers(capsys):
    assert zoo.conv_names() == list(CONV)
    assert not set(CONV) & set(zoo.names())  # the paper's conditions stay the MLPs
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in CONV:
        preset = zoo.get(name)
        assert f"{name} " in out and preset.description[:30] in out
        assert f"lr_e={preset.hyperparameters['lr_e']:g}" in out
    with pytest.raises(ValueError, match="conv_inorm"):
        zoo.get("conv_inrom")


@pytest.mark.parametrize("name", CONV)
def test_conv_preset_builds_the_documented_network(name):
    model = zoo.build(name, seed=0)  # the run configuration's default width stands for 32
    assert isinstance(model, EIConvNetwork)
    assert model.filters == (16, 32)
    cls = INormConv2D if "inorm" in name else EIConv2D
    assert all(type(layer) is cls for layer in model.hidden)
    assert all(layer.kernel_size == (5, 5) and layer.strides == (2, 2)
               and layer.padding == "same" for layer in model.hidden)
    assert (model.normalization == "layer_norm") == (name == "conv_ei_ln")
    if cls is INormConv2D:
        assert model.hidden[0].statistics == "map"
        assert model.hidden[0].error_normalization == ("full" if "gradnorm" in name else "none")
    assert zoo.build(name, width=8, depth=3, seed=0).filters == (2, 4, 8)
    x = np.random.default_rng(0).uniform(0, 1, (4, 784)).astype("float32")
    assert tuple(model(x).shape) == (4, 10)


def test_conv_ln_network_is_its_own_layer_norm_twin():
    # The measures take LayerNorm over the whole (H, W, C) map, as the LN network does.
    model = zoo.build("conv_ei_ln", width=8, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (16, 784)).astype("float32")
    y = np.arange(16) % 10
    for a in measures.output_alignment(model, x):
        assert a == pytest.approx(1.0, abs=1e-6)
    for a in measures.gradient_alignment(model, x, y):
        assert a == pytest.approx(1.0, abs=1e-5)
    (m1, v1), (m2, v2) = measures.moments(model, x)
    assert abs(m1) < 1e-5 and v1 == pytest.approx(1.0, abs=1e-3)


def test_conv_network_keras_round_trip(tmp_path):
    model = zoo.build("conv_inorm_gradnorm", width=8, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (32, 784)).astype("float32"), np.arange(32) % 10
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "conv.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is EIConvNetwork and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_cli_smoke_trains_a_conv_preset(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "--preset", "conv_inorm_gradnorm", "--smoke", "--out", str(out),
                   "model.width=8", "data.train_subset=64", "data.test_subset=64",
                   "measures.probe_size=32"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and 0.0 <= metrics["test_accuracy"] <= 1.0
    history = (out / "history.csv").read_text()
    for key in ("norm_loss", "hidden_2_var", "output_alignment_2", "gradient_alignment_2"):
        assert key in history
