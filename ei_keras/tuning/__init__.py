"""KerasTuner sweeps of the paper's Table 1: search spaces, the hypermodel, random search on one
machine or many (chief/workers), resumable after a crash.

```python
from ei_keras.tuning import run_sweep

# The paper's sweep is trials=30 at full size; smoke=True makes each trial tiny.
result = run_sweep("tuner_configs/ei.json", preset="ei_ln", luminosity=0.75, trials=2,
                   out_dir="runs/sweeps", smoke=True, printer=lambda *a: None)
result["finished"]  # 2
```

Command line: `ei-keras sweep --config tuner_configs/ei.json --preset ei_ln --luminosity 0.75
--trials 30 --out runs/sweeps` (or `python -m ei_keras.tuning ...`). The names load on first
use, so importing this package (e.g. for `add_sweep_parser`) does not import KerasTuner.
"""

import importlib

_EXPORTS = {
    "add_sweep_parser": "cli",
    "cmd_sweep": "cli",
    "load_search_space": "space",
    "load_tuner_config": "space",
    "validate_tuner_config": "space",
    "tuner_config": "space",
    "write_tuner_configs": "space",
    "resize_space": "space",
    "TunerConfig": "space",
    "ALLOWED_HYPERPARAMETERS": "space",
    "EIHyperModel": "hypermodel",
    "SweepOracle": "sweep",
    "SweepTuner": "sweep",
    "SweepTimeoutError": "sweep",
    "distributed_role": "sweep",
    "run_sweep": "sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        if _EXPORTS[name] in ("hypermodel", "sweep"):
            from ei_keras.extras import require

            require("research", f"ei_keras.tuning.{name}", ("keras_tuner",))
        return getattr(importlib.import_module(f"ei_keras.tuning.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ei_keras.tuning' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
