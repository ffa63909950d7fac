"""Fashion-MNIST with per-image shifts: offline loading, validation, the shift families
(the paper's luminosity shift; contrast as a nuisance or as part of the signal), and the
shifted training stream and evaluation sets.

Example:

```python
import ei_keras.data

train, (x_test, y_test), _ = ei_keras.data.make_datasets(luminosity=0.5, seed=0)
```

The search locations `DEBIAN_DATA_DIR` and `KERAS_CACHE_DIR` are module attributes of
`ei_keras.data.fashion_mnist`; set them there to override them.
"""

from ei_keras.data.fashion_mnist import (
    DATA_DIR_ENV,
    FILE_NAMES,
    NUM_CLASSES,
    DataFileError,
    DataNotFoundError,
    find_data_dir,
    keras_cache_dir,
    load_fashion_mnist,
    read_idx,
)
from ei_keras.data.shifts import (
    SHIFTS,
    ContrastShift,
    ContrastSignalShift,
    LuminosityShift,
    Shift,
    draw_shifts,
    get_shift,
    shift_from_config,
    shift_luminosity,
)
from ei_keras.data.stream import (
    VALIDATION_SPLIT_SEED,
    Datasets,
    LuminosityShiftedSequence,
    ShiftedSequence,
    make_datasets,
    shifted_test_set,
)

__all__ = [
    "DATA_DIR_ENV",
    "FILE_NAMES",
    "NUM_CLASSES",
    "SHIFTS",
    "ContrastShift",
    "ContrastSignalShift",
    "DataFileError",
    "DataNotFoundError",
    "Datasets",
    "LuminosityShift",
    "LuminosityShiftedSequence",
    "Shift",
    "ShiftedSequence",
    "VALIDATION_SPLIT_SEED",
    "draw_shifts",
    "find_data_dir",
    "get_shift",
    "keras_cache_dir",
    "load_fashion_mnist",
    "make_datasets",
    "read_idx",
    "shift_from_config",
    "shift_luminosity",
    "shifted_test_set",
]
