"""The argument checks of vaekit's notebook helpers (plots, explorer, experiments, export, data, evaluate).

Each names the argument, what it got and what it takes, and runs before anything is computed,
drawn or saved; the counts, batch sizes and seeds use `vaekit.guards.check_positive_int` and
`check_seed`, the images its `check_images`. The general ones (paths, names, numbers, switches,
sizes, ranges, lists of names, panels) come first, then those of the plots' own arguments.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from vaekit import _io
from vaekit.guards import check_images, check_positive_int
from vaekit.vae import VAE


def check_output_path(name: str, path, optional: bool = False, example: str = "name.png") -> Path | None:
    """A file to write, as a `Path`: a non-empty str or os.PathLike that is not an existing folder.

    None passes where `optional` (nothing is saved). Every function of vaekit that writes a file
    checks its path with this at its start, before it computes or draws anything.
    """
    if path is None and optional:
        return None
    check_file_path(name, path, or_else=", or None to save nothing" if optional else "")
    if not str(os.fspath(path)).strip():
        raise ValueError(f"`{name}` must name a file, got {path!r}; pass e.g. {example!r}.")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"`{name}` {_io.shown(path)} is an existing folder; pass a file in it, e.g. "
                         f"{_io.shown(path / example)}.")
    return path


def check_file_path(name: str, path, or_else: str = "") -> None:
    """Raise a TypeError unless `path` is a str or os.PathLike (bytes are refused); `or_else` adds what else passes."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a file path (str or pathlib.Path){or_else}, got {path!r} "
                        f"({type(path).__name__}).")


def check_name(name: str, value, example: str) -> str:
    """A folder or file name without a folder part: a non-empty str, no slashes, not "." or ".."."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a name (str) such as {example!r}, got {value!r} ({type(value).__name__}).")
    if not value.strip() or "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError(f"`{name}` must be a non-empty name without slashes, such as {example!r}, got {value!r}.")
    return value


def check_positive_number(name: str, value) -> float:
    """`value` as a float, or raise if it is not a finite number > 0 (a size, an extent, a step)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a finite number > 0, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return float(value)


