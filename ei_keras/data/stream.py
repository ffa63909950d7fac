"""Shifted Fashion-MNIST streams: the training stream, the evaluation sets, `make_datasets`.

Every time an image is drawn, for training and for testing, it is shifted by one of the
families of `ei_keras.data.shifts` (the paper's luminosity shift by default: one constant
`c ~ Uniform(-r, r)` added to all its pixels, clipped to [0, 1]; `r = 0` is plain
Fashion-MNIST). The training stream draws a fresh order and fresh per-image factors every epoch
from `np.random.default_rng([seed, epoch])`; the evaluation set is shifted once, reproducibly,
from its own stream `np.random.default_rng([seed, 0x7E57, 1])`. Everything is NumPy, so the
data are the same arrays under every Keras backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

from ei_keras.data.fashion_mnist import NUM_CLASSES, load_fashion_mnist
from ei_keras.data.shifts import LuminosityShift, Shift, _check_int

__all__ = [
    "Datasets",
    "LuminosityShiftedSequence",
    "ShiftedSequence",
    "VALIDATION_SPLIT_SEED",
    "make_datasets",
    "shifted_test_set",
]

# Key words appended to the seed for the evaluation stream. The last word is non-zero on
# purpose: NumPy's SeedSequence ignores trailing zero words ([s, e, 0] == [s, e]), so this key
# can never coincide with a training epoch's key [seed, epoch].
_TEST_STREAM_KEY = (0x7E57, 1)

def _check_seed(seed: int) -> int:
    return _check_int("seed", seed, low=0)


def _check_xy(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            "Expected `x` of shape (N, ...) and `y` of shape (N,) with the same N. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )


def _resolve_shift(luminosity: float | None, shift: Shift | None) -> Shift:
    """The stream's shift: `shift`, or the luminosity shift of half-width `luminosity`."""
    if shift is None:
        return LuminosityShift(0.0 if luminosity is None else luminosity)
    if luminosity is not None:
        raise ValueError("Give either `luminosity` (the luminosity shift's r) or `shift`, not "
                         f"both. Received: luminosity={luminosity!r}, shift={shift!r}")
    if not isinstance(shift, Shift):
        raise ValueError("Expected `shift` to be an `ei_keras.data.Shift` (e.g. "
                         f"`ei_keras.data.ContrastShift(4)`). Received: shift={shift!r}")
    return shift


