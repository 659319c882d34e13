"""Data sets as float32 images in [0, 1] with a channel axis, offline first.

Each loader returns `(x_train, y_train), (x_test, y_test)`. Files are looked up, in
order, in the `data_dir` argument, in `$VAEKIT_DATA_DIR`, in Debian's
`/usr/share/datasets/<name>` (Fashion-MNIST), and finally through
`keras.datasets` (which downloads and caches in `~/.keras/datasets`).
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np

from vaekit._checks import check_file_path, check_optional_count, check_switch
from vaekit.guards import check_images, check_labels, check_positive_int, check_seed

DATA_DIR_VARIABLE = "VAEKIT_DATA_DIR"
DEBIAN_DIR = Path("/usr/share/datasets")
FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


class DataNotFoundError(FileNotFoundError):
    """A data set is in none of the places vaekit looks; the message lists them."""


def load_mnist(data_dir: str | os.PathLike | None = None, limit: int | None = None,
               binarize: bool = False, seed: int = 0, test_limit: int | None = None):
    """MNIST: 60,000 + 10,000 images (n, 28, 28, 1) in [0, 1], labels 0-9.

    Reads `mnist.npz` (keras layout). `limit` keeps the first images of each split,
    `test_limit` (if given) those of the test split instead;
    `binarize=True` draws each pixel once as Bernoulli(intensity) with `seed`
    (static binarisation; see `binarize` for a fresh draw per epoch).
    """
    limit, test_limit, binarize, seed = _check_options(data_dir, limit, test_limit, binarize, seed)
    candidates = _candidates(data_dir, "mnist.npz")
    path = _first_existing(candidates)
    if path is not None:
        arrays = _read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    else:
        arrays = _keras_download("mnist", candidates)
    return _finish(arrays, limit, test_limit, binarize, seed, image_shape=(28, 28), source=path or "keras.datasets.mnist")


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, limit: int | None = None,
                       binarize: bool = False, seed: int = 0, test_limit: int | None = None):
    """Fashion-MNIST: 60,000 + 10,000 images (n, 28, 28, 1) in [0, 1], labels 0-9.

    Reads the four original IDX `.gz` files from a `fashion-mnist/` folder (or the
    folder itself). Options as in `load_mnist`.
    """
    limit, test_limit, binarize, seed = _check_options(data_dir, limit, test_limit, binarize, seed)
    folders = [p.parent for p in _candidates(data_dir, "fashion-mnist/x")]
    folders += [p.parent for p in _candidates(data_dir, "x")]
    folders.append(DEBIAN_DIR / "fashion-mnist")
    folders = list(dict.fromkeys(folders))
    found = next((f for f in folders if all((f / name).is_file() for name in FASHION_FILES.values())), None)
    if found is not None:
        arrays = tuple(read_idx(found / FASHION_FILES[key]) for key in ("x_train", "y_train", "x_test", "y_test"))
    else:
        arrays = _keras_download("fashion_mnist", [f / FASHION_FILES["x_train"] for f in folders])
    return _finish(arrays, limit, test_limit, binarize, seed, image_shape=(28, 28),
                   source=found or "keras.datasets.fashion_mnist")


def load_svhn(data_dir: str | os.PathLike | None = None, limit: int | None = None, test_limit: int | None = None):
    """SVHN cropped digits: 73,257 + 26,032 images (n, 32, 32, 3) in [0, 1], labels 0-9.

    Reads the standard `train_32x32.mat` and `test_32x32.mat` (from
    http://ufldl.stanford.edu/housenumbers/), in `data_dir`, `$VAEKIT_DATA_DIR` or an
    `svhn/` folder in either. The files label the digit 0 as 10; it comes back as 0.
    keras.datasets has no SVHN, so there is no download fallback.
    """
    limit, test_limit, _, _ = _check_options(data_dir, limit, test_limit, False, 0)
    splits, found = [], []
    for split in ("train", "test"):
        candidates = _candidates(data_dir, SVHN_FILES[split]) + _candidates(data_dir, f"svhn/{SVHN_FILES[split]}")
        path = _first_existing(candidates)
        if path is None:
            raise DataNotFoundError(_not_found_message("SVHN", candidates, download=False))
        splits.extend(_read_svhn_mat(path))
        found.append(str(path))
    return _finish(tuple(splits), limit, test_limit, binarize_images=False, seed=0, image_shape=(32, 32, 3),
                   source=" and ".join(found))


def binarize(x, seed: int | None = None) -> np.ndarray:
    """Draw binary images with P(pixel = 1) = intensity.

    Called once per epoch on the training set this is "dynamic binarisation", the
    protocol behind published MNIST log-likelihoods; a Bernoulli decoder's BCE is then
    an exact negative log-likelihood.
    """
    seed = check_seed("seed", seed)
    x = check_images("x", x)
    rng = np.random.default_rng(seed)
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


class DynamicBinarization(keras.utils.PyDataset):
    """Shuffled batches of `x` whose pixels are redrawn as Bernoulli(intensity) every epoch.

    Pass it to `fit` in place of the array: `vae.fit(DynamicBinarization(x_train), epochs=...)`.
    Redrawing every epoch is the standard protocol for binarised-MNIST likelihoods and
    regularises better than one fixed draw.
    """

    def __init__(self, x, batch_size: int = 128, seed: int | None = None, **kwargs):
        self.batch_size = check_positive_int("batch_size", batch_size)
        seed = check_seed("seed", seed)
        super().__init__(**kwargs)
        self.x = check_images("x", x)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        batch = self.x[rows]
        return ((self.rng.random(batch.shape, dtype=np.float32) < batch).astype(np.float32),)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as a uint8 numpy array."""
    check_file_path("path", path)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:  # missing, not gzip, or cut short
        raise ValueError(f"Could not read IDX file {path}: {error}. Download it again.") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number {data[:4]!r}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"file has {len(data)} bytes. Download it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _check_options(data_dir, limit, test_limit, binarize_images, seed):
    """The loaders' arguments, checked before any file is looked for: (limit, test_limit, binarize, seed)."""
    if data_dir is not None:
        if isinstance(data_dir, bytes) or not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"`data_dir` must be a folder path (str or pathlib.Path), or None to use "
                            f"${DATA_DIR_VARIABLE}, got {data_dir!r} ({type(data_dir).__name__}).")
        if not str(os.fspath(data_dir)).strip():
            raise ValueError(f"`data_dir` must name a folder, got {data_dir!r}; leave it out (None) to use "
                             f"${DATA_DIR_VARIABLE}.")
    limit = check_optional_count("limit", limit)
    test_limit = check_optional_count("test_limit", test_limit)
    return limit, test_limit, check_switch("binarize", binarize_images), check_seed("seed", seed)


