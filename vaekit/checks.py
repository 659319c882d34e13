"""vaekit's checks: arguments, images and labels, each checked in one place.

Each check raises early with a message that names the argument, the value it got
and what is accepted, so a wrong setting never surfaces as a deep backend traceback.
`images` is the one image check: `vaekit.VAE.fit` runs it on the training data,
the loaders, metrics and plots on theirs. `builder_arguments` holds the checks that
vaekit's builders run before building (`vaekit/__init__.py` applies them).
None of this is needed by a copied builder: `vaekit/vae.py` works without it.
"""

from __future__ import annotations

import functools
import inspect
import math
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


def images(name: str, x, value_range: tuple[float, float] | None = (0.0, 1.0), shape: Sequence[int] | None = None,
           floats_only: bool = False, as_numpy: bool = True):
    """Raise a clear error if `x` is not a batch of images a model can use; return it.

    In this order: a real numeric array (lists become NumPy arrays); a non-empty batch
    (n, ...); images of `shape`, e.g. (28, 28, 1), if given (None entries match any
    size); a float dtype if `floats_only` (what training needs); no NaN or infinity;
    values inside `value_range` (None: any). Each message names `name` and the usual
    fix. Returns NumPy, or with `as_numpy=False` backend tensors as they were (checked
    on their device, not copied).
    """
    import keras
    from keras import ops

    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`{name}` must be a numeric array of images, got {type(x).__name__}.")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"`{name}` must be a rectangular array of images ({error}).") from error
    if as_numpy and not isinstance(x, np.ndarray):
        x = np.asarray(ops.convert_to_numpy(x))
    is_numpy = isinstance(x, np.ndarray)
    dtype = x.dtype.name if is_numpy else keras.backend.standardize_dtype(x.dtype)
    is_float = dtype.startswith(("float", "bfloat"))
    if dtype == "bool":
        raise TypeError(f"`{name}` must be a real numeric array, got dtype bool; use `x.astype(\"float32\")`.")
    if not (is_float or dtype.startswith(("int", "uint"))):
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {dtype}.")
    batch_shape = tuple(x.shape)
    if len(batch_shape) < 2 or 0 in batch_shape:
        raise ValueError(f"`{name}` must be a non-empty batch (n, ...) of images, got shape {batch_shape}.")
    if shape is not None and not _shape_matches(batch_shape[1:], shape):
        hint = ""
        if _shape_matches((*batch_shape[1:], 1), shape):
            hint = " Add the channel axis with `x[..., None]`."
        elif None not in shape and math.prod(batch_shape[1:]) == math.prod(shape):
            hint = f" Reshape with `x.reshape(-1, {', '.join(map(str, shape))})`."
        raise ValueError(f"`{name}` must hold images of shape {tuple(shape)}, got batch shape {batch_shape}.{hint}")
    if is_numpy:
        low, high = x.min(), x.max()  # NaN and infinities show in the minimum or maximum
        finite = bool(np.isfinite(low) and np.isfinite(high))
    else:  # a backend tensor: reduce it on its device rather than copy it
        low, high = ops.convert_to_numpy(ops.min(x)), ops.convert_to_numpy(ops.max(x))
        finite = not is_float or bool(ops.convert_to_numpy(ops.all(ops.isfinite(x))))
    if floats_only and not is_float:
        fix = "x.astype(\"float32\") / 255" if high > 1 else "x.astype(\"float32\")"
        low_end, high_end = value_range if value_range is not None else (0.0, 1.0)
        if (low_end, high_end) == (-1.0, 1.0) and high > 1:  # a tanh model's range
            fix = "x.astype(\"float32\") / 127.5 - 1"
        raise TypeError(f"`{name}` has dtype {dtype}; the model trains on floats in [{low_end:g}, {high_end:g}]: "
                        f"use `{fix}`.")
    if not finite:
        count = int(np.sum(~np.isfinite(ops.convert_to_numpy(x))))
        raise ValueError(f"`{name}` contains NaN or infinite values ({count} of {math.prod(batch_shape)}); "
                         "remove those images or replace the values (`np.nan_to_num(x)`).")
    if value_range is not None and (low < value_range[0] or high > value_range[1]):
        raise ValueError(f"`{name}` values must lie in [{value_range[0]}, {value_range[1]}], "
                         f"got [{float(low):.4g}, {float(high):.4g}].{_range_hint(low, high, value_range)}")
    return x


