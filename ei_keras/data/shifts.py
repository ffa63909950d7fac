"""Shift families: a per-image change of the images (and, for one family, of the labels),
drawn afresh every time an image is drawn, for training and for testing.

A family at one size is a small object with two steps, kept apart so that a stream can draw
the factors of a whole epoch at once and apply them batch by batch:

- `draw(n, rng)`: one factor per image, from a `np.random.Generator`;
- `apply(x, factors)`: change a `float32` batch in place; `labels(y, factors)`: the labels
  the model must predict (the class, unless the shift is part of the signal).

The families (`data.shift`):

- `luminosity` (the paper's): add `c ~ U(-r, r)` to every pixel of the image, clip to [0, 1].
  The factor is `c`.
- `contrast`: scale the image's deviation from its own mean by `c`, `log c ~ U(-log s, log s)`,
  clip to [0, 1]: `x' = clip(m + c (x - m))` with `m` the mean of the image's pixels. A
  multiplicative nuisance: divisive normalization can undo it, subtraction alone cannot. The
  factor is `log c`.
- `contrast_signal`: the same images, and the label also says whether the image was shown at
  low (`c < 1`, i.e. `log c < 0`) or high (`c >= 1`) contrast: class `k` becomes `2k` at low and
  `2k + 1` at high contrast, 20 classes for Fashion-MNIST's 10. The image's spread is then
  behaviourally relevant: normalizing it away can cost accuracy.

This module needs only NumPy (no Keras).
"""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import numpy as np

from ei_keras.config import SHIFT_FAMILIES
from ei_keras.data.fashion_mnist import NUM_CLASSES

__all__ = [
    "SHIFTS",
    "ContrastShift",
    "ContrastSignalShift",
    "LuminosityShift",
    "Shift",
    "draw_shifts",
    "get_shift",
    "shift_from_config",
    "shift_luminosity",
]

RandomLike = np.random.Generator | int | None


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


def _check_number(name: str, value: float, low: float, high: float | None) -> float:
    """Checks that `value` is a finite real number in [low, high] and returns it as a float."""
    what = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Expected `{name}` to be a number {what}. Received: {name}={value!r}")
    out = float(value)
    if not math.isfinite(out) or out < low or (high is not None and out > high):
        raise ValueError(
            f"Expected `{name}` to be a finite number {what}. Received: {name}={value!r}")
    return out


def _per_image(factors: np.ndarray, ndim: int) -> np.ndarray:
    """Reshapes `(N,)` factors to broadcast over the remaining `ndim - 1` axes of a batch."""
    return factors.reshape(factors.shape + (1,) * (ndim - 1))


