"""Models of ei_keras."""

from ei_keras.models.ei_network import EINetwork

__all__ = ["EINetwork"]
