"""Loaders and input checks: real files, small synthetic files, and broken ones."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from vaekit import data
from vaekit.data import DataNotFoundError, load_fashion_mnist, load_mnist, load_svhn, read_idx

pytestmark = pytest.mark.oldest_versions  # .ci/run's stage on the oldest Keras and TensorFlow


# ---------------------------------------------------------------- file makers

def write_mnist_npz(path, n_train=5, n_test=3, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_folder(folder, n_train=6, n_test=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, name in data.FASHION_FILES.items():
        (folder / name).write_bytes(gzip.compress(idx_bytes(arrays[key])))
    return arrays


def write_svhn_mat(path, n=5, labels=None):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = np.array(labels if labels is not None else rng.integers(1, 11, n)).reshape(n, 1).astype(np.uint8)
    savemat(path, {"X": x, "y": y})
    return x, y


@pytest.fixture
def no_env_data_dir(monkeypatch, tmp_path):
    """No $VAEKIT_DATA_DIR, no Debian folder, no download: only what a test writes counts."""
    monkeypatch.delenv(data.DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian-datasets")

    def offline(*args, **kwargs):
        raise OSError("no network")

    import keras

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)


# ---------------------------------------------------------------- real data

def test_load_mnist_from_data_dir_gives_float_images_in_unit_range(real_data_dir):
    (x_train, y_train), (x_test, y_test) = load_mnist(real_data_dir, limit=100)
    assert x_train.shape == (100, 28, 28, 1) and x_test.shape == (100, 28, 28, 1)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert list(y_train[:5]) == [5, 0, 4, 1, 9]  # the published first MNIST labels
    assert list(y_test[:4]) == [7, 2, 1, 0]
    assert y_train.dtype == np.int64


def test_load_fashion_mnist_reads_the_four_idx_files(real_data_dir):
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(real_data_dir, limit=50)
    assert x_train.shape == (50, 28, 28, 1) and y_test.shape == (50,)
    assert set(np.unique(y_train)) <= set(range(10))
    assert x_test.max() <= 1.0 and x_test.max() > 0.5


def test_real_mnist_test_split_has_ten_thousand_images(real_data_dir):
    (_, _), (x_test, y_test) = load_mnist(real_data_dir)
    assert len(x_test) == len(y_test) == 10_000
    assert np.bincount(y_test).tolist()[:2] == [980, 1135]


# ---------------------------------------------------------------- synthetic files

def test_load_mnist_reads_a_small_npz_and_scales_by_255(tmp_path, no_env_data_dir):
    arrays = write_mnist_npz(tmp_path / "mnist.npz")
    (x_train, y_train), (x_test, y_test) = load_mnist(tmp_path)
    np.testing.assert_array_equal(x_train[..., 0], arrays["x_train"] / np.float32(255))
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert x_test.shape == (3, 28, 28, 1)


def test_load_mnist_finds_file_through_environment_variable(tmp_path, no_env_data_dir, monkeypatch):
    write_mnist_npz(tmp_path / "mnist.npz", n_train=2, n_test=2)
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(tmp_path))
    (x_train, _), _ = load_mnist()
    assert len(x_train) == 2


def test_load_fashion_mnist_reads_small_idx_files(tmp_path, no_env_data_dir):
    arrays = write_fashion_folder(tmp_path / "fashion-mnist")
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(np.rint(x_train[..., 0] * 255), arrays["x_train"])
    np.testing.assert_array_equal(y_train, arrays["y_train"])
    assert x_test.shape == (4, 28, 28, 1)


def test_load_svhn_transposes_images_and_maps_label_10_to_digit_0(tmp_path, no_env_data_dir):
    x_raw, _ = write_svhn_mat(tmp_path / "train_32x32.mat", n=4, labels=[10, 1, 9, 10])
    write_svhn_mat(tmp_path / "test_32x32.mat", n=3, labels=[2, 10, 3])
    (x_train, y_train), (x_test, y_test) = load_svhn(tmp_path)
    assert x_train.shape == (4, 32, 32, 3) and x_test.shape == (3, 32, 32, 3)
    assert y_train.tolist() == [0, 1, 9, 0] and y_test.tolist() == [2, 0, 3]
    np.testing.assert_array_equal(np.rint(x_train[1] * 255), x_raw[:, :, :, 1])


def test_load_svhn_finds_files_in_svhn_subfolder(tmp_path, no_env_data_dir):
    (tmp_path / "svhn").mkdir()
    write_svhn_mat(tmp_path / "svhn" / "train_32x32.mat", n=2)
    write_svhn_mat(tmp_path / "svhn" / "test_32x32.mat", n=2)
    (x_train, _), _ = load_svhn(tmp_path, limit=1)
    assert x_train.shape == (1, 32, 32, 3)


# ---------------------------------------------------------------- missing data

def test_missing_data_dir_is_a_clear_error_naming_it(tmp_path, no_env_data_dir):
    with pytest.raises(DataNotFoundError, match="not a directory"):
        load_mnist(tmp_path / "nowhere")


def test_missing_mnist_lists_the_places_looked(tmp_path, no_env_data_dir):
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "mnist.npz") in message
    assert "VAEKIT_DATA_DIR" in message and "Looked in" in message


def test_missing_fashion_mnist_lists_debian_folder_among_places_looked(tmp_path, no_env_data_dir):
    with pytest.raises(DataNotFoundError) as error:
        load_fashion_mnist(tmp_path)
    assert "fashion-mnist" in str(error.value) and "no-debian-datasets" in str(error.value)


def test_missing_svhn_says_there_is_no_download(tmp_path, no_env_data_dir):
    with pytest.raises(DataNotFoundError) as error:
        load_svhn(tmp_path)
    assert "train_32x32.mat" in str(error.value) and "svhn" in str(error.value)


def test_environment_variable_pointing_nowhere_is_named_in_the_error(tmp_path, no_env_data_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match="VAEKIT_DATA_DIR is set to .*typo"):
        load_mnist()


# ---------------------------------------------------------------- broken files

def test_truncated_npz_is_reported_as_corrupt(tmp_path, no_env_data_dir):
    path = tmp_path / "mnist.npz"
    write_mnist_npz(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_mnist(tmp_path)


def test_garbage_npz_is_reported_as_corrupt(tmp_path, no_env_data_dir):
    (tmp_path / "mnist.npz").write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_mnist(tmp_path)


def test_npz_without_keras_layout_names_the_missing_arrays(tmp_path, no_env_data_dir):
    write_mnist_npz(tmp_path / "mnist.npz", y_test=None)
    with pytest.raises(ValueError, match=r"lacks arrays \['y_test'\]"):
        load_mnist(tmp_path)


def test_npz_with_more_labels_than_images_is_rejected(tmp_path, no_env_data_dir):
    write_mnist_npz(tmp_path / "mnist.npz", y_train=np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="7 labels but there are 5 images"):
        load_mnist(tmp_path)


def test_npz_with_float_images_is_rejected_as_wrong_file(tmp_path, no_env_data_dir):
    write_mnist_npz(tmp_path / "mnist.npz", x_train=np.zeros((5, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_mnist(tmp_path)


def test_npz_with_wrong_image_size_is_rejected(tmp_path, no_env_data_dir):
    write_mnist_npz(tmp_path / "mnist.npz", x_test=np.zeros((3, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"must be \(28, 28\)"):
        load_mnist(tmp_path)


def test_npz_with_labels_outside_0_to_9_is_rejected(tmp_path, no_env_data_dir):
    write_mnist_npz(tmp_path / "mnist.npz", y_test=np.array([0, 3, 12], dtype=np.uint8))
    with pytest.raises(ValueError, match="0..9"):
        load_mnist(tmp_path)


def test_empty_npz_arrays_are_rejected(tmp_path, no_env_data_dir):
    write_mnist_npz(tmp_path / "mnist.npz", x_test=np.zeros((0, 28, 28), np.uint8), y_test=np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match="no images"):
        load_mnist(tmp_path)


def test_truncated_gzip_idx_file_is_a_clear_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28))))[:40])
    with pytest.raises(ValueError, match="Could not read IDX file"):
        read_idx(path)


def test_idx_file_shorter_than_its_header_says_is_truncated(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28)))[:-100]))
    with pytest.raises(ValueError, match=r"truncated or corrupt: header says shape \(3, 28, 28\)"):
        read_idx(path)


def test_file_that_is_not_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ValueError, match="Could not read IDX file"):
        read_idx(path)


def test_idx_with_bad_magic_number_is_rejected(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(path)


def test_fashion_folder_with_labels_file_in_place_of_images_is_rejected(tmp_path, no_env_data_dir):
    folder = tmp_path / "fashion-mnist"
    write_fashion_folder(folder)
    labels = (folder / data.FASHION_FILES["y_test"]).read_bytes()
    (folder / data.FASHION_FILES["x_test"]).write_bytes(labels)
    with pytest.raises(ValueError, match=r"images must be \(28, 28\)"):
        load_fashion_mnist(tmp_path)


def test_truncated_mat_file_is_a_clear_error(tmp_path, no_env_data_dir):
    write_svhn_mat(tmp_path / "train_32x32.mat")
    write_svhn_mat(tmp_path / "test_32x32.mat")
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable SVHN .mat file"):
        load_svhn(tmp_path)


def test_mat_file_without_X_array_is_a_clear_error(tmp_path, no_env_data_dir):
    from scipy.io import savemat

    savemat(tmp_path / "train_32x32.mat", {"images": np.zeros((2, 2))})
    write_svhn_mat(tmp_path / "test_32x32.mat")
    with pytest.raises(ValueError, match="arrays 'X' and 'y'"):
        load_svhn(tmp_path)


def test_mat_file_with_labels_not_matching_images_is_rejected(tmp_path, no_env_data_dir):
    from scipy.io import savemat

    savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((3, 1), np.uint8)})
    write_svhn_mat(tmp_path / "test_32x32.mat")
    with pytest.raises(ValueError, match=r"y of shape \(n, 1\)"):
        load_svhn(tmp_path)


def test_mat_file_with_label_0_is_not_svhn_labelling(tmp_path, no_env_data_dir):
    write_svhn_mat(tmp_path / "train_32x32.mat", n=3, labels=[0, 1, 2])
    write_svhn_mat(tmp_path / "test_32x32.mat")
    with pytest.raises(ValueError, match="1..10"):
        load_svhn(tmp_path)


def test_binarize_refuses_unscaled_pixels():
    with pytest.raises(ValueError, match="Divide 0-255"):
        data.binarize(np.full((1, 4, 4), 200.0))


def test_dynamic_binarization_redraws_binary_batches_every_epoch():
    x = np.full((10, 4, 4, 1), 0.5, "float32")
    batches = data.DynamicBinarization(x, batch_size=4, seed=0)
    assert len(batches) == 3
    first = batches[0][0]
    assert first.shape == (4, 4, 4, 1) and set(np.unique(first)) == {0.0, 1.0}
    assert batches[2][0].shape == (2, 4, 4, 1)
    batches.on_epoch_end()
    assert not np.array_equal(batches[0][0], first)
    # Each pixel is 1 with probability equal to its intensity.
    bright = data.DynamicBinarization(np.full((2000, 4, 4, 1), 0.25, "float32"), batch_size=2000, seed=1)
    assert bright[0][0].mean() == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError, match="batch_size"):
        data.DynamicBinarization(x, batch_size=0)


def test_dynamic_binarization_redraws_each_image_every_epoch_not_only_reshuffles():
    """Images that differ: the first 4 pixels (0 or 1, drawn as they are) spell the image's number in
    binary, the other 12 are grey (0.5). So each row of a batch is traced to its image, and that
    image's grey pixels compared between epochs: a new order of the same draws would leave them equal."""
    n, ids = 12, np.arange(12)
    x = np.full((n, 16), 0.5, "float32")
    x[:, :4] = (ids[:, None] >> np.arange(4)) & 1
    batches = data.DynamicBinarization(x.reshape(n, 4, 4, 1), batch_size=5, seed=0)

    def epoch():
        drawn = np.concatenate([batches[i][0] for i in range(len(batches))]).reshape(n, 16)
        found = drawn[:, :4].astype(int) @ (1 << np.arange(4))  # each row's image, read from its pixels
        assert sorted(found) == list(ids)  # every image once per epoch, its 0/1 pixels kept
        return found, {int(i): row[4:] for i, row in zip(found, drawn)}

    orders, draws = [], []
    for _ in range(3):
        order, drawn = epoch()
        orders.append(order)
        draws.append(drawn)
        batches.on_epoch_end()
    for before, after in zip(draws, draws[1:]):
        redrawn = sum(not np.array_equal(before[i], after[i]) for i in ids)
        assert redrawn >= n - 1, f"only {redrawn} of {n} images got new pixels in the next epoch"
    assert not np.array_equal(orders[0], orders[1])  # and shuffled anew
    grey = np.stack([drawn[i] for drawn in draws for i in ids])
    assert set(np.unique(grey)) == {0.0, 1.0} and 0.35 < grey.mean() < 0.65


def test_test_limit_cuts_the_test_split_on_its_own(tmp_path):
    write_mnist_npz(tmp_path / "mnist.npz")
    (x_train, _), (x_test, y_test) = load_mnist(tmp_path, limit=3, test_limit=2)
    assert len(x_train) == 3 and len(x_test) == len(y_test) == 2
    (x_train, _), (x_test, _) = load_mnist(tmp_path, test_limit=1)
    assert len(x_test) == 1 and len(x_train) > 3
    with pytest.raises(ValueError, match="`test_limit` must be a positive integer"):
        load_mnist(tmp_path, test_limit=0)