class Shift:
    """A shift family at one size: per-image factors, drawn, then applied to images (and
    labels). Subclasses set `name` (the `data.shift` value) and define `_check`, `draw` and
    `apply`; `labels` and `num_classes` leave the labels alone unless overridden.

    Args:
        size: The family's one parameter (`r` for luminosity, `s` for contrast).

    Raises:
        ValueError: If `size` is out of the family's range.
    """

    name: ClassVar[str] = ""

    def __init__(self, size: float) -> None:
        self.size = self._check(size)

    def _check(self, size: float) -> float:
        raise NotImplementedError

    @property
    def is_identity(self) -> bool:
        """Whether this shift leaves every image as it is (no clipping either)."""
        return False

    def draw(self, n: int, rng: RandomLike) -> np.ndarray:
        """Draws the factors of `n` images.

        Args:
            n: How many images.
            rng: A `np.random.Generator`, or a seed for `np.random.default_rng`.

        Returns:
            An array of shape `(n,)`.
        """
        raise NotImplementedError

    def apply(self, x: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """Shifts the `float32` images `x` (shape `(N, ...)`) in place, one factor per image,
        and returns `x`."""
        raise NotImplementedError

    def labels(self, y: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """The labels to predict for images of classes `y` shifted by `factors`: a new `int32`
        array (here the classes themselves)."""
        del factors
        return np.array(y, dtype=np.int32, copy=True)

    def num_classes(self, classes: int = NUM_CLASSES) -> int:
        """The number of labels a model must tell apart, for `classes` image classes
        (Fashion-MNIST's 10 by default): the size of its output layer."""
        return classes

    def transform(self, x: np.ndarray, y: np.ndarray, rng: RandomLike
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Draws one factor per image and returns new `(x_shifted, labels)`: `float32` images
        shaped like `x` and `int32` labels. An identity shift draws nothing.

        Args:
            x: Images in [0, 1], shape `(N, ...)`.
            y: Classes, shape `(N,)`.
            rng: A `np.random.Generator`, or a seed for `np.random.default_rng`.
        """
        x = np.array(x, dtype=np.float32, copy=True)
        if self.is_identity:
            return x, np.array(y, dtype=np.int32, copy=True)
        if x.ndim < 1:
            raise ValueError(f"Expected `x` of shape (N, ...). Received: x.shape={x.shape}")
        factors = self.draw(x.shape[0], rng)
        return self.apply(x, factors), self.labels(y, factors)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size:g})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.size == self.size

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.size))


class LuminosityShift(Shift):
    """The paper's luminosity shift: `c ~ Uniform(-r, r)` added to every pixel of an image,
    then clipped to [0, 1]. `r = 0` is plain Fashion-MNIST (no clipping).

    Args:
        size: The half-width `r`, in [0, 1].

    Example:

    ```python
    import numpy as np

    shift = ei_keras.data.LuminosityShift(0.5)
    x = np.full((3, 4), 0.5, dtype=np.float32)
    c = shift.draw(3, rng=0)
    bool(np.allclose(shift.apply(x, c), 0.5 + c[:, None]))  # True
    ```
    """

    name = "luminosity"

    def _check(self, size: float) -> float:
        return _check_number("luminosity", size, 0.0, 1.0)

    @property
    def is_identity(self) -> bool:
        return self.size == 0.0

    def draw(self, n: int, rng: RandomLike) -> np.ndarray:
        """Draws `n` shifts `c ~ Uniform(-r, r)` as `float32` (zeros when `r` is 0)."""
        n = _check_int("n", n, low=0)
        r = self.size
        return np.random.default_rng(rng).uniform(-r, r, size=n).astype(np.float32)

    def apply(self, x: np.ndarray, factors: np.ndarray) -> np.ndarray:
        if self.is_identity:
            return x
        x += _per_image(factors, x.ndim)
        np.clip(x, 0.0, 1.0, out=x)
        return x


class ContrastShift(Shift):
    """A contrast shift: each image's deviation from its own mean scaled by `c`,
    `log c ~ Uniform(-log s, log s)`, then clipped to [0, 1]. The factors are `log c`.

    The mean `m` is taken over the image's pixels before scaling, in float64:
    `x' = clip(m + c (x - m), 0, 1)`, stored as `float32`. `s = 1` leaves every image as it is.

    Args:
        size: The range `s >= 1` (`c` spans `[1/s, s]`).

    Example:

    ```python
    import numpy as np

    shift = ei_keras.data.ContrastShift(4.0)
    x = np.array([[0.25, 0.75]], dtype=np.float32)  # mean 0.5, deviations -/+0.25
    shift.apply(x, np.log([2.0])).tolist()  # [[0.0, 1.0]]
    ```
    """

    name = "contrast"

    def _check(self, size: float) -> float:
        return _check_number("contrast", size, 1.0, None)

    @property
    def is_identity(self) -> bool:
        return self.size == 1.0

    def draw(self, n: int, rng: RandomLike) -> np.ndarray:
        """Draws `n` values of `log c ~ Uniform(-log s, log s)` (float64)."""
        n = _check_int("n", n, low=0)
        half = math.log(self.size)
        return np.random.default_rng(rng).uniform(-half, half, size=n)

    def apply(self, x: np.ndarray, factors: np.ndarray) -> np.ndarray:
        if self.is_identity or x.shape[0] == 0:
            return x
        axes = tuple(range(1, x.ndim))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        x64 -= mean
        x64 *= _per_image(np.exp(factors), x.ndim)
        x64 += mean
        np.clip(x64, 0.0, 1.0, out=x64)
        x[...] = x64
        return x


class ContrastSignalShift(ContrastShift):
    """The contrast shift as part of the signal: images as `ContrastShift`, and the label
    of an image of class `k` is `2k` when it is shown at low contrast (`c < 1`, `log c < 0`)
    and `2k + 1` at high contrast (`c >= 1`), so `num_classes(10) == 20`.

    Args:
        size: The range `s >= 1`.

    Example:

    ```python
    import numpy as np

    shift = ei_keras.data.ContrastSignalShift(4.0)
    shift.labels(np.array([3, 3, 9]), np.log([0.5, 2.0, 1.0])).tolist()  # [6, 7, 19]
    shift.num_classes()  # 20
    ```
    """

    name = "contrast_signal"

    @property
    def is_identity(self) -> bool:
        return False  # the labels change even when s = 1 (every image is then "high")

    def labels(self, y: np.ndarray, factors: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        return (2 * y + (np.asarray(factors) >= 0.0)).astype(np.int32)

    def num_classes(self, classes: int = NUM_CLASSES) -> int:
        return 2 * classes


#: The shift families by `data.shift` name: the class of each family of the one registry,
#: `ei_keras.config.SHIFT_FAMILIES` (its `arithmetic`).
SHIFTS: dict[str, type[Shift]] = {
    name: globals()[family.arithmetic] for name, family in SHIFT_FAMILIES.items()}
for _name, _cls in SHIFTS.items():
    if _cls.name != _name:
        raise RuntimeError(f"{_cls.__name__}.name is {_cls.name!r}, but it is the arithmetic "
                           f"of the shift family {_name!r} (ei_keras.config.SHIFT_FAMILIES).")


def get_shift(name: str, size: float) -> Shift:
    """The family `name` (a `data.shift` value) at `size`.

    Raises:
        ValueError: An unknown family (naming the known ones) or a size out of its range.

    Example:

    ```python
    ei_keras.data.get_shift("contrast", 4)  # ContrastShift(4)
    ```
    """
    if name not in SHIFTS:
        raise ValueError(f"Expected a shift family among {', '.join(SHIFTS)}. "
                         f"Received: shift={name!r}")
    return SHIFTS[name](size)


def shift_from_config(config) -> Shift:
    """The shift of an `ei_keras.config.RunConfig`: `data.shift` at its size
    (`data.luminosity` or `data.contrast`).

    Example:

    ```python
    from ei_keras.config import RunConfig

    cfg = RunConfig().with_overrides(["data.shift=contrast", "data.contrast=2"])
    ei_keras.data.shift_from_config(cfg)  # ContrastShift(2)
    ```
    """
    return get_shift(config.data.shift, config.shift_size)


def draw_shifts(n: int, luminosity: float, rng: RandomLike) -> np.ndarray:
    """Draws `n` per-image luminosity shifts `c ~ Uniform(-luminosity, luminosity)`.

    The same draw as `LuminosityShift(luminosity).draw(n, rng)`, which the streams use.

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
    return LuminosityShift(luminosity).draw(n, rng)


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
    x = np.asarray(x)
    return LuminosityShift(luminosity).transform(x, np.zeros(x.shape[:1], np.int32), rng)[0]