def shifted_test_set(
    x: np.ndarray, y: np.ndarray, luminosity: float | None = None, seed: int = 0, *,
    shift: Shift | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shifts an evaluation set once, reproducibly for a given seed.

    The shifts come from `np.random.default_rng([seed, 0x7E57, 1])`, a stream disjoint from
    the training epochs' `[seed, epoch]` streams, so the same seed always yields the same test
    set and another seed a different one.

    Args:
        x: Images in [0, 1], shape `(N, ...)`.
        y: Labels, shape `(N,)`.
        luminosity: The half-width `r` of the luminosity shift, in [0, 1] (default 0).
        seed: A non-negative integer seed.
        shift: Another shift family instead of the luminosity shift (e.g.
            `ei_keras.data.ContrastShift(4)`); then `luminosity` must not be given.

    Returns:
        `(x_shifted, labels)`: `float32` images shaped like `x` and `int32` labels (new
        arrays; the labels are the classes unless the shift says otherwise, see
        `ContrastSignalShift`).

    Raises:
        ValueError: If an argument is invalid, or `x` and `y` differ in length.

    Example:

    ```python
    (_, _), (x_test, y_test) = ei_keras.data.load_fashion_mnist()
    x_eval, y_eval = ei_keras.data.shifted_test_set(x_test, y_test, luminosity=0.75, seed=0)
    signal = ei_keras.data.ContrastSignalShift(4.0)
    x_eval, y_eval = ei_keras.data.shifted_test_set(x_test, y_test, seed=0, shift=signal)
    int(y_eval.max()) <= 19  # True: 20 labels, class x {low, high} contrast
    ```
    """
    shift = _resolve_shift(luminosity, shift)
    seed = _check_seed(seed)
    x, y = np.asarray(x), np.asarray(y)
    _check_xy(x, y)
    return shift.transform(x, y, np.random.default_rng([seed, *_TEST_STREAM_KEY]))


class ShiftedSequence(keras.utils.PyDataset):
    """Training stream of shifted batches, with a fresh order and fresh shifts every epoch.

    Epoch `e` draws a permutation of the samples (when `shuffle`) and then one factor per
    sample (`shift.draw`) from `np.random.default_rng([seed, e])`; both are computed once per
    epoch, so `__getitem__` is only a gather and the shift's arithmetic (`float32`).
    `on_epoch_end()` (called by `fit` after every epoch) moves to the next epoch;
    `__getitem__` itself has no side effects, so batches can be read in any order, several
    times, from worker threads. The labels are the shift's (`shift.labels`: the classes,
    or class x contrast for `ContrastSignalShift`); `num_classes` says how many there are.

    Epoch numbering under `fit`: Keras 3.15 also calls `on_epoch_end()` once at the start of
    every `fit`/`evaluate` call (its epoch iterator's `reset()`, after reading one or two
    batches to build the model or infer the batch signature). Without help, the first `fit`
    therefore trains on streams 1, 2, ..., and a second `fit` call skips one stream: still a
    fresh draw every epoch and reproducible for a seed, but not aligned with Keras' epoch
    index. Pass `callbacks=[sequence.sync_callback()]` to `fit` to pin the stream of Keras
    epoch `e` (counting from `initial_epoch`) to `[seed, e]`, so a run resumed with
    `initial_epoch=k` sees exactly the data of an uninterrupted run.

    Cost: a batch is a gather and a few vector operations on 32 x 784 numbers (the contrast
    families also take each image's mean), small beside one training step.

    Reproducibility: `fit` also shuffles the order of a `PyDataset`'s batches with Python's
    `random` module unless called with `shuffle=False`. This sequence already shuffles, so
    pass `shuffle=False` to `fit` for a stream that depends on `seed` only (or seed Python's
    `random`, e.g. with `keras.utils.set_random_seed`).

    `LuminosityShiftedSequence` is the same class (its name before the other shift families
    existed).

    Args:
        x: Images in [0, 1], shape `(N, ...)`, e.g. `(60000, 784)`; converted to `float32`.
        y: Integer classes, shape `(N,)`; converted to `int32`.
        luminosity: The half-width `r` of the luminosity shift `Uniform(-r, r)`, in [0, 1]
            (default 0: the plain images, no clipping).
        batch_size: Samples per batch; the last batch may be smaller.
        seed: Non-negative integer seed of the per-epoch streams.
        shuffle: Whether each epoch visits the samples in a fresh random order.
        subset: Use only the first `subset` samples (for quick runs); `None` for all.
        shift: Another shift family instead of the luminosity shift (an
            `ei_keras.data.Shift`, e.g. `ContrastShift(4)`); then `luminosity` must not be
            given.
        classes: How many classes `y` holds (Fashion-MNIST's 10); `num_classes` is the
            shift's count of labels for them.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size`, passed to
            `keras.utils.PyDataset`.

    Example:

    ```python
    from ei_keras import zoo

    (x_train, y_train), _ = ei_keras.data.load_fashion_mnist()
    train = ei_keras.data.ShiftedSequence(
        x_train, y_train, luminosity=0.5, batch_size=32, seed=0, subset=512
    )
    len(train)  # 16
    model = zoo.build("ei_ln", width=32, seed=0)
    history = model.fit(train, epochs=2, shuffle=False, callbacks=[train.sync_callback()],
                        verbose=0)
    len(history.history["loss"])  # 2
    signal = ei_keras.data.ShiftedSequence(
        x_train, y_train, shift=ei_keras.data.ContrastSignalShift(4.0), subset=512
    )
    signal.num_classes  # 20
    ```
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        luminosity: float | None = None,
        batch_size: int = 32,
        seed: int = 0,
        shuffle: bool = True,
        subset: int | None = None,
        shift: Shift | None = None,
        classes: int = NUM_CLASSES,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.shift = _resolve_shift(luminosity, shift)
        self.num_classes = self.shift.num_classes(_check_int("classes", classes, low=1))
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
    def luminosity(self) -> float | None:
        """The luminosity shift's half-width `r` (None for another shift family)."""
        return self.shift.size if isinstance(self.shift, LuminosityShift) else None

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
        train = ei_keras.data.ShiftedSequence(
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
        train = ei_keras.data.ShiftedSequence(
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
        self._stream = (order, self.shift.draw(n, rng))

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
        order, factors = self._stream
        rows = order[start:stop]
        y_batch = np.take(self.y, rows, axis=0)
        if self.shift.is_identity:
            return np.take(self.x, rows, axis=0), y_batch
        x_batch = self.shift.apply(np.take(self.x, rows, axis=0), factors[start:stop])
        return x_batch, self.shift.labels(y_batch, factors[start:stop])

    def on_epoch_end(self) -> None:
        """Advances to the next epoch: fresh order and fresh shifts."""
        self._epoch += 1
        self._prepare_epoch()


#: The name of `ShiftedSequence` before the other shift families existed.
LuminosityShiftedSequence = ShiftedSequence


class _EpochSync(keras.callbacks.Callback):
    """Calls `sequence.set_epoch(epoch)` at the start of every Keras epoch."""

    def __init__(self, sequence: ShiftedSequence) -> None:
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
    """What `make_datasets` returns.

    Attributes:
        train: the shifted training stream (a `ShiftedSequence`; its `num_classes` is
            the number of labels a model must output).
        test: `(x_test_shifted, labels)`.
        validation: `(x_val_shifted, labels)` held out of the training images, or None.
    """

    train: ShiftedSequence
    test: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None


def make_datasets(
    luminosity: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool | Callable[[], object] = True,
    validation_size: int = 0,
    *,
    shift: Shift | None = None,
) -> Datasets:
    """Builds the shifted training stream, the shifted test set and, optionally, a shifted
    validation set held out of the training images for one condition.

    Args:
        luminosity: The half-width `r` of the luminosity shift, in [0, 1] (the paper uses 0,
            0.25, 0.5, 0.75; default 0).
        batch_size: Training batch size.
        seed: Seed of the training epochs' streams and of the evaluation sets' shifts.
        train_subset: Use only the first `train_subset` training samples (after the validation
            images are taken out); `None` for all.
        test_subset: Use only the first `test_subset` test samples; `None` for all.
        data_dir: An explicit folder holding the IDX files; see
            `ei_keras.data.find_data_dir`.
        download: Whether (or how) to download the files when none are found.
        validation_size: Training images held out as a validation set (0: none). They are the
            same images for every seed (`VALIDATION_SPLIT_SEED`), never trained on, and
            shifted once like the test set, from their own stream. Model selection (a sweep's
            objective) uses them, so that the test set is never used to select.
        shift: Another shift family instead of the luminosity shift (an `ei_keras.data.Shift`,
            e.g. `ContrastShift(4)`, or `shift_from_config(cfg)`); then `luminosity` must not
            be given. The same shift applies to all three sets.

    Returns:
        A `Datasets` `(train, test, validation)`.

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
    shift = _resolve_shift(luminosity, shift)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(data_dir, download=download)
    validation = None
    validation_size = _check_int("validation_size", validation_size, low=0,
                                 high=x_train.shape[0] - 1)
    if validation_size:
        order = np.random.default_rng(VALIDATION_SPLIT_SEED).permutation(x_train.shape[0])
        held_out, kept = np.sort(order[:validation_size]), np.sort(order[validation_size:])
        rng = np.random.default_rng([_check_seed(seed), *_VALIDATION_STREAM_KEY])
        validation = shift.transform(x_train[held_out], y_train[held_out], rng)
        x_train, y_train = x_train[kept], y_train[kept]
    train = ShiftedSequence(x_train, y_train, shift=shift, batch_size=batch_size, seed=seed,
                            subset=train_subset)
    if test_subset is not None:
        test_subset = _check_int("test_subset", test_subset, low=1, high=x_test.shape[0])
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    return Datasets(train, shifted_test_set(x_test, y_test, seed=seed, shift=shift), validation)
