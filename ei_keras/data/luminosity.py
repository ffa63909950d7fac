"""Luminosity-shifted Fashion-MNIST (SPEC section 4).

Every time an image is drawn, for training and for testing, one constant `c ~ Uniform(-r, r)`
is added to all of its pixels and the result is clipped to [0, 1]; `r = 0` is plain
Fashion-MNIST. The training stream draws fresh shifts (and a fresh order) every epoch from
`np.random.default_rng([seed, epoch])`; the evaluation set is shifted once, reproducibly, from
its own stream `np.random.default_rng([seed, 0x7E57, 1])`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

from ei_keras.data.fashion_mnist import load_fashion_mnist

__all__ = [
    "Datasets",
    "LuminosityShiftedSequence",
    "VALIDATION_SPLIT_SEED",
    "draw_shifts",
    "make_datasets",
    "shift_luminosity",
    "shifted_test_set",
]

# Key words appended to the seed for the evaluation stream. The last word is non-zero on
# purpose: NumPy's SeedSequence ignores trailing zero words ([s, e, 0] == [s, e]), so this key
# can never coincide with a training epoch's key [seed, epoch].
_TEST_STREAM_KEY = (0x7E57, 1)

RandomLike = np.random.Generator | int | None


def _check_luminosity(luminosity: float) -> float:
    if isinstance(luminosity, bool) or not isinstance(luminosity, numbers.Real):
        raise ValueError(
            f"Expected `luminosity` to be a number in [0, 1]. Received: luminosity={luminosity!r}"
        )
    value = float(luminosity)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            "Expected `luminosity` to be a finite number in [0, 1]. "
            f"Received: luminosity={luminosity!r}"
        )
    return value


def _check_int(name: str, value: int, low: int = 0, high: int | None = None) -> int:
    """Checks that `value` is an integer in [low, high] and returns it as an `int`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"Expected `{name}` to be an integer {bounds}. Received: {name}={value!r}")
    return int(value)


def _check_seed(seed: int) -> int:
    return _check_int("seed", seed, low=0)


