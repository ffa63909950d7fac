"""Fashion-MNIST with luminosity shifts (SPEC section 4): offline loading, validation, and the
shifted training stream and evaluation set.

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
    DataFileError,
    DataNotFoundError,
    find_data_dir,
    keras_cache_dir,
    load_fashion_mnist,
    read_idx,
)
from ei_keras.data.luminosity import (
    VALIDATION_SPLIT_SEED,
    Datasets,
    LuminosityShiftedSequence,
    draw_shifts,
    make_datasets,
    shift_luminosity,
    shifted_test_set,
)

__all__ = [
    "DATA_DIR_ENV",
    "FILE_NAMES",
    "DataFileError",
    "DataNotFoundError",
    "Datasets",
    "LuminosityShiftedSequence",
    "VALIDATION_SPLIT_SEED",
    "draw_shifts",
    "find_data_dir",
    "keras_cache_dir",
    "load_fashion_mnist",
    "make_datasets",
    "read_idx",
    "shift_luminosity",
    "shifted_test_set",
]