def _candidates(data_dir, name: str) -> list[Path]:
    dirs = []
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise DataNotFoundError(
                f"`data_dir` {str(data_dir)!r} is not a directory. Pass the folder that holds "
                f"{name.split('/')[0]!r}, or leave `data_dir` out to use ${DATA_DIR_VARIABLE}."
            )
        dirs.append(Path(data_dir))
    if os.environ.get(DATA_DIR_VARIABLE):
        env_dir = Path(os.environ[DATA_DIR_VARIABLE])
        # A mistyped variable would otherwise be skipped silently and end in a download attempt.
        if not env_dir.is_dir():
            raise DataNotFoundError(
                f"${DATA_DIR_VARIABLE} is set to {str(env_dir)!r}, which is not a directory. "
                f"Point it at the folder that holds the data, or unset it."
            )
        dirs.append(env_dir)
    return [d / name for d in dirs]


def _first_existing(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _not_found_message(name: str, looked: list[Path], download: bool) -> str:
    places = "\n".join(f"  - {p}" for p in looked) or "  - (no data_dir given and $VAEKIT_DATA_DIR is not set)"
    tail = " keras.datasets could not download it either (no internet?)." if download else ""
    return (
        f"{name} not found. Looked in:\n{places}\n{tail}\n"
        f"Put the files in a folder and pass `data_dir=...` or set ${DATA_DIR_VARIABLE} to it."
    )


def _keras_download(name: str, looked: list[Path]):
    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as error:  # no network, blocked host, bad cache: all mean "not found"
        raise DataNotFoundError(_not_found_message(name, looked, download=True)) from error
    return x_train, y_train, x_test, y_test


def _read_npz(path: Path, keys):
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = archive.files
            arrays = {k: archive[k] for k in keys if k in files}
    # np.load raises any of these for a cut-short or overwritten archive; pickled
    # object arrays (ValueError) are refused because loading them runs code.
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{path} is truncated or corrupt ({type(error).__name__}: {error}). Download it again.") from error
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks arrays {missing}; expected keras' layout {list(keys)}, found {files}.")
    return tuple(arrays[k] for k in keys)


def _read_svhn_mat(path: Path):
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
        x, y = mat["X"], mat["y"]
    except (OSError, EOFError, ValueError, KeyError, TypeError, MatReadError, zlib.error) as error:
        raise ValueError(
            f"{path} is not a readable SVHN .mat file with arrays 'X' and 'y' "
            f"({type(error).__name__}: {error}). Download it again."
        ) from error
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.ndim != 2 or y.shape != (x.shape[3], 1):
        raise ValueError(f"{path}: expected X of shape (32, 32, 3, n) and y of shape (n, 1), got {x.shape} and {y.shape}.")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise ValueError(f"{path}: SVHN labels must be 1..10 (10 is the digit 0), got [{y.min()}, {y.max()}].")
    return np.transpose(x, (3, 0, 1, 2)), y.reshape(-1) % 10


def _finish(arrays, limit, test_limit, binarize_images, seed, image_shape, source):
    x_train, y_train, x_test, y_test = arrays
    out = []
    for split, x, y, keep in (("train", x_train, y_train, limit),
                              ("test", x_test, y_test, limit if test_limit is None else test_limit)):
        _check_raw_split(f"{source} ({split})", x, y, image_shape)
        x, y = x[:keep], y[:keep]
        x = x.astype("float32") / 255.0
        if x.ndim == 3:
            x = x[..., None]
        if binarize_images:
            x = binarize(x, seed)
        out.append((x, y.reshape(-1).astype("int64")))
    return tuple(out)


def _check_raw_split(where: str, x, y, image_shape) -> None:
    """Files hold uint8 pixels 0-255 and labels 0-9; anything else is a wrong or damaged file."""
    if x.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 pixels 0-255, got dtype {x.dtype}. Is this the right file?")
    if x.shape[1:] != tuple(image_shape) and x.shape[1:] != (*image_shape, 1):
        raise ValueError(f"{where}: images must be {tuple(image_shape)}, got array of shape {x.shape}.")
    if len(x) == 0:
        raise ValueError(f"{where}: no images (shape {x.shape}). The file is empty or damaged; download it again.")
    try:
        check_labels("labels", y, 10, length=len(x))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from error
