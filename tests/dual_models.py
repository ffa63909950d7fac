"""A user's subclassed model with the dual-loss trainer, shared by tests/test_trainers.py and
tests/test_dual_loss_saving.py (its registered name is recorded in the golden files of
tests/data/dual_subclassed_*.keras)."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers import EIDense, INormDense
from ei_keras.models import DualLossTrainer


@keras.saving.register_keras_serializable(package="ei_keras_tests")
class SavedSubclassedNet(DualLossTrainer, keras.Model):
    """``INormDense -> ReLU -> EIDense(10)``: the dual-loss trainer mixed into ``keras.Model``."""

    def __init__(self, width=16, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.seed = width, seed
        self.inorm = INormDense(width, error_normalization="center", seed=seed, name="inorm")
        self.readout = EIDense(10, inhibitory_units=1, seed=seed + 1, name="readout")

    def build(self, input_shape):
        self.inorm.build(input_shape)
        self.readout.build((input_shape[0], self.width))

    def call(self, x):
        return self.readout(ops.relu(self.inorm(x)))

    def get_config(self):
        return {"name": self.name, "width": self.width, "seed": self.seed}
