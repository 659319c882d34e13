"""Argument checks shared by the builders and the data helpers.

Each check raises early with a message that names the argument, the value it got
and what is accepted, so a wrong setting never surfaces as a deep backend traceback.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence

import numpy as np


def positive_int(name: str, value) -> int:
    """Return `value` as an int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive integer, got {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer (>= 1), got {value}.")
    return int(value)


def positive_ints(name: str, values, length: int | None = None) -> tuple[int, ...]:
    """Return a tuple of positive ints (a single int is accepted where length is None)."""
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0:
        raise TypeError(f"`{name}` must be a positive integer or a non-empty sequence of them, got {values!r}.")
    if length is not None and len(values) != length:
        raise ValueError(f"`{name}` must have {length} entries, got {len(values)}: {values!r}.")
    return tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(values))


def non_negative_float(name: str, value) -> float:
    """Return `value` as a float, or raise if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a non-negative number, got {value!r} ({type(value).__name__}).")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
    return float(value)


def one_of(name: str, value, accepted: Sequence[str]) -> str:
    """Return `value` if it is one of `accepted` strings, else raise."""
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"`{name}` must be one of {list(accepted)}, got {value!r}.")
    return value


def optional_seed(name: str, value) -> int | None:
    """Return `value` if it is None or an integer >= 0 (a random seed), else raise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be None or an integer >= 0, got {value!r} ({type(value).__name__}).")
    if value < 0:
        raise ValueError(f"`{name}` must be None or an integer >= 0, got {value}.")
    return int(value)


def image_shape(name: str, value, divisible_by: int = 1, channels: Sequence[int] | None = None) -> tuple[int, int, int]:
    """Check an (height, width, channels) shape whose sides divide by `divisible_by`."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"`{name}` must be a tuple (height, width, channels), got {value!r} ({type(value).__name__}).")
    if len(value) != 3:
        raise ValueError(f"`{name}` must be (height, width, channels), 3 entries, got {value!r}.")
    height, width, depth = positive_ints(name, value, length=3)
    if height % divisible_by or width % divisible_by:
        raise ValueError(
            f"`{name}` height and width must be divisible by {divisible_by} "
            f"(the strided layers halve them), got {value!r}."
        )
    if channels is not None and depth not in channels:
        raise ValueError(f"`{name}` must have {' or '.join(map(str, channels))} channels, got {depth}.")
    return height, width, depth


def images(name: str, x, value_range: tuple[float, float] | None = (0.0, 1.0),
           shape: Sequence[int] | None = None) -> np.ndarray:
    """Check an image batch: a non-empty real array, finite, inside `value_range`; as NumPy.

    `shape`, if given, is the shape of one image, e.g. (28, 28, 1). Integer pixels pass
    (the data helpers take them); `VAE.fit` also wants floats. The checks themselves are
    `vaekit.vae.check_images`, the one implementation `VAE.fit` runs too.
    """
    from vaekit.vae import check_images  # here, not at the top: importing it imports keras

    if hasattr(x, "shape") and not isinstance(x, np.ndarray):
        x = np.asarray(x)  # a backend tensor: the callers work in NumPy
    return np.asarray(check_images(x, name, image_shape=shape, value_range=value_range, floats_only=False))


def labels(name: str, y, num_images: int, num_classes: int | None = None) -> np.ndarray:
    """Check class labels: integers, one per image (shape (n,) or (n, 1)), in [0, num_classes)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)  # 3.0 is a fine label; 3.5 is not
        else:
            raise TypeError(f"`{name}` must hold integer class labels, got dtype {y.dtype}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"`{name}` must have shape (n,) or (n, 1), got {y.shape}.")
    if len(y) != num_images:
        raise ValueError(f"`{name}` has {len(y)} labels but there are {num_images} images; they must match one to one.")
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"`{name}` must lie in 0..{num_classes - 1}, got [{y.min()}, {y.max()}].")
    return y


def scores(name: str, values) -> np.ndarray:
    """Check per-example scores (e.g. anomaly scores): a non-empty real 1-D array, (n,) or (n, 1), all finite; as float64."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"`{name}` must be a 1-D array of numbers, one per example, got {type(values).__name__}.")
    values = np.asarray(values)
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"`{name}` must hold real numbers (one score per example), got dtype {values.dtype}.")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"`{name}` must have shape (n,) or (n, 1), one score per example, got {values.shape}. "
                         "Per-image errors come from averaging over the pixels, e.g. `((x - r) ** 2).mean(axis=(1, 2, 3))`.")
    if values.size == 0:
        raise ValueError(f"`{name}` is empty; it needs one score per example.")
    values = values.astype(np.float64)
    bad = int(np.sum(~np.isfinite(values)))
    if bad:
        raise ValueError(f"`{name}` contains NaN or infinite values ({bad} of {values.size}); every score must be finite.")
    return values


def binary_labels(name: str, y, num_items: int, meaning: str = "1/True = anomaly, 0/False = normal") -> np.ndarray:
    """Check two-class labels, one per item: booleans, or numbers that are all 0 or 1; as a bool array.

    Class labels (digits 0-9) are refused with the fix, since reading every non-zero label
    as True would silently give another number than the one asked for.
    """
    if isinstance(y, (str, bytes)) or y is None:
        raise TypeError(f"`{name}` must be an array of 0/1 or True/False labels ({meaning}), got {type(y).__name__}.")
    y = np.asarray(y)
    if y.dtype != bool and not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise TypeError(f"`{name}` must hold 0/1 or True/False labels ({meaning}), got dtype {y.dtype}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"`{name}` must have shape (n,) or (n, 1), got {y.shape}.")
    if len(y) != num_items:
        raise ValueError(f"`{name}` has {len(y)} labels for {num_items} scores: they must have the same length, "
                         "one label per score.")
    if y.dtype != bool:
        found = np.unique(y[~np.isnan(y)] if np.issubdtype(y.dtype, np.floating) else y)
        if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any():
            raise ValueError(f"`{name}` contains NaN; every label must be 0 or 1 ({meaning}).")
        if not np.all(np.isin(found, (0, 1))):
            shown = ", ".join(f"{v:g}" for v in found[:10]) + (", ..." if len(found) > 10 else "")
            raise ValueError(f"`{name}` must be binary ({meaning}), got {len(found)} distinct values: {shown}. "
                             "For class labels, mark which are anomalies, e.g. `labels != normal_class`.")
    return y.astype(bool)


def checked(builder: Callable, check: Callable[..., dict]) -> Callable:
    """`builder` that first passes all its arguments (defaults filled in) through `check`.

    `check` takes the builder's arguments by name and returns them checked (raising a
    clear error otherwise) and normalised; the builder is then called with those. The
    result keeps the builder's name, docstring and signature, and `inspect.getsource`
    of it gives the builder's own source (through `__wrapped__`).
    """
    signature = inspect.signature(builder)

    @functools.wraps(builder)
    def checked_builder(*args, **kwargs):
        try:
            arguments = signature.bind(*args, **kwargs)
        except TypeError as error:  # Python's own message lacks the function's name
            raise TypeError(f"{builder.__name__}() {error}; it takes {list(signature.parameters)}.") from None
        arguments.apply_defaults()
        return builder(**check(**arguments.arguments))

    return checked_builder