def check_fraction(name: str, value) -> float:
    """`value` as a float, or raise if it is not a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number strictly between 0 and 1, got {value!r} ({type(value).__name__}).")
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must lie strictly between 0 and 1, got {value!r}.")
    return float(value)


def check_switch(name: str, value) -> bool:
    """`value` if it is True or False (a string such as "no" would count as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def check_optional_count(name: str, value) -> int | None:
    """None (the default: a square layout, all the images...), or a positive integer."""
    return None if value is None else check_positive_int(name, value)


def check_grid_size(name: str, value, what: str = "an n x n grid from -extent to +extent") -> int:
    """An integer >= 2: a grid or path with both of its ends."""
    value = check_positive_int(name, value)
    if value < 2:
        raise ValueError(f"`{name}` must be an integer >= 2 ({what}), got {value}.")
    return value


def check_size(name: str, value) -> tuple[float, float]:
    """A (width, height) pair of finite numbers > 0, in inches."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"`{name}` must be (width, height) in inches, two numbers > 0, got {value!r}.")
    return check_positive_number(f"{name}[0]", value[0]), check_positive_number(f"{name}[1]", value[1])


def check_value_range(name: str, value) -> tuple[float, float]:
    """(low, high): the pixel values drawn black and white, finite, low < high."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        raise TypeError(f"`{name}` must be a pair (low, high) of numbers, e.g. (0, 1) or (-1, 1), got {value!r}.")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"`{name}` must be (low, high) with finite low < high, e.g. (0, 1) or (-1, 1), got {value!r}.")
    return low, high


def check_values(name: str, values) -> np.ndarray:
    """A non-empty 1-D sequence of finite numbers, as float32."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or isinstance(values, (str, bytes)) or array.ndim != 1:
        raise TypeError(f"`{name}` must be a sequence of numbers, e.g. (-2, 0, 2), got {values!r}.")
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must hold one or more finite numbers, got {values!r}.")
    return array.astype(np.float32)


def check_names(name: str, value, length: int | None = None, optional: bool = False) -> list[str] | None:
    """A list of strings (metric names, titles); `length` of them if given; None passes where `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        one = f"; for one, pass [{value!r}]" if isinstance(value, str) else ""
        raise TypeError(f"`{name}` must be a list of strings{one}, got {value!r}.")
    if not value:
        raise ValueError(f"`{name}` is empty; pass at least one name{' or leave it out' if optional else ''}.")
    if length is not None and len(value) != length:
        raise ValueError(f"`{name}` has {len(value)} entries, one is needed per row or panel: {length}.")
    return list(value)


def check_panels(name: str, value, what: str, lengths: tuple[int, ...] = ()) -> Mapping:
    """A non-empty mapping of a title to `what`; with `lengths`, each a tuple or list of one of those lengths."""
    if not isinstance(value, Mapping):
        raise TypeError(f"`{name}` must be a dict of a title to {what}, got {type(value).__name__}.")
    if not value:
        raise ValueError(f"`{name}` is empty; it needs a title mapped to {what}.")
    for title, entry in value.items():
        if lengths and (not isinstance(entry, (tuple, list)) or len(entry) not in lengths):
            raise ValueError(f"`{name}[{title!r}]` must be {what}, got {_describe(entry)}.")
    return value


# --- the plots' own arguments: figures, panels, batches of images, latent codes, histories ----------

def check_figure(name: str, fig) -> None:
    """A matplotlib Figure, or anything else that can `savefig`."""
    if not hasattr(fig, "savefig"):
        raise TypeError(f"`{name}` must be a matplotlib Figure (what vaekit's plots return), got {type(fig).__name__}.")


def check_roc_panels(name: str, value) -> Mapping:
    """`plot_roc`'s panels: a title mapped to {model name: (scores, is_anomaly)}."""
    value = check_panels(name, value, "{model name: (scores, is_anomaly)}")
    for title, curves in value.items():
        check_panels(f"{name}[{title!r}]", curves, "(scores, is_anomaly)", lengths=(2,))
    return value


def check_batch_list(name: str, value) -> list:
    """A non-empty list of image batches (one per row), not a single batch."""
    if hasattr(value, "shape") or not isinstance(value, (list, tuple)):
        shape = f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""
        raise TypeError(f"`{name}` must be a list of image batches, one per row (e.g. [originals, reconstructions]), "
                        f"got {type(value).__name__}{shape}; for one row pass [images].")
    if not value:
        raise ValueError(f"`{name}` is empty; pass at least one batch of images.")
    return list(value)


def check_codes(name: str, model, z) -> np.ndarray:
    """Latent codes for `model`: a non-empty array (n, d), d the model's latent size where it is known."""
    try:
        z = np.asarray(keras.ops.convert_to_numpy(z) if hasattr(z, "shape") else z, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be an array of latent codes (n, d), got {type(z).__name__} ({error}).") from None
    expected = _code_shape(model)
    if z.ndim < 2 or len(z) == 0 or (expected is not None and (
            len(expected) != z.ndim - 1 or any(e is not None and e != s for e, s in zip(expected, z.shape[1:])))):
        wanted = f"(n, {', '.join('d' if e is None else str(e) for e in expected)})" if expected else "(n, d)"
        raise ValueError(f"`{name}` must be a non-empty array of codes {wanted} for this model, got shape {z.shape}.")
    return z


def check_dims(name: str, dims, size: int) -> list[int]:
    """Latent dimensions in 0..size - 1: one integer or a sequence of them; as a list."""
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        dims = [dims]
    if not isinstance(dims, (list, tuple, range, np.ndarray)) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"`{name}` must be latent dimensions (integers in 0..{size - 1}), e.g. [0, 1], got {dims!r}.")
    dims = [int(d) for d in dims]
    if not dims or any(not 0 <= d < size for d in dims):
        raise ValueError(f"`{name}` must be latent dimensions in 0..{size - 1}, got {dims}.")
    return dims


def check_code_array(name: str, codes, width: int | None = None) -> np.ndarray:
    """Latent codes, an array (n, d): d == `width` if given, else d >= 2; as float64."""
    codes = np.asarray(codes, dtype=np.float64)
    if width is not None and (codes.ndim != 2 or codes.shape[1] != width):
        raise ValueError(f"`{name}` must have shape (m, {width}), got {codes.shape}.")
    if codes.ndim != 2 or codes.shape[1] < 2:
        raise ValueError(f"`{name}` must have shape (n, d) with d >= 2, got {codes.shape}.")
    return codes


def check_one_code(name: str, z: np.ndarray, size: int) -> None:
    """One latent code, flattened: the decoder's input has `size` numbers."""
    if z.shape != (size,):
        raise ValueError(f"`{name}` must be one code of length {size} (the decoder's input), got shape {np.shape(z)}.")


def check_encode(name: str, encode) -> None:
    """A function from a batch of images to their codes."""
    if not callable(encode):
        raise TypeError(f"`{name}` must be a function from a batch of images to their codes, e.g. "
                        f"`lambda x: vae.encoder(x)[0]` (the means), got {type(encode).__name__}.")


def check_image_pair(x_start, x_end) -> np.ndarray:
    """`interpolate`'s two end images, of one shape, stacked into a checked batch of two."""
    if np.shape(x_start) != np.shape(x_end):
        raise ValueError(f"`x_start` and `x_end` must be two images of one shape, got {np.shape(x_start)} "
                         f"and {np.shape(x_end)}.")
    return check_images("x_start, x_end", np.stack([np.asarray(x_start), np.asarray(x_end)]), value_range=None)


def check_encoded(codes) -> np.ndarray:
    """What `interpolate`'s `encode` returned for its two images: one batch of two codes, as float32."""
    if isinstance(codes, (list, tuple, dict)):
        raise TypeError(f"`encode` returned {len(codes)} outputs, not one batch of codes: an encoder gives "
                        "(z_mean, z_log_var, z); pass `lambda x: vae.encoder(x)[0]`, the means.")
    codes = float32_array(codes)
    if codes.ndim < 2 or len(codes) != 2:
        raise ValueError(f"`encode` must return one code per image, an array (2, d) for the two images; "
                         f"it returned shape {codes.shape}.")
    return codes


def check_images_to_draw(images) -> np.ndarray:
    """Images to draw, as float32 (n, h, w) or (n, h, w, c): checked as `check_images` does (any range),
    flat square images unflattened, a single channel dropped."""
    if getattr(images, "dtype", None) == bool:  # masks and binarised images draw as 0 and 1
        images = np.asarray(images, dtype=np.float32)
    # Numeric, non-empty and finite (a NaN pixel would be drawn as a blank, not reported).
    images = float32_array(check_images("images", images, value_range=None))
    if images.ndim == 2:  # flat vectors: square grayscale images
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"Flat images of length {images.shape[1]} are not square; reshape them first.")
        images = images.reshape(-1, side, side)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4):
        raise ValueError(f"Expected a batch of images (n, h, w[, c]), got shape {images.shape}.")
    return images


def float32_array(values) -> np.ndarray:
    """A NumPy float32 array of `values` (an array or backend tensor).

    Under a mixed-precision policy decoders give float16 or bfloat16: `ops.convert_to_numpy`
    reads a PyTorch bfloat16 tensor (NumPy cannot), and float32 is what matplotlib accepts.
    """
    return np.asarray(keras.ops.convert_to_numpy(values), dtype=np.float32)


def _code_shape(model) -> tuple | None:
    """The shape of one code that `model` (a VAE or a decoder) takes, where it is known."""
    if isinstance(model, VAE):
        model = model.decoder
    try:
        shape = tuple(model.input_shape[1:])
    except Exception:  # no input_shape, or several inputs (a conditional decoder)
        return None
    return shape if all(s is None or isinstance(s, numbers.Integral) for s in shape) else None


def check_history(name: str, history) -> dict:
    """The per-epoch numbers of a `keras.callbacks.History`, a `fit_resumable` result or a dict."""
    logs = history.history if hasattr(history, "history") else history
    if not isinstance(logs, Mapping):
        raise TypeError(f"`{name}` must be what `fit` returns (a History) or a dict of per-epoch values, "
                        f"got {type(history).__name__}.")
    if not logs:
        raise ValueError(f"`{name}` holds no metrics: train first (or pass `fit`'s result).")
    return dict(logs)


def check_recorded(name: str, keys: list[str], every_logs: list[dict]) -> None:
    """Each key must be a metric at least one of the histories recorded."""
    recorded = list(dict.fromkeys(key for logs in every_logs for key in logs))
    missing = [key for key in keys if key not in recorded]
    if missing:
        raise ValueError(f"`{name}` names {missing[0]!r}, which the history does not hold; it holds {recorded}.")


def _describe(value) -> str:
    return f"{len(value)} items" if isinstance(value, (tuple, list)) else type(value).__name__