def _shape_matches(shape, expected) -> bool:
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


def _range_hint(low, high, value_range) -> str:
    if tuple(value_range) == (-1.0, 1.0) and high > 1.5:  # a tanh model's range
        return " Scale 0-255 pixel values with `x / 127.5 - 1`."
    if tuple(value_range) != (0.0, 1.0):
        return ""
    if high > 1.5:
        return " Divide 0-255 pixel values by 255: `x / 255`."
    if low >= -1 and high <= 1:
        return " Map [-1, 1] images to [0, 1] with `(x + 1) / 2`."
    return ""


def batches(name: str, data, value_range=(0.0, 1.0), shape=None):
    """`images` for anything `fit` takes; returns `data`, ready to pass on.

    An array is checked in full (cheap next to an epoch). A `keras.utils.PyDataset`,
    `tf.data.Dataset`, generator or other iterable of batches is checked on its
    first batch (its inputs, for batches of (x, y)); a generator is returned as a new
    generator that still yields that first batch.
    """
    import keras

    def check(x, label=name):
        return images(label, x, value_range, shape, floats_only=True, as_numpy=False)

    if hasattr(data, "shape") or isinstance(data, (list, np.ndarray)) or data is None:
        return check(data)
    if isinstance(data, keras.utils.PyDataset):
        first = data[0]
    elif inspect.isgenerator(data):
        first = next(data, None)
        data = _generator_from(first, data)
    elif hasattr(data, "__iter__"):  # tf.data.Dataset, torch DataLoader
        first = next(iter(data), None)
    else:
        return check(data)  # refuses it with a clear message
    if first is None:
        raise ValueError(f"`{name}` yields no batches.")
    try:
        check(first[0] if isinstance(first, (tuple, list)) else first)
    except (TypeError, ValueError) as error:
        raise type(error)(f"In the first batch: {error}") from None
    return data


def _generator_from(first, rest):
    yield first
    yield from rest


def _one_per_item(name: str, values: np.ndarray, what: str = "", fix: str = "") -> np.ndarray:
    """`values` of shape (n,) or (n, 1) as (n,); any other shape refused (`what` and `fix` extend the message)."""
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"`{name}` must have shape (n,) or (n, 1){what}, got {values.shape}.{fix}")
    return values


def labels(name: str, y, num_images: int, num_classes: int | None = None) -> np.ndarray:
    """Check class labels: integers, one per image (shape (n,) or (n, 1)), in [0, num_classes)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)  # 3.0 is a fine label; 3.5 is not
        else:
            raise TypeError(f"`{name}` must hold integer class labels, got dtype {y.dtype}.")
    y = _one_per_item(name, y)
    if len(y) != num_images:
        raise ValueError(f"`{name}` has {len(y)} labels but there are {num_images} images; they must match one to one.")
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"`{name}` must lie in 0..{num_classes - 1}, got [{y.min()}, {y.max()}].")
    return y


def image_label_pair(name: str, inputs, fix: str):
    """A ConditionalVAE's `x`, (images, labels) or {"images": ..., "labels": ...}, split for checking.

    Returns ((images_name, labels_name), (images, labels)), the names as an error should
    show them (`x[0]`, `x['labels']`...). Anything else raises TypeError naming `name` and
    ending with `fix`, the call that would work.
    """
    if isinstance(inputs, dict):
        missing = {"images", "labels"} - set(inputs)
        if missing:
            raise ValueError(f"`{name}` must have the keys 'images' and 'labels'; it lacks {sorted(missing)}.")
        return (f"{name}['images']", f"{name}['labels']"), (inputs["images"], inputs["labels"])
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        return (f"{name}[0]", f"{name}[1]"), tuple(inputs)
    raise TypeError(f"`{name}` of a ConditionalVAE must be (images, labels) or {{'images': ..., 'labels': ...}}, "
                    f"got {type(inputs).__name__}: {fix}")


def scores(name: str, values) -> np.ndarray:
    """Check per-example scores (e.g. anomaly scores): a non-empty real 1-D array, (n,) or (n, 1), all finite; as float64."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"`{name}` must be a 1-D array of numbers, one per example, got {type(values).__name__}.")
    values = np.asarray(values)
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"`{name}` must hold real numbers (one score per example), got dtype {values.dtype}.")
    values = _one_per_item(name, values, what=", one score per example",
                           fix=" Per-image errors come from averaging over the pixels, e.g. `((x - r) ** 2).mean(axis=(1, 2, 3))`.")
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
    y = _one_per_item(name, y)
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