def _check_xy(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            "Expected `x` of shape (N, ...) and `y` of shape (N,) with the same N. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )


def _per_image(shifts: np.ndarray, ndim: int) -> np.ndarray:
    """Reshapes `(N,)` shifts to broadcast over the remaining `ndim - 1` axes of a batch."""
    return shifts.reshape(shifts.shape + (1,) * (ndim - 1))


def draw_shifts(n: int, luminosity: float, rng: RandomLike) -> np.ndarray:
    """Draws `n` per-image luminosity shifts `c ~ Uniform(-luminosity, luminosity)`.

    This is the one place shifts are drawn; `shift_luminosity`, `shifted_test_set` and
    `LuminosityShiftedSequence` all use it.

    Args:
        n: How many shifts (images).
        luminosity: The half-width `r` of the uniform law, in [0, 1].
        rng: A `np.random.Generator`, or a seed for `np.random.default_rng`.

    Returns:
        A `float32` array of shape `(n,)` (zeros when `luminosity` is 0).

    Raises:
        ValueError: If `luminosity` is not a finite number in [0, 1] or `n` is negative.

    Example:

    ```python
    c = ei_keras.data.draw_shifts(5, 0.5, rng=0)  # five values in [-0.5, 0.5)
    c.shape, str(c.dtype)  # ((5,), 'float32')
    bool(abs(c).max() < 0.5)  # True
    ```
    """
    r = _check_luminosity(luminosity)
    n = _check_int("n", n, low=0)
    rng = np.random.default_rng(rng)
    return rng.uniform(-r, r, size=n).astype(np.float32)


def shift_luminosity(x: np.ndarray, luminosity: float, rng: RandomLike) -> np.ndarray:
    """Adds one random constant per image to all its pixels, then clips to [0, 1].

    Args:
        x: Images in [0, 1], shape `(N, ...)` (e.g. `(N, 784)`), one image per row.
        luminosity: The half-width `r` of the shift law `Uniform(-r, r)`, in [0, 1]. `r = 0`
            returns an unchanged `float32` copy of `x` (no clipping).
        rng: A `np.random.Generator`, or a seed for `np.random.default_rng`.

    Returns:
        A new `float32` array shaped like `x`.

    Raises:
        ValueError: If `luminosity` is negative, above 1 or not finite.

    Example:

    ```python
    import numpy as np

    (_, _), (x_test, _) = ei_keras.data.load_fashion_mnist()
    rng = np.random.default_rng(0)
    x_shifted = ei_keras.data.shift_luminosity(x_test[:100], 0.5, rng)
    x_shifted.shape  # (100, 784)
    bool(x_shifted.min() >= 0.0 and x_shifted.max() <= 1.0)  # True: clipped to [0, 1]
    ```
    """
    r = _check_luminosity(luminosity)
    x = np.array(x, dtype=np.float32, copy=True)
    if r == 0.0:
        return x
    if x.ndim < 1:
        raise ValueError(f"Expected `x` of shape (N, ...). Received: x.shape={x.shape}")
    shifts = draw_shifts(x.shape[0], r, rng)
    x += _per_image(shifts, x.ndim)
    np.clip(x, 0.0, 1.0, out=x)
    return x


def shifted_test_set(
    x: np.ndarray, y: np.ndarray, luminosity: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shifts an evaluation set once, reproducibly for a given seed.

    The shifts come from `np.random.default_rng([seed, 0x7E57, 1])`, a stream disjoint from
    the training epochs' `[seed, epoch]` streams, so the same seed always yields the same test
    set and another seed a different one.

    Args:
        x: Images in [0, 1], shape `(N, ...)`.
        y: Labels, shape `(N,)`.
        luminosity: The half-width `r` of the shift law, in [0, 1].
        seed: A non-negative integer seed.

    Returns:
        `(x_shifted, y)`: `float32` images shaped like `x` and `int32` labels (new arrays).

    Raises:
        ValueError: If `luminosity` or `seed` is invalid, or `x` and `y` differ in length.

    Example:

    ```python
    (_, _), (x_test, y_test) = ei_keras.data.load_fashion_mnist()
    x_eval, y_eval = ei_keras.data.shifted_test_set(x_test, y_test, luminosity=0.75, seed=0)
    ```
    """
    seed = _check_seed(seed)
    x, y = np.asarray(x), np.asarray(y)
    _check_xy(x, y)
    rng = np.random.default_rng([seed, *_TEST_STREAM_KEY])
    return shift_luminosity(x, luminosity, rng), np.array(y, dtype=np.int32, copy=True)


class LuminosityShiftedSequence(keras.utils.PyDataset):
    """Training stream of luminosity-shifted batches, fresh shifts and order every epoch.

    Epoch `e` draws a permutation of the samples (when `shuffle`) and then one shift per
    sample from `np.random.default_rng([seed, e])`; both are computed once per epoch, so
    `__getitem__` is only a gather, an add and a clip (`float32`). `on_epoch_end()` (called
    by `fit` after every epoch) moves to the next epoch; `__getitem__` itself has no side
    effects, so batches can be read in any order, several times, from worker threads.

    Epoch numbering under `fit`: Keras 3.15 also calls `on_epoch_end()` once at the start of
    every `fit`/`evaluate` call (its epoch iterator's `reset()`, after reading one or two
    batches to build the model or infer the batch signature). Without help, the first `fit`
    therefore trains on streams 1, 2, ..., and a second `fit` call skips one stream: still a
    fresh draw every epoch and reproducible for a seed, but not aligned with Keras' epoch
    index. Pass `callbacks=[sequence.sync_callback()]` to `fit` to pin the stream of Keras
    epoch `e` (counting from `initial_epoch`) to `[seed, e]`, so a run resumed with
    `initial_epoch=k` sees exactly the data of an uninterrupted run.

    Cost: a full epoch of 1875 batches of 32 (60 000 x 784, `luminosity=0.5`), reading every
    batch and then calling `on_epoch_end()`, takes 0.05 s on the 2-core development CPU
    (≈ 28 µs a batch, median of 10 epochs; 0.03 s with `luminosity=0`), against 3-10 ms for
    one training step, so the stream costs < 1 % of an epoch.

    Reproducibility: `fit` also shuffles the order of a `PyDataset`'s batches with Python's
    `random` module unless called with `shuffle=False`. This sequence already shuffles, so
    pass `shuffle=False` to `fit` for a stream that depends on `seed` only (or seed Python's
    `random`, e.g. with `keras.utils.set_random_seed`).

    Args:
        x: Images in [0, 1], shape `(N, ...)`, e.g. `(60000, 784)`; converted to `float32`.
        y: Integer labels, shape `(N,)`; converted to `int32`.
        luminosity: The half-width `r` of the shift law `Uniform(-r, r)`, in [0, 1]. With 0 the
            batches are the plain images (no clipping).
        batch_size: Samples per batch; the last batch may be smaller.
        seed: Non-negative integer seed of the per-epoch streams.
        shuffle: Whether each epoch visits the samples in a fresh random order.
        subset: Use only the first `subset` samples (for quick runs); `None` for all.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size`, passed to
            `keras.utils.PyDataset`.

    Example:

    ```python
    from ei_keras import zoo

    (x_train, y_train), _ = ei_keras.data.load_fashion_mnist()
    train = ei_keras.data.LuminosityShiftedSequence(
        x_train, y_train, luminosity=0.5, batch_size=32, seed=0, subset=512
    )
    len(train)  # 16
    model = zoo.build("ei_ln", width=32, seed=0)
    history = model.fit(train, epochs=2, shuffle=False, callbacks=[train.sync_callback()],
                        verbose=0)
    len(history.history["loss"])  # 2
    ```
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        luminosity: float = 0.0,
        batch_size: int = 32,
        seed: int = 0,
        shuffle: bool = True,
        subset: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.luminosity = _check_luminosity(luminosity)
        self.batch_size = _check_int("batch_size", batch_size, low=1)
        self.seed = _check_seed(seed)
        self.shuffle = bool(shuffle)
        x, y = np.asarray(x), np.asarray(y)
        _check_xy(x, y)
        if x.shape[0] == 0:
            raise ValueError("Expected at least one sample. Received: x.shape[0]=0")
        if subset is not None:
            subset = _check_int("subset", subset, low=1, high=x.shape[0])
            x, y = x[:subset], y[:subset]
        self.subset = subset
        # No copy when `x` is already C-contiguous float32 (e.g. load_fashion_mnist's arrays):
        # batches are gathered into new arrays, `x` itself is never written.
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = np.ascontiguousarray(y, dtype=np.int32)
        self._epoch = 0
        self._prepare_epoch()

    @property
    def epoch(self) -> int:
        """The epoch whose order and shifts `__getitem__` serves (0 at the start)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Jumps to `epoch` (e.g. to resume a run), redrawing its order and shifts.

        Args:
            epoch: A non-negative epoch index.

        Example:

        ```python
        import numpy as np

        (x, y), _ = ei_keras.data.load_fashion_mnist()
        train = ei_keras.data.LuminosityShiftedSequence(
            x, y, luminosity=0.5, batch_size=8, seed=0, subset=64
        )
        first = train[0][0]
        train.set_epoch(10)  # the next batches come from the stream [seed, 10]
        bool(np.array_equal(train[0][0], first))  # False
        train.set_epoch(0)
        bool(np.array_equal(train[0][0], first))  # True: the same stream again
        ```
        """
        epoch = _check_int("epoch", epoch, low=0)
        if epoch != self._epoch:
            self._epoch = epoch
            self._prepare_epoch()

    def sync_callback(self) -> keras.callbacks.Callback:
        """Returns a callback that aligns this sequence's epochs with `fit`'s epoch index.

        At the start of each Keras epoch `e` it calls `set_epoch(e)`, undoing the extra
        `on_epoch_end()` Keras makes at the start of every `fit` call (see the class docstring).

        Returns:
            A `keras.callbacks.Callback` to pass to `fit` along with this sequence.

        Example:

        ```python
        from ei_keras import zoo

        (x, y), _ = ei_keras.data.load_fashion_mnist()
        train = ei_keras.data.LuminosityShiftedSequence(
            x, y, luminosity=0.5, batch_size=32, seed=0, subset=256
        )
        model = zoo.build("ei", width=16, seed=0)
        model.fit(train, epochs=3, shuffle=False, callbacks=[train.sync_callback()], verbose=0)
        train.epoch  # 2: the stream of fit's last epoch
        ```
        """
        return _EpochSync(self)

    def _prepare_epoch(self) -> None:
        n = self.x.shape[0]
        rng = np.random.default_rng([self.seed, self._epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        # One attribute, swapped at once: a reader never sees one epoch's order with another's
        # shifts.
        self._stream = (order, draw_shifts(n, self.luminosity, rng))

    def __len__(self) -> int:
        """Returns the number of batches per epoch, `ceil(N / batch_size)`."""
        return math.ceil(self.x.shape[0] / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns batch `index` of the current epoch (no side effects).

        Args:
            index: Batch index in `[0, len(self))`.

        Returns:
            `(x_batch, y_batch)`: shifted, clipped `float32` images and `int32` labels.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range for {len(self)} batches.")
        start = index * self.batch_size
        stop = start + self.batch_size
        order, shifts = self._stream
        rows = order[start:stop]
        x_batch = np.take(self.x, rows, axis=0)
        if self.luminosity > 0.0:
            x_batch += _per_image(shifts[start:stop], x_batch.ndim)
            np.clip(x_batch, 0.0, 1.0, out=x_batch)
        return x_batch, np.take(self.y, rows, axis=0)

    def on_epoch_end(self) -> None:
        """Advances to the next epoch: fresh order and fresh shifts."""
        self._epoch += 1
        self._prepare_epoch()


class _EpochSync(keras.callbacks.Callback):
    """Calls `sequence.set_epoch(epoch)` at the start of every Keras epoch."""

    def __init__(self, sequence: LuminosityShiftedSequence) -> None:
        super().__init__()
        self.sequence = sequence

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.sequence.set_epoch(epoch)


#: Seed of the one permutation that picks the validation images: the same held-out images for
#: every run, preset and sweep trial, so validation accuracies compare like with like.
VALIDATION_SPLIT_SEED = 0x5A11D
# Key words of the validation set's shift stream (non-zero last word; see _TEST_STREAM_KEY).
_VALIDATION_STREAM_KEY = (0x7A11D, 1)


class Datasets(NamedTuple):
    """What :func:`make_datasets` returns.

    Attributes:
        train: the shifted training stream (a ``keras.utils.PyDataset``).
        test: ``(x_test_shifted, y_test)``.
        validation: ``(x_val_shifted, y_val)`` held out of the training images, or None.
    """

    train: LuminosityShiftedSequence
    test: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None


def make_datasets(
    luminosity: float,
    batch_size: int = 32,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool | Callable[[], object] = True,
    validation_size: int = 0,
) -> Datasets:
    """Builds the shifted training stream, the shifted test set and, optionally, a shifted
    validation set held out of the training images for one condition.

    Args:
        luminosity: The half-width `r` of the shift law, in [0, 1] (the paper uses 0, 0.25,
            0.5, 0.75).
        batch_size: Training batch size.
        seed: Seed of the training epochs' streams and of the evaluation sets' shifts.
        train_subset: Use only the first `train_subset` training samples (after the validation
            images are taken out); `None` for all.
        test_subset: Use only the first `test_subset` test samples; `None` for all.
        data_dir: An explicit folder holding the IDX files; see
            `ei_keras.data.find_data_dir`.
        download: Whether (or how) to download the files when none are found.
        validation_size: Training images held out as a validation set (0: none). They are the
            same images for every seed (:data:`VALIDATION_SPLIT_SEED`), never trained on, and
            shifted once like the test set, from their own stream. Model selection (a sweep's
            objective) uses them, so that the test set is never used to select.

    Returns:
        A :class:`Datasets` ``(train, test, validation)``.

    Raises:
        ValueError: If an argument is invalid.
        DataNotFoundError: If the files cannot be found or downloaded.
        DataFileError: If a file is corrupt.

    Example:

    ```python
    from ei_keras import zoo

    train, (x_test, y_test), _ = ei_keras.data.make_datasets(
        luminosity=0.75, seed=1, train_subset=1024, test_subset=500
    )
    x_test.shape  # (500, 784)
    model = zoo.build("ei_ln", width=64, seed=1)
    model.fit(train, epochs=2, shuffle=False, callbacks=[train.sync_callback()], verbose=0)
    metrics = model.evaluate(x_test, y_test, batch_size=500, verbose=0, return_dict=True)
    0.1 < metrics["accuracy"] <= 1.0  # True: above chance after 2 short epochs
    ```
    """
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(data_dir, download=download)
    validation = None
    validation_size = _check_int("validation_size", validation_size, low=0,
                                 high=x_train.shape[0] - 1)
    if validation_size:
        order = np.random.default_rng(VALIDATION_SPLIT_SEED).permutation(x_train.shape[0])
        held_out, kept = np.sort(order[:validation_size]), np.sort(order[validation_size:])
        rng = np.random.default_rng([_check_seed(seed), *_VALIDATION_STREAM_KEY])
        validation = (shift_luminosity(x_train[held_out], luminosity, rng),
                      np.array(y_train[held_out], dtype=np.int32))
        x_train, y_train = x_train[kept], y_train[kept]
    train = LuminosityShiftedSequence(
        x_train,
        y_train,
        luminosity=luminosity,
        batch_size=batch_size,
        seed=seed,
        subset=train_subset,
    )
    if test_subset is not None:
        test_subset = _check_int("test_subset", test_subset, low=1, high=x_test.shape[0])
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    return Datasets(train, shifted_test_set(x_test, y_test, luminosity, seed=seed), validation)
