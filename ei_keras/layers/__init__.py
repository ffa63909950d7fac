"""Keras layers of ei_keras. LayerNorm is Keras' own:
`keras.layers.LayerNormalization(center=False, scale=False, epsilon=1e-5)`;
`DetachedLayerNormalization` is its forward with the identity backward."""

from ei_keras.layers.detached_layer_normalization import DetachedLayerNormalization
from ei_keras.layers.e_dense import EDense
from ei_keras.layers.ei_conv2d import EIConv2D
from ei_keras.layers.ei_dense import EIDense
from ei_keras.layers.ei_rnn import EIRNNCell, INormRNN, INormRNNCell
from ei_keras.layers.error_normalization import ErrorNormalization
from ei_keras.layers.inorm_conv2d import INormConv2D
from ei_keras.layers.inorm_dense import INormDense

__all__ = ["DetachedLayerNormalization", "EDense", "EIConv2D", "EIDense", "EIRNNCell",
           "ErrorNormalization", "INormConv2D", "INormDense", "INormRNN", "INormRNNCell"]
