"""Models of ei_keras: the dual-loss trainer and the paper's network."""

from ei_keras.models.dual_loss_model import DualLossModel, FunctionalDualLossModel
from ei_keras.models.ei_conv_network import EIConvNetwork
from ei_keras.models.ei_network import EINetwork
from ei_keras.models.ei_rnn_network import EIRecurrentNetwork
from ei_keras.models.trainers import DualLossTrainer

__all__ = ["DualLossModel", "DualLossTrainer", "EIConvNetwork", "EINetwork", "EIRecurrentNetwork",
           "FunctionalDualLossModel"]
