"""Tests of `ei_keras.data`: offline Fashion-MNIST, file validation, luminosity shifts."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy import stats

import ei_keras.data as data
from ei_keras.data import fashion_mnist

FIX_WORDS = ("dataset-fashion-mnist", "EI_KERAS_DATA_DIR")


# --------------------------------------------------------------------------------------------
# Helpers and fixtures


def write_idx(
    path: Path, array: np.ndarray, *, magic: int | None = None, compress: bool = True
) -> Path:
    """Writes `array` (uint8) as an IDX file; `magic` overrides the header's magic number."""
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_fake_dataset(
    folder: Path, n_train: int = 40, n_test: int = 12, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Writes four small but valid IDX files; returns the training images and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
        arrays[split] = (images, labels)
    return arrays["train"]


@pytest.fixture
def no_default_locations(tmp_path, monkeypatch):
    """Points the Debian and Keras-cache locations at empty folders; unsets EI_KERAS_DATA_DIR."""
    debian, cache = tmp_path / "debian", tmp_path / "keras-cache"
    debian.mkdir()
    cache.mkdir()
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DATA_DIR", debian)
    monkeypatch.setattr(fashion_mnist, "KERAS_CACHE_DIR", cache)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    return debian, cache


@pytest.fixture
def fashion(monkeypatch):
    """The real data set, offline; a missing copy fails (the set-up script installs it)."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    try:
        return data.load_fashion_mnist(download=False)
    except data.DataNotFoundError as error:
        pytest.fail(f"Fashion-MNIST not installed (run `make test`, whose set-up installs "
                    f"it): {error}")


def grey_images(n: int, d: int = 784) -> np.ndarray:
    """Mid-grey images: a shift of at most 0.5 is never clipped, so it can be read back."""
    return np.full((n, d), 0.5, dtype=np.float32)


def assert_names_file_and_fix(message: str, path: Path) -> None:
    assert str(path) in message
    for word in FIX_WORDS:
        assert word in message


# --------------------------------------------------------------------------------------------
# Real data, offline


def test_real_data_offline(fashion):
    (x_train, y_train), (x_test, y_test) = fashion
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int32 and y_test.dtype == np.int32
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert x_test.min() == 0.0 and x_test.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    # Pixels are exactly k / 255.
    pixels = x_test[:500] * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-4)


def test_real_data_is_cached_and_read_only(fashion):
    (x_train, y_train), _ = fashion
    (x_again, y_again), _ = data.load_fashion_mnist(download=False)
    assert x_again is x_train and y_again is y_train
    with pytest.raises(ValueError, match="read-only"):
        x_train[0, 0] = 7.0
    with pytest.raises(ValueError, match="read-only"):
        y_train[0] = 3


def test_find_data_dir_uses_debian_location(no_default_locations):
    debian, _ = no_default_locations
    write_fake_dataset(debian)
    assert data.find_data_dir(download=False) == debian


# --------------------------------------------------------------------------------------------
# Loading small fake data sets (scaling, explicit folders)


def test_load_fake_dataset_scaling(tmp_path):
    images, labels = write_fake_dataset(tmp_path / "fm")
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(data_dir=tmp_path / "fm")
    assert x_train.shape == (40, 784) and x_test.shape == (12, 784)
    np.testing.assert_array_equal(x_train, images.reshape(40, 784).astype(np.float32) / 255)
    np.testing.assert_array_equal(y_train, labels.astype(np.int32))


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_fake_dataset(tmp_path / "fm", n_train=7)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "fm"))
    assert data.find_data_dir() == tmp_path / "fm"
    (x_train, _), _ = data.load_fashion_mnist()
    assert x_train.shape == (7, 784)


def test_replaced_file_is_decoded_again(tmp_path):
    folder = tmp_path / "fm"
    write_fake_dataset(folder, n_train=5)
    (x_first, _), _ = data.load_fashion_mnist(data_dir=folder)
    write_fake_dataset(folder, n_train=6)
    (x_second, _), _ = data.load_fashion_mnist(data_dir=folder)
    assert x_first.shape == (5, 784) and x_second.shape == (6, 784)


def test_read_idx_raw_and_gzip_agree(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    raw = data.read_idx(write_idx(tmp_path / "labels-idx1-ubyte", labels, compress=False))
    packed = data.read_idx(write_idx(tmp_path / "labels-idx1-ubyte.gz", labels))
    np.testing.assert_array_equal(raw, labels)
    np.testing.assert_array_equal(packed, labels)


# --------------------------------------------------------------------------------------------
# Corrupt files: each error names the file and the fix


def test_truncated_gzip_stream(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((50, 28, 28)))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(data.DataFileError, match="truncated or corrupt") as info:
        data.read_idx(path)
    assert_names_file_and_fix(str(info.value), path)


def test_truncated_payload(tmp_path):
    # A valid gzip stream whose IDX header promises 60000 images but holds 1234 bytes.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">4I", 0x803, 60000, 28, 28) + bytes(1234)))
    with pytest.raises(data.DataFileError) as info:
        data.read_idx(path)
    assert "expected 47040000 bytes of pixels" in str(info.value)
    assert "found 1234" in str(info.value)
    assert_names_file_and_fix(str(info.value), path)


def test_padded_payload(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">2I", 0x801, 10) + bytes(11)))
    with pytest.raises(data.DataFileError, match="expected 10 bytes of labels .* found 11"):
        data.read_idx(path)


def test_wrong_magic(tmp_path):
    path = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(10), magic=0x0D01)
    with pytest.raises(data.DataFileError, match="magic number 0x00000d01") as info:
        data.read_idx(path)
    assert_names_file_and_fix(str(info.value), path)


def test_not_gzip(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(data.DataFileError, match="not a gzip file") as info:
        data.read_idx(path)
    assert_names_file_and_fix(str(info.value), path)


def test_count_mismatch_between_images_and_labels(tmp_path):
    folder = tmp_path / "fm"
    write_fake_dataset(folder, n_train=6)
    labels_path = write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5))
    with pytest.raises(data.DataFileError, match="holds 6 images but .* holds 5 labels") as info:
        data.load_fashion_mnist(data_dir=folder)
    assert_names_file_and_fix(str(info.value), labels_path)


def test_wrong_image_shape_and_label_range(tmp_path):
    folder = tmp_path / "fm"
    write_fake_dataset(folder)
    images_path = write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((12, 32, 32)))
    with pytest.raises(data.DataFileError, match=r"\(N, 28, 28\)") as info:
        data.load_fashion_mnist(data_dir=folder)
    assert_names_file_and_fix(str(info.value), images_path)
    write_fake_dataset(folder)
    labels_path = write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(12, 10))
    with pytest.raises(data.DataFileError, match="labels 0..9") as info:
        data.load_fashion_mnist(data_dir=folder)
    assert_names_file_and_fix(str(info.value), labels_path)


# --------------------------------------------------------------------------------------------
# Finding the folder


def test_missing_explicit_dir_argument(tmp_path, no_default_locations):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DataNotFoundError, match="does not exist") as info:
        data.load_fashion_mnist(data_dir=missing, download=False)
    assert str(missing) in str(info.value) and "data_dir" in str(info.value)


def test_incomplete_explicit_dir_names_missing_files(tmp_path, no_default_locations):
    folder = tmp_path / "fm"
    write_fake_dataset(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataNotFoundError) as info:
        data.find_data_dir(folder)
    message = str(info.value)
    assert str(folder) in message
    assert "lacks 1 of the four Fashion-MNIST files: t10k-labels-idx1-ubyte.gz." in message


def test_missing_explicit_dir_from_environment(tmp_path, monkeypatch, no_default_locations):
    debian, _ = no_default_locations
    write_fake_dataset(debian)  # must not be used as a silent fallback
    missing = tmp_path / "env-nowhere"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(missing))
    with pytest.raises(data.DataNotFoundError) as info:
        data.find_data_dir()
    assert str(missing) in str(info.value) and data.DATA_DIR_ENV in str(info.value)


def test_nothing_found_without_download(no_default_locations):
    debian, cache = no_default_locations
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_fashion_mnist(download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "apt-get install dataset-fashion-mnist" in message
    assert data.DATA_DIR_ENV in message
    assert str(debian) in message and str(cache) in message


def test_failed_download_is_reported(no_default_locations):
    def offline() -> None:
        raise OSError("network unreachable")

    with pytest.raises(data.DataNotFoundError, match="network unreachable") as info:
        data.find_data_dir(download=offline)
    assert isinstance(info.value.__cause__, OSError)
    assert "dataset-fashion-mnist" in str(info.value)


def test_download_fills_keras_cache(no_default_locations):
    _, cache = no_default_locations
    assert data.find_data_dir(download=lambda: write_fake_dataset(cache)) == cache


def test_keras_home_is_honoured(tmp_path, monkeypatch, no_default_locations):
    monkeypatch.setattr(fashion_mnist, "KERAS_CACHE_DIR", None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    expected = tmp_path / "kh" / "datasets" / "fashion-mnist"
    assert data.keras_cache_dir() == expected
    write_fake_dataset(expected)
    assert data.find_data_dir(download=False) == expected


# --------------------------------------------------------------------------------------------
# Luminosity shifts


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), "0.5"])
def test_invalid_luminosity(bad):
    x = grey_images(3)
    with pytest.raises(ValueError, match=f"luminosity={bad!r}"):
        data.shift_luminosity(x, bad, rng=0)
    with pytest.raises(ValueError, match="luminosity="):
        data.LuminosityShiftedSequence(x, np.zeros(3), luminosity=bad)


def test_shifts_are_uniform():
    r = 0.5
    shifts = data.draw_shifts(20000, r, np.random.default_rng(1))
    assert shifts.dtype == np.float32 and shifts.shape == (20000,)
    assert stats.kstest(shifts, "uniform", args=(-r, 2 * r)).pvalue > 1e-3
    # Per-image mean shift before clipping, read back from mid-grey images (never clipped).
    x = grey_images(5000, d=16)
    shifted = data.shift_luminosity(x, r, np.random.default_rng(2))
    per_image = shifted.mean(axis=1) - 0.5
    np.testing.assert_allclose(shifted - 0.5, np.repeat(per_image[:, None], 16, 1), atol=1e-6)
    assert stats.kstest(per_image, "uniform", args=(-r, 2 * r)).pvalue > 1e-3
    np.testing.assert_allclose(
        per_image, data.draw_shifts(5000, r, np.random.default_rng(2)), atol=1e-6
    )


def test_shifted_pixels_stay_in_unit_interval():
    x = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
    for r in (0.25, 0.75, 1.0):
        shifted = data.shift_luminosity(x, r, rng=3)
        assert shifted.dtype == np.float32 and shifted.shape == x.shape
        assert shifted.min() >= 0.0 and shifted.max() <= 1.0
        assert shifted.min() == 0.0 and shifted.max() == 1.0  # clipping happened


def test_zero_luminosity_leaves_data_identical():
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    out = data.shift_luminosity(x, 0.0, rng=0)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    x_eval, _ = data.shifted_test_set(x, np.zeros(64), 0.0)
    np.testing.assert_array_equal(x_eval, x)
    seq = data.LuminosityShiftedSequence(x, np.arange(64), luminosity=0.0, batch_size=16)
    for i in range(len(seq)):
        x_batch, y_batch = seq[i]
        np.testing.assert_array_equal(x_batch, x[y_batch])


# --------------------------------------------------------------------------------------------
# Training stream and evaluation stream


def epoch_shifts(seq: data.LuminosityShiftedSequence) -> tuple[np.ndarray, np.ndarray]:
    """The sample order and per-sample shifts of the current epoch (mid-grey images)."""
    batches = [seq[i] for i in range(len(seq))]
    order = np.concatenate([y for _, y in batches])
    shifts = np.concatenate([x.mean(axis=1) - 0.5 for x, _ in batches])
    return order, shifts


def test_sequence_batches():
    n = 100
    seq = data.LuminosityShiftedSequence(
        grey_images(n), np.arange(n), luminosity=0.5, batch_size=32, seed=0
    )
    assert len(seq) == math.ceil(n / 32) == 4
    x_batch, y_batch = seq[0]
    assert x_batch.shape == (32, 784) and x_batch.dtype == np.float32
    assert y_batch.shape == (32,) and y_batch.dtype == np.int32
    assert seq[3][0].shape == (4, 784)
    with pytest.raises(IndexError):
        seq[4]
    order, _ = epoch_shifts(seq)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))  # every sample once
    # Reading a batch has no side effects.
    np.testing.assert_array_equal(seq[1][0], seq[1][0])
    assert len(data.LuminosityShiftedSequence(grey_images(n), np.arange(n), subset=40)) == 2


def test_epochs_differ_and_are_reproducible():
    n, r = 2000, 0.5
    seq = data.LuminosityShiftedSequence(
        grey_images(n), np.arange(n), luminosity=r, batch_size=32, seed=7
    )
    order0, shifts0 = epoch_shifts(seq)
    seq.on_epoch_end()
    assert seq.epoch == 1
    order1, shifts1 = epoch_shifts(seq)
    assert not np.array_equal(order0, order1)
    assert not np.allclose(shifts0, shifts1)
    assert abs(shifts0).max() <= r + 1e-6
    assert stats.kstest(shifts0, "uniform", args=(-r, 2 * r)).pvalue > 1e-3
    # The same seed replays the same epochs; another seed does not.
    again = data.LuminosityShiftedSequence(
        grey_images(n), np.arange(n), luminosity=r, batch_size=32, seed=7
    )
    order_again, shifts_again = epoch_shifts(again)
    np.testing.assert_array_equal(order_again, order0)
    np.testing.assert_array_equal(shifts_again, shifts0)
    again.set_epoch(1)
    np.testing.assert_array_equal(epoch_shifts(again)[1], shifts1)
    other = data.LuminosityShiftedSequence(
        grey_images(n), np.arange(n), luminosity=r, batch_size=32, seed=8
    )
    assert not np.array_equal(epoch_shifts(other)[0], order0)


def test_unshuffled_sequence_keeps_order():
    seq = data.LuminosityShiftedSequence(
        grey_images(50), np.arange(50), luminosity=0.25, shuffle=False, batch_size=8
    )
    order, _ = epoch_shifts(seq)
    np.testing.assert_array_equal(order, np.arange(50))


def test_evaluation_stream_is_reproducible():
    n, r = 500, 0.5
    x, y = grey_images(n), np.arange(n)
    x_a, y_a = data.shifted_test_set(x, y, r, seed=0)
    x_b, _ = data.shifted_test_set(x, y, r, seed=0)
    x_c, _ = data.shifted_test_set(x, y, r, seed=1)
    np.testing.assert_array_equal(x_a, x_b)
    assert not np.allclose(x_a, x_c)
    np.testing.assert_array_equal(y_a, y)
    assert y_a.dtype == np.int32
    # Disjoint from the training stream of the same seed.
    seq = data.LuminosityShiftedSequence(x, y, luminosity=r, seed=0, shuffle=False)
    assert not np.allclose(epoch_shifts(seq)[1], x_a.mean(axis=1) - 0.5)


def test_make_datasets(tmp_path):
    write_fake_dataset(tmp_path / "fm", n_train=40, n_test=12)
    train, (x_test, y_test), validation = data.make_datasets(
        0.25, batch_size=8, seed=3, train_subset=20, test_subset=10, data_dir=tmp_path / "fm"
    )
    assert isinstance(train, keras.utils.PyDataset) and validation is None
    assert len(train) == 3 and train.luminosity == 0.25 and train.seed == 3
    assert x_test.shape == (10, 784) and y_test.shape == (10,)
    assert 0.0 <= x_test.min() and x_test.max() <= 1.0


def test_validation_images_are_held_out_of_training_and_shifted(tmp_path):
    images, labels = write_fake_dataset(tmp_path / "fm", n_train=40, n_test=12)
    flat = images.reshape(40, 784).astype(np.float32) / 255
    kwargs = {"batch_size": 40, "data_dir": tmp_path / "fm", "validation_size": 10}
    train, _, (x_val, y_val) = data.make_datasets(0.5, seed=3, **kwargs)
    assert x_val.shape == (10, 784) and len(train.x) == 30
    held_out = {flat[i].tobytes() for i in range(40)} - {row.tobytes() for row in train.x}
    assert len(held_out) == 10  # never trained on: 10 of the 40 images are missing
    # the same images for every seed (fair comparisons between runs), shifted per seed
    _, _, (x_other, y_other) = data.make_datasets(0.5, seed=4, **kwargs)
    np.testing.assert_array_equal(y_val, y_other)
    assert not np.array_equal(x_val, x_other)
    unshifted = data.make_datasets(0.0, seed=3, **kwargs).validation[0]
    assert {row.tobytes() for row in unshifted} == held_out
    with pytest.raises(ValueError, match="validation_size"):
        data.make_datasets(0.5, validation_size=40, data_dir=tmp_path / "fm")


class RecordingSequence(data.LuminosityShiftedSequence):
    """Records the epoch each batch was served from."""

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        self.served.append(self.epoch)
        return super().__getitem__(index)


def test_fit_and_evaluate_under_current_backend(fashion, backend):
    (x_train, y_train), (x_test, y_test) = fashion
    seq = RecordingSequence(x_train, y_train, luminosity=0.5, batch_size=32, seed=0, subset=512)
    seq.served = []
    x_eval, y_eval = data.shifted_test_set(x_test[:256], y_test[:256], 0.5, seed=0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(seq, epochs=2, shuffle=False, verbose=0, callbacks=[seq.sync_callback()])
    assert np.all(np.isfinite(history.history["loss"]))
    # Keras epoch e was fed from stream e (a batch or two read earlier to build the model too).
    assert set(seq.served) == {0, 1}
    assert seq.served.count(1) == len(seq) == 16
    assert seq.epoch == 2  # the last on_epoch_end moved on
    loss, accuracy = model.evaluate(x_eval, y_eval, batch_size=128, verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0


def test_fit_without_sync_callback_still_draws_fresh_epochs(backend):
    n = 64
    seq = RecordingSequence(grey_images(n), np.arange(n) % 10, luminosity=0.5, batch_size=16)
    seq.served = []
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(seq, epochs=2, shuffle=False, verbose=0)
    # Keras calls on_epoch_end() once before the first epoch too: the two epochs are still
    # served whole, each from its own stream.
    epochs = sorted(set(seq.served[-2 * len(seq) :]))
    assert len(epochs) == 2
    for epoch in epochs:
        assert seq.served.count(epoch) >= len(seq)


# --------------------------------------------------------------------------------------------
# Contrast shifts (a nuisance, and part of the signal)


def two_pixel_images(n: int) -> np.ndarray:
    """Images [0.45, 0.55]: mean 0.5, deviation 0.05, never clipped for c <= 9, so that
    `c = (x[1] - x[0]) / 0.1` can be read back."""
    return np.tile(np.array([0.45, 0.55], dtype=np.float32), (n, 1))


def read_log_contrast(x: np.ndarray) -> np.ndarray:
    """`log c` of shifted `two_pixel_images`."""
    return np.log((x[:, 1].astype(np.float64) - x[:, 0]) / 0.1)


def epoch_contrasts(seq: data.ShiftedSequence) -> tuple[np.ndarray, np.ndarray]:
    """The labels served in one epoch (the sample order when the labels are `arange`) and the
    `log c` read back from the images (`two_pixel_images`)."""
    batches = [seq[i] for i in range(len(seq))]
    x = np.concatenate([b[0] for b in batches])
    return np.concatenate([b[1] for b in batches]), read_log_contrast(x)


def test_contrast_transform_is_exact_on_hand_examples():
    shift = data.ContrastShift(4.0)
    # Dyadic pixels, so every value is exact in binary: x' = m + c (x - m).
    x = np.array([[0.25, 0.75], [0.25, 0.75], [0.25, 0.75]], dtype=np.float32)  # mean 0.5
    out = shift.apply(x.copy(), np.log(np.array([2.0, 0.5, 1.0])))
    np.testing.assert_array_equal(out, [[0.0, 1.0], [0.375, 0.625], [0.25, 0.75]])
    four = np.array([[0.25, 0.5, 0.75, 0.5]], dtype=np.float32)  # mean 0.5
    np.testing.assert_array_equal(shift.apply(four, np.log([1.5])), [[0.125, 0.5, 0.875, 0.5]])
    # In place on float32, and the mean is the image's own (not the batch's).
    y = np.array([[0.0, 0.5], [0.5, 1.0]], dtype=np.float32)
    assert shift.apply(y, np.zeros(2)) is y
    np.testing.assert_array_equal(y, [[0.0, 0.5], [0.5, 1.0]])


def test_contrast_clips_to_the_unit_interval():
    x = np.array([[0.1, 0.3, 0.5, 0.9]], dtype=np.float32)  # mean 0.45
    out = data.ContrastShift(4.0).apply(x, np.log([4.0]))
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.65, 1.0]], atol=1e-7)
    images = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
    shifted, labels = data.ContrastShift(4.0).transform(images, np.zeros(2000), rng=3)
    assert shifted.dtype == np.float32 and shifted.shape == images.shape
    assert shifted.min() == 0.0 and shifted.max() == 1.0  # clipping happened
    assert labels.dtype == np.int32 and not labels.any()
    # s = 1: every c is 1, the images come back unchanged (no clipping either).
    same, _ = data.ContrastShift(1.0).transform(images, np.zeros(2000), rng=3)
    np.testing.assert_array_equal(same, images)


def test_log_contrast_is_uniform():
    s = 4.0
    half = math.log(s)
    log_c = data.ContrastShift(s).draw(20000, np.random.default_rng(1))
    assert log_c.shape == (20000,) and abs(log_c).max() <= half
    assert stats.kstest(log_c, "uniform", args=(-half, 2 * half)).pvalue > 1e-3
    # ... and so is the contrast read back from the images of the training stream.
    seq = data.ShiftedSequence(two_pixel_images(3000), np.arange(3000),
                               shift=data.ContrastShift(s), batch_size=64, seed=5)
    _, served = epoch_contrasts(seq)
    assert stats.kstest(served, "uniform", args=(-half, 2 * half)).pvalue > 1e-3


@pytest.mark.parametrize("bad", [0.5, 0.0, -2.0, float("nan"), float("inf"), "4", True])
def test_invalid_contrast(bad):
    with pytest.raises(ValueError, match="contrast="):
        data.ContrastShift(bad)
    with pytest.raises(ValueError, match="contrast="):
        data.get_shift("contrast_signal", bad)


def test_shift_families_match_the_configuration_schema():
    from ei_keras.config import SHIFT_FAMILIES, RunConfig

    assert set(data.SHIFTS) == set(SHIFT_FAMILIES)
    with pytest.raises(ValueError, match="luminosity, contrast, contrast_signal"):
        data.get_shift("gamma", 2.0)
    cfg = RunConfig().with_overrides({"data.shift": "contrast_signal", "data.contrast": 2})
    assert data.shift_from_config(cfg) == data.ContrastSignalShift(2.0)
    assert data.shift_from_config(RunConfig()) == data.LuminosityShift(0.75)
    with pytest.raises(ValueError, match="either `luminosity`"):
        data.ShiftedSequence(grey_images(4), np.arange(4), luminosity=0.5,
                             shift=data.ContrastShift(2))


def test_contrast_epochs_differ_and_are_reproducible():
    n, shift = 2000, data.ContrastShift(4.0)
    seq = data.ShiftedSequence(two_pixel_images(n), np.arange(n), shift=shift, seed=7)
    order0, log_c0 = epoch_contrasts(seq)
    seq.on_epoch_end()
    order1, log_c1 = epoch_contrasts(seq)
    assert not np.array_equal(order0, order1)
    # Independent across epochs: a sample's contrast in epoch 0 says nothing of epoch 1.
    by_sample0, by_sample1 = np.empty(n), np.empty(n)
    by_sample0[order0], by_sample1[order1] = log_c0, log_c1
    assert abs(np.corrcoef(by_sample0, by_sample1)[0, 1]) < 0.1
    # The same seed replays the same epochs (in any order of visits); another does not.
    again = data.ShiftedSequence(two_pixel_images(n), np.arange(n), shift=shift, seed=7)
    again.set_epoch(1)
    np.testing.assert_array_equal(epoch_contrasts(again)[1], log_c1)
    again.set_epoch(0)
    np.testing.assert_array_equal(epoch_contrasts(again)[0], order0)
    np.testing.assert_array_equal(epoch_contrasts(again)[1], log_c0)
    other = data.ShiftedSequence(two_pixel_images(n), np.arange(n), shift=shift, seed=8)
    assert not np.allclose(epoch_contrasts(other)[1], log_c0)


def test_contrast_stream_is_numpy_and_the_same_under_every_backend(fashion, backend):
    """The batches are computed by NumPy from `default_rng([seed, epoch])` alone: under each
    backend they equal this independent recomputation (and fixed values of the law)."""
    (x_train, y_train), _ = fashion
    n, s, seed, epoch = 256, 4.0, 3, 2
    seq = data.ShiftedSequence(x_train, y_train, shift=data.ContrastSignalShift(s),
                               batch_size=64, seed=seed, subset=n)
    seq.set_epoch(epoch)
    x_seq = np.concatenate([seq[i][0] for i in range(len(seq))])
    y_seq = np.concatenate([seq[i][1] for i in range(len(seq))])
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    log_c = rng.uniform(-math.log(s), math.log(s), size=n)
    x = x_train[order].astype(np.float64)
    m = x.mean(axis=1, keepdims=True)
    expected = np.clip(m + np.exp(log_c)[:, None] * (x - m), 0.0, 1.0).astype(np.float32)
    assert isinstance(x_seq, np.ndarray) and x_seq.dtype == np.float32, backend
    np.testing.assert_allclose(x_seq, expected, atol=1e-6)
    np.testing.assert_array_equal(y_seq, 2 * y_train[order] + (log_c >= 0))
    np.testing.assert_allclose(data.ContrastShift(s).draw(3, [0, 0]),
                               [0.37973843, -0.63828676, -1.27269163], atol=1e-7)


def test_contrast_signal_labels_say_class_and_contrast():
    n = 1000
    classes = np.arange(n) % 10
    seq = data.ShiftedSequence(two_pixel_images(n), classes, shift=data.ContrastSignalShift(4.0),
                               batch_size=100, seed=0, shuffle=False)
    assert seq.num_classes == 20 and seq.luminosity is None
    labels, log_c = epoch_contrasts(seq)
    np.testing.assert_array_equal(labels, 2 * classes + (log_c >= 0))  # low: 2k, high: 2k + 1
    assert labels.dtype == np.int32 and set(np.unique(labels)) == set(range(20))
    assert 0.4 < (log_c >= 0).mean() < 0.6  # low and high equally likely
    # The nuisance family leaves the labels alone.
    nuisance = data.ShiftedSequence(two_pixel_images(n), classes,
                                    shift=data.ContrastShift(4.0), shuffle=False)
    assert nuisance.num_classes == 10
    np.testing.assert_array_equal(nuisance[0][1], classes[:32])


def test_contrast_evaluation_set_is_reproducible():
    n = 500
    x, y = two_pixel_images(n), np.arange(n) % 10
    signal = data.ContrastSignalShift(2.0)
    x_a, y_a = data.shifted_test_set(x, y, seed=0, shift=signal)
    x_b, y_b = data.shifted_test_set(x, y, seed=0, shift=signal)
    x_c, _ = data.shifted_test_set(x, y, seed=1, shift=signal)
    np.testing.assert_array_equal(x_a, x_b)
    np.testing.assert_array_equal(y_a, y_b)
    assert not np.allclose(x_a, x_c)
    log_c = read_log_contrast(x_a)
    assert abs(log_c).max() <= math.log(2.0) + 1e-6
    np.testing.assert_array_equal(y_a, 2 * y + (log_c >= 0))
    # Disjoint from the training stream of the same seed.
    seq = data.ShiftedSequence(x, y, shift=signal, seed=0, shuffle=False)
    assert not np.allclose(epoch_contrasts(seq)[1], log_c)
    with pytest.raises(ValueError, match="either `luminosity`"):
        data.shifted_test_set(x, y, 0.5, shift=signal)


def test_make_datasets_with_a_contrast_shift(tmp_path):
    write_fake_dataset(tmp_path / "fm", n_train=40, n_test=12)
    kwargs = {"batch_size": 8, "seed": 3, "data_dir": tmp_path / "fm", "validation_size": 10}
    train, (x_test, y_test), (x_val, y_val) = data.make_datasets(
        shift=data.ContrastSignalShift(4.0), **kwargs)
    assert train.num_classes == 20 and train.shift == data.ContrastSignalShift(4.0)
    assert y_test.max() <= 19 and y_val.max() <= 19 and 0 <= x_test.min() <= x_test.max() <= 1
    again = data.make_datasets(shift=data.ContrastSignalShift(4.0), **kwargs)
    np.testing.assert_array_equal(again.validation[0], x_val)
    np.testing.assert_array_equal(again.test[1], y_test)
    assert data.make_datasets(shift=data.ContrastShift(4.0), **kwargs).test[1].max() <= 9
