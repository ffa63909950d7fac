"""Backend-agnostic ops of ei_keras (`keras.ops` only)."""

from ei_keras.ops.error_normalization import (
    ERROR_NORMALIZATION_MODES,
    lateral_pooling_weights,
    normalize_error,
    normalized_error,
)

__all__ = [
    "ERROR_NORMALIZATION_MODES",
    "lateral_pooling_weights",
    "normalize_error",
    "normalized_error",
]
