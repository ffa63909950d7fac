"""ei_keras: excitatory-inhibitory (Dale's principle) networks and inhibitory normalization of
error signals, as Keras 3 layers and models that run under TensorFlow, JAX and PyTorch.

Submodules load on first use (so that ``KERAS_BACKEND`` can still be chosen after
``import ei_keras``, e.g. by the CLI's ``--backend``):

- :mod:`ei_keras.layers` — ``EIDense``, ``EDense``, ``INormDense``, ``ErrorNormalization``
- :mod:`ei_keras.ops` — ``normalize_error`` (``keras.ops.custom_gradient``)
- :mod:`ei_keras.initializers`, :mod:`ei_keras.losses`, :mod:`ei_keras.optimizers`
- :mod:`ei_keras.models` — ``EINetwork``; :mod:`ei_keras.zoo` — the paper's presets
- :mod:`ei_keras.data` — offline Fashion-MNIST with luminosity shifts
- :mod:`ei_keras.measures`, :mod:`ei_keras.divergence`, :mod:`ei_keras.experiment`
- :mod:`ei_keras.analysis` — Mann-Whitney tables, figures, reports (no Keras needed)

Reference: Eyono, Levenstein, Ghosh, Cornford, Richards (2026), "Inhibitory normalization of
error signals improves learning in neural circuits".
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "analysis", "data", "divergence", "experiment", "initializers", "layers", "losses",
    "measures", "models", "ops", "optimizers", "zoo",
]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"ei_keras.{name}")
    raise AttributeError(f"module 'ei_keras' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
