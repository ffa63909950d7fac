"""ei_keras: excitatory-inhibitory (Dale's principle) networks and inhibitory normalization of
error signals, as Keras 3 layers and models that run under TensorFlow, JAX and PyTorch.

Importing `ei_keras` imports Keras (choose `KERAS_BACKEND` before it) and registers every
layer, loss, initializer and model, so `keras.models.load_model("x.keras")` needs no
`custom_objects` (the `ei-keras` command does this only once it has chosen the backend, so
its `--help` starts without Keras). It changes nothing else in the process (no environment
variable is set). The modules that need no Keras (`analysis`) and the run machinery load on
first use:

- `ei_keras.layers` — `EIDense`, `EDense`, `INormDense`, `ErrorNormalization`
- `ei_keras.ops` — `normalize_error` (`keras.ops.custom_gradient`)
- `ei_keras.initializers`, `ei_keras.losses`, `ei_keras.optimizers`
- `ei_keras.models` — `EINetwork`; `ei_keras.zoo` — the paper's presets
- `ei_keras.data` — offline Fashion-MNIST with luminosity shifts
- `ei_keras.measures`, `ei_keras.divergence`, `ei_keras.experiment`;
  `ei_keras.scoring` — how a run is scored (the paper's rule; no Keras needed)
- `ei_keras.callbacks` — `NormWeightSchedule` (λ annealing, `ei_keras.annealing`)
- `ei_keras.analysis` — Mann-Whitney tables, figures, reports (no Keras needed)

Reference: Eyono, Levenstein, Ghosh, Cornford, Richards (2026), "Inhibitory normalization of
error signals improves learning in neural circuits".
"""

import importlib
import os

__version__ = "0.1.0"

__all__ = [
    "analysis", "annealing", "callbacks", "data", "divergence", "experiment", "initializers",
    "layers", "losses", "measures", "models", "ops", "optimizers", "scoring", "zoo",
]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"ei_keras.{name}")
    raise AttributeError(f"module 'ei_keras' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])


def _register() -> None:
    """Import the modules that register every layer, loss, initializer and model with Keras
    (importing them is the registration); a second call does nothing.

    `import ei_keras` calls it, except in the `ei-keras` command (the `ei_keras_cli`
    console script), which calls it once it has chosen the backend and knows the verb needs
    Keras, so that `ei-keras --help` imports no Keras.
    """
    from ei_keras import initializers, layers, losses, models, ops, optimizers, zoo  # noqa: F401


# Set (to "1") by ei_keras_cli.main for this one import and removed here, so that the command's
# worker processes, which import ei_keras again, register as usual.
if os.environ.pop("_EI_KERAS_CLI", None) != "1":
    _register()
