"""λ annealing (issue 23 item 2): the paper code's shapes and the callback that applies them.

- `ei_keras.annealing.factor` is the paper code's four formulas (inhib_norm/utils.py), capped at
  1, and rejects unknown shapes and non-positive horizons;
- `NormWeightSchedule` sets every I-Norm layer's λ to λ0 · f(epoch) at the start of each epoch
  of a compiled `fit` on every backend: λ = 0 in the first epoch leaves the inhibitory
  variables exactly where they were and the normalization loss at 0, later epochs train them;
  λ0 is back when training ends;
- `loss.norm_weight_schedule` / `loss.norm_weight_horizon` are validated config keys, recorded
  in the resolved hyperparameters only when set.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from ei_keras import annealing, zoo
from ei_keras.callbacks import NormWeightSchedule
from ei_keras.config import ConfigError, RunConfig

WIDTH, INPUT_DIM, BATCH = 8, 12, 4


def test_factor_is_the_paper_codes_formulas_capped_at_one():
    T = 5.0
    for t in range(8):
        expected = {"linear": t / T, "exponential": 1 - math.exp(-t / T),
                    "logarithmic": math.log(1 + t) / math.log(1 + T),
                    "cosine": 0.5 * (1 - math.cos(math.pi * min(t, T) / T))}
        for shape, value in expected.items():
            assert annealing.factor(shape, t, T) == pytest.approx(min(value, 1.0), abs=1e-15)
    assert all(annealing.factor(s, 0, T) == 0.0 for s in annealing.SHAPES)
    with pytest.raises(ValueError, match="'step'"):
        annealing.factor("step", 1, T)
    with pytest.raises(ValueError, match="horizon"):
        annealing.factor("linear", 1, 0)
    with pytest.raises(ValueError, match="shape"):
        NormWeightSchedule("warmup")


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_schedule_changes_lambda_of_every_inorm_layer_during_fit(shape):
    rng = np.random.default_rng(0)
    x = rng.random((4 * BATCH, INPUT_DIM)).astype("float32")
    y = rng.integers(0, 10, 4 * BATCH)
    model = zoo.build("inorm_gradnorm", width=WIDTH, seed=1, input_dim=INPUT_DIM,
                      norm_weight=0.5)
    layers = list(model.hidden)
    before = {v.path: keras.ops.convert_to_numpy(v) for layer in layers
              for v in layer.normalization_variables}
    seen, after_first = [], {}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([layer.norm_weight for layer in layers])
            if epoch == 0:
                after_first.update({v.path: keras.ops.convert_to_numpy(v) for layer in layers
                                    for v in layer.normalization_variables})

    epochs = 3
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False,
                        callbacks=[NormWeightSchedule(shape), Record()]).history
    for t, values in enumerate(seen):
        # lambda is float32 state: 0.5 * f rounds to float32 (relative 6e-8)
        assert values == pytest.approx([0.5 * annealing.factor(shape, t, epochs)] * 2,
                                       rel=1e-6), (t, values)
    assert history["norm_loss"][0] == 0.0  # lambda = 0 in the first epoch ...
    for path, value in after_first.items():  # ... so the inhibitory variables did not move
        np.testing.assert_array_equal(value, before[path], err_msg=path)
    assert history["norm_loss"][1] > 0 and history["norm_loss"][2] > 0
    assert [layer.norm_weight for layer in layers] == [0.5, 0.5]  # lambda0 back at the end


def test_config_keys_are_validated_and_recorded_only_when_set():
    cfg = RunConfig().with_overrides(["preset=inorm", "loss.norm_weight_schedule=cosine",
                                      "loss.norm_weight_horizon=10"])
    assert (cfg.loss.norm_weight_schedule, cfg.loss.norm_weight_horizon) == ("cosine", 10.0)
    hp = zoo.hyperparameters("inorm", norm_weight_schedule="cosine", norm_weight_horizon=10.0)
    assert hp["norm_weight_schedule"] == "cosine" and hp["norm_weight_horizon"] == 10.0
    assert "norm_weight_schedule" not in zoo.hyperparameters("inorm")
    with pytest.raises(ConfigError, match="norm_weight_schedule"):
        RunConfig().with_overrides(["loss.norm_weight_schedule=step"])
    with pytest.raises(ConfigError, match="norm_weight_horizon"):
        RunConfig().with_overrides(["loss.norm_weight_horizon=0"])