def checked(builder: Callable) -> Callable:
    """`builder` that first passes all its arguments (defaults filled in) through its check.

    The check is `builder_arguments[builder.__name__]`: it takes the builder's arguments
    by name and returns them checked (raising a clear error otherwise) and normalised.
    The result keeps the builder's name, docstring and signature, and
    `inspect.getsource` of it gives the builder's own source (through `__wrapped__`).
    """
    check = builder_arguments[builder.__name__]
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


# --- the builders' argument checks -------------------------------------------------------
# Each takes a builder's arguments (defaults filled in) and returns them checked and
# normalised (tuples of ints). `beta`, `reconstruction` and the KL schedules are the VAE's: `VAE` checks them.


def _image_and_filters(input_shape, filters):
    """The shape must halve once per strided layer, so its sides divide by 2 ** len(filters)."""
    filters = positive_ints("filters", filters)
    return image_shape("input_shape", input_shape, divisible_by=2 ** len(filters)), filters


def _conv_autoencoder(input_shape, filters):
    return dict(input_shape=image_shape("input_shape", input_shape, divisible_by=4),
                filters=positive_int("filters", filters))


def _conv_vae(latent_dim, hidden_units, input_shape, filters, seed, beta, reconstruction):
    input_shape, filters = _image_and_filters(input_shape, filters)
    return dict(input_shape=input_shape, filters=filters, hidden_units=positive_int("hidden_units", hidden_units),
                latent_dim=positive_int("latent_dim", latent_dim), seed=optional_seed("seed", seed),
                beta=beta, reconstruction=reconstruction)


def _conditional_conv_vae(num_classes, latent_dim, hidden_units, input_shape, filters, seed, beta, reconstruction):
    return dict(num_classes=positive_int("num_classes", num_classes),
                **_conv_vae(latent_dim, hidden_units, input_shape, filters, seed, beta, reconstruction))


def _deterministic_autoencoder(vae, name):
    from vaekit.vae import VAE, is_functional

    if not isinstance(vae, VAE):
        raise TypeError(f"`vae` must be a vaekit.VAE, got {type(vae).__name__}.")
    if not is_functional(vae.encoder):
        raise TypeError("`vae.encoder` must be a functional keras.Model (one whose first output is z_mean); "
                        f"got a subclassed {type(vae.encoder).__name__}.")
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string, got {name!r}.")
    return dict(vae=vae, name=name)


def _dense_autoencoder(input_shape, hidden_units, latent_dim):
    return dict(input_shape=image_shape("input_shape", input_shape),
                hidden_units=positive_ints("hidden_units", hidden_units),
                latent_dim=positive_int("latent_dim", latent_dim))


def _strided_conv_autoencoder(input_shape, filters):
    input_shape, filters = _image_and_filters(input_shape, filters)
    return dict(input_shape=input_shape, filters=filters)


def _fc_vae(latent_dim, hidden_units, input_shape, seed, beta, reconstruction, kl_warmup_steps, free_bits):
    return dict(input_shape=image_shape("input_shape", input_shape),
                hidden_units=positive_ints("hidden_units", hidden_units),
                latent_dim=positive_int("latent_dim", latent_dim), seed=optional_seed("seed", seed),
                beta=beta, reconstruction=reconstruction, kl_warmup_steps=kl_warmup_steps, free_bits=free_bits)


builder_arguments: dict[str, Callable[..., dict]] = {
    "conv_autoencoder": _conv_autoencoder,
    "conv_vae": _conv_vae,
    "conditional_conv_vae": _conditional_conv_vae,
    "deterministic_autoencoder": _deterministic_autoencoder,
    "fc_autoencoder": _dense_autoencoder,
    "fcn_autoencoder": _dense_autoencoder,
    "strided_conv_autoencoder": _strided_conv_autoencoder,
    "fc_vae": _fc_vae,
}
