"""Fashion-MNIST from local IDX files: find them, read them, check them.

The four IDX files are looked for, in order, in an explicit folder (argument or the
`EI_KERAS_DATA_DIR` environment variable), in Debian's `dataset-fashion-mnist` package
(`/usr/share/datasets/fashion-mnist/`) and in the Keras download cache
(`$KERAS_HOME/datasets/fashion-mnist/`, `~/.keras/datasets/fashion-mnist/` by default). Only when
none of them holds the files is a download through `keras.datasets.fashion_mnist.load_data()`
attempted. Every file is validated (magic number, dimensions, exact payload size) so that a
truncated or corrupt download fails loudly with the path and the fix instead of training on
garbage.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_DIR_ENV",
    "DEBIAN_DATA_DIR",
    "FILE_NAMES",
    "KERAS_CACHE_DIR",
    "NUM_CLASSES",
    "DataFileError",
    "DataNotFoundError",
    "find_data_dir",
    "keras_cache_dir",
    "load_fashion_mnist",
    "read_idx",
]

#: Environment variable naming a folder that holds the four IDX files.
DATA_DIR_ENV = "EI_KERAS_DATA_DIR"

#: Where Debian's `dataset-fashion-mnist` package installs the files. Module-level so that tests
#: (and unusual installations) can point it elsewhere.
DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The Keras download cache folder. `None` means "derive it at call time" from `KERAS_HOME`
#: (default `~/.keras`), see `keras_cache_dir()`; set it to a path to override.
KERAS_CACHE_DIR: Path | None = None

#: The four IDX files, by role.
FILE_NAMES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"
_IMAGE_SHAPE = (28, 28)
#: The classes of Fashion-MNIST (labels 0..9).
NUM_CLASSES = 10

_FILE_FIX = (
    "Fix: delete it and re-install Debian's dataset-fashion-mnist "
    "(`apt-get install --reinstall dataset-fashion-mnist`), or set "
    f"{DATA_DIR_ENV} to a folder holding good copies of the four files, or let Keras "
    "re-download it (delete the file from the Keras cache, ~/.keras/datasets/fashion-mnist/, "
    "and run once with network access)."
)


class DataFileError(ValueError):
    """A Fashion-MNIST IDX file exists but is truncated, corrupt or of the wrong kind.

    The message names the file, what is wrong with it, and how to get a good copy.
    """


class DataNotFoundError(FileNotFoundError):
    """The Fashion-MNIST IDX files could not be found (nor downloaded).

    The message names the places searched and the three ways to provide the files.
    """


def keras_cache_dir() -> Path:
    """Returns the folder Keras downloads Fashion-MNIST into.

    `KERAS_CACHE_DIR` when set; otherwise `$KERAS_HOME/datasets/fashion-mnist` when `KERAS_HOME`
    is set, else `~/.keras/datasets/fashion-mnist` (`/tmp/.keras/...` when the home folder is
    not writable, as Keras does).

    Returns:
        The cache folder (it need not exist).

    Example:

    ```python
    ei_keras.data.keras_cache_dir()  # PosixPath('/home/me/.keras/datasets/fashion-mnist')
    ```
    """
    if KERAS_CACHE_DIR is not None:
        return Path(KERAS_CACHE_DIR).expanduser()
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        base = Path(keras_home).expanduser()
    else:
        home = Path("~").expanduser()
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    return base / "datasets" / "fashion-mnist"


def _file_error(path: Path, problem: str) -> DataFileError:
    return DataFileError(f"Bad Fashion-MNIST IDX file {path}: {problem}. {_FILE_FIX}")


#: The IDX magic number of each kind of Fashion-MNIST file.
_MAGIC = {"images": _IMAGES_MAGIC, "labels": _LABELS_MAGIC}


def read_idx(path: str | os.PathLike[str], kind: str | None = None) -> np.ndarray:
    """Reads one IDX file of unsigned bytes (gzip-compressed or raw) and validates it.

    The header must carry the magic number `0x00000803` (images) or `0x00000801` (labels), i.e.
    data type byte `0x08` (unsigned byte), and the payload after the header must hold exactly
    the product of the dimensions in bytes: a truncated or padded file is an error, never a
    silently wrong array.

    Args:
        path: The IDX file. Compression is detected from the content (gzip magic bytes); a name
            ending in `.gz` whose content is not gzip is an error.
        kind: `"images"` or `"labels"`: the kind of file expected; the magic number must be
            that kind's (checked before anything else, so that a labels file holding images
            says so). None accepts either.

    Returns:
        A read-only `uint8` array whose shape is the file's dimensions, e.g. `(60000, 28, 28)`
        for training images or `(60000,)` for training labels.

    Raises:
        DataFileError: If the file is not valid gzip, is truncated, has a wrong magic number or
            a payload whose size does not match its dimensions. The message names the file, the
            problem (e.g. "expected 47040000 bytes of pixels ..., found 1234") and the fix.
        FileNotFoundError: If the file does not exist.

    Example:

    ```python
    labels = ei_keras.data.read_idx(
        "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
    )
    labels.shape  # (10000,)
    ```
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise _file_error(path, f"the gzip stream is truncated or corrupt ({error})") from error
    elif path.name.endswith(".gz"):
        raise _file_error(
            path,
            f"its name ends in .gz but it is not a gzip file (first bytes {raw[:4].hex()!r}, "
            f"{len(raw)} bytes in all)",
        )
    else:
        data = raw

    if len(data) < 4:
        raise _file_error(path, f"it holds {len(data)} bytes, too few for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic not in (_IMAGES_MAGIC, _LABELS_MAGIC):
        raise _file_error(
            path,
            f"magic number 0x{magic:08x} is not an unsigned-byte IDX magic number (expected "
            f"0x{_IMAGES_MAGIC:08x} for images or 0x{_LABELS_MAGIC:08x} for labels)",
        )
    if kind is not None and magic != _MAGIC[kind]:
        found_kind = "images" if magic == _IMAGES_MAGIC else "labels"
        raise _file_error(
            path,
            f"expected a file of {kind} (IDX magic number 0x{_MAGIC[kind]:08x}) but it holds "
            f"{found_kind} (magic number 0x{magic:08x}): the {found_kind} file sits under "
            f"the name of the {kind} file (swapped or mislabelled files)",
        )
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise _file_error(
            path,
            f"the header declares {ndim} dimensions ({header_size} bytes) but the file holds "
            f"only {len(data)} bytes",
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = math.prod(dims)
    found = len(data) - header_size
    if found != expected:
        kind = "pixels" if magic == _IMAGES_MAGIC else "labels"
        shape = " x ".join(str(d) for d in dims)
        raise _file_error(
            path,
            f"expected {expected} bytes of {kind} ({shape}) after the {header_size}-byte "
            f"header, found {found}",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _missing_files(directory: Path) -> list[str]:
    """The IDX file names absent from `directory` (all four if it is not a folder)."""
    if not directory.is_dir():
        return list(FILE_NAMES.values())
    return [name for name in FILE_NAMES.values() if not (directory / name).is_file()]


def _how_to_get_files() -> str:
    names = ", ".join(FILE_NAMES.values())
    return (
        "To get the files, do one of: (1) on Debian/Ubuntu, `apt-get install "
        f"dataset-fashion-mnist` (installs them into {DEBIAN_DATA_DIR}/); (2) put the four "
        f"files ({names}) in a folder and set {DATA_DIR_ENV}=/path/to/that/folder (or pass "
        "`data_dir=`); (3) run once with network access so that Keras downloads them into "
        f"{keras_cache_dir()}/."
    )


def _check_explicit_dir(directory: Path, source: str) -> Path:
    missing = _missing_files(directory)
    if missing:
        problem = (
            "does not exist or is not a folder"
            if not directory.is_dir()
            else f"lacks {len(missing)} of the four Fashion-MNIST files: {', '.join(missing)}"
        )
        raise DataNotFoundError(
            f"The Fashion-MNIST folder {directory} (from {source}) {problem}. "
            + _how_to_get_files()
        )
    return directory


def _download_with_keras() -> None:
    import keras

    keras.datasets.fashion_mnist.load_data()


def find_data_dir(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool | Callable[[], object] = True,
) -> Path:
    """Finds the folder holding the four Fashion-MNIST IDX `.gz` files.

    Search order: `data_dir`; else the `EI_KERAS_DATA_DIR` environment variable; else Debian's
    `/usr/share/datasets/fashion-mnist/` (`DEBIAN_DATA_DIR`); else the Keras cache
    (`keras_cache_dir()`). An explicit folder (argument or environment variable) that is
    missing or incomplete is an error, not a reason to look elsewhere. When nothing is found
    and `download` allows it, Keras downloads the files into its cache.

    Args:
        data_dir: An explicit folder holding `train-images-idx3-ubyte.gz`,
            `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz` and
            `t10k-labels-idx1-ubyte.gz`.
        download: `True` to let `keras.datasets.fashion_mnist.load_data()` download the files
            when none are found, `False` to fail instead, or a zero-argument callable that
            fetches them into `keras_cache_dir()` (used in place of Keras' download).

    Returns:
        The folder, with `~` expanded.

    Raises:
        DataNotFoundError: If the explicit folder is missing or incomplete (the message names
            the folder and the missing files), or if no folder holds the files and the download
            is disabled or fails (the message says how to get the files).

    Example:

    ```python
    ei_keras.data.find_data_dir(download=False)
    # PosixPath('/usr/share/datasets/fashion-mnist')
    ```
    """
    if data_dir is not None:
        return _check_explicit_dir(Path(data_dir).expanduser(), "the `data_dir` argument")
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        return _check_explicit_dir(
            Path(env_dir).expanduser(), f"the {DATA_DIR_ENV} environment variable"
        )

    def search() -> Path | None:
        for candidate in (Path(DEBIAN_DATA_DIR), keras_cache_dir()):
            if not _missing_files(candidate):
                return candidate
        return None

    found = search()
    if found is not None:
        return found
    searched = f"{DEBIAN_DATA_DIR}/ and {keras_cache_dir()}/"
    if not download:
        raise DataNotFoundError(
            f"Fashion-MNIST not found: {DATA_DIR_ENV} is not set and neither {searched} holds "
            "the four IDX files (download disabled). " + _how_to_get_files()
        )
    downloader = download if callable(download) else _download_with_keras
    try:
        downloader()
    except Exception as error:
        raise DataNotFoundError(
            f"Fashion-MNIST not found: {DATA_DIR_ENV} is not set, neither {searched} holds the "
            f"four IDX files, and the download failed ({type(error).__name__}: {error}). "
            + _how_to_get_files()
        ) from error
    found = search()
    if found is None:
        raise DataNotFoundError(
            f"Fashion-MNIST was downloaded but the four IDX files are still not in {searched} "
            "(Keras reads KERAS_HOME once, at import: was it changed afterwards?). "
            + _how_to_get_files()
        )
    return found


def _file_stamp(directory: Path) -> tuple[tuple[int, int], ...]:
    stats = [(directory / name).stat() for name in FILE_NAMES.values()]
    return tuple((s.st_size, s.st_mtime_ns) for s in stats)


def _decode_split(
    directory: Path, images_name: str, labels_name: str
) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = directory / images_name, directory / labels_name
    images, labels = read_idx(images_path, "images"), read_idx(labels_path, "labels")
    if images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
        raise _file_error(
            images_path, f"expected images of shape (N, 28, 28), found {images.shape}"
        )
    if labels.ndim != 1:
        raise _file_error(labels_path, f"expected labels of shape (N,), found {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(
            f"Fashion-MNIST files disagree: {images_path} holds {images.shape[0]} images but "
            f"{labels_path} holds {labels.shape[0]} labels. {_FILE_FIX}"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise _file_error(labels_path, f"expected labels 0..9, found a label {int(labels.max())}")
    x = np.divide(images.reshape(images.shape[0], -1), 255.0, dtype=np.float32)
    y = labels.astype(np.int32)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@functools.lru_cache(maxsize=2)
def _load_cached(
    directory: str, stamp: tuple[tuple[int, int], ...]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    del stamp  # Part of the cache key only: a replaced file is decoded again.
    folder = Path(directory)
    train = _decode_split(folder, FILE_NAMES["train_images"], FILE_NAMES["train_labels"])
    test = _decode_split(folder, FILE_NAMES["test_images"], FILE_NAMES["test_labels"])
    _check_split_sizes(folder, len(train[0]), len(test[0]))
    return train, test


#: The numbers of images in Fashion-MNIST's training and test files.
STANDARD_SIZES = {"train": 60_000, "test": 10_000}


def _check_split_sizes(folder: Path, n_train: int, n_test: int) -> None:
    """Files of the standard sizes must sit under the right names: a 10 000-image training set
    (or a 60 000-image test set) means the training and test files were swapped or mixed up.
    (Smaller, self-made data sets are accepted as they are.)"""
    standard = set(STANDARD_SIZES.values())
    if (n_train in standard or n_test in standard) and \
            (n_train, n_test) != (STANDARD_SIZES["train"], STANDARD_SIZES["test"]):
        raise DataFileError(
            f"Fashion-MNIST's training files ({FILE_NAMES['train_images']}, "
            f"{FILE_NAMES['train_labels']}) hold {STANDARD_SIZES['train']} images and its test "
            f"files ({FILE_NAMES['test_images']}, {FILE_NAMES['test_labels']}) "
            f"{STANDARD_SIZES['test']}, but in {folder} the training files hold {n_train} and "
            f"the test files {n_test}: the training and test files are swapped or mixed up. "
            f"{_FILE_FIX}")


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool | Callable[[], object] = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads Fashion-MNIST as flat `float32` pixels in [0, 1] and `int32` labels.

    The folder is found with `find_data_dir()`. Decoding takes about a second, so the arrays
    are cached in-process, keyed on the resolved folder and the files' sizes and modification
    times; the arrays are read-only so that no caller can corrupt another's data (copy them to
    modify them).

    Args:
        data_dir: An explicit folder holding the four IDX files; see `find_data_dir()`.
        download: Whether (or how) to download the files when none are found; see
            `find_data_dir()`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: `x` of shape `(N, 784)`, `float32`,
        pixels / 255; `y` of shape `(N,)`, `int32`, classes 0..9. N is 60 000 and 10 000 for
        the standard files.

    Raises:
        DataNotFoundError: If the files cannot be found or downloaded.
        DataFileError: If a file is corrupt, the images are not 28 x 28, a label is out of
            range, or the numbers of images and labels differ.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = ei_keras.data.load_fashion_mnist()
    x_train.shape, x_train.dtype  # ((60000, 784), dtype('float32'))
    ```
    """
    directory = find_data_dir(data_dir, download=download).resolve()
    train, test = _load_cached(str(directory), _file_stamp(directory))
    return train, test
