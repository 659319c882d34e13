"""The guards every vaekit model runs: a clear error before any work, a stop at the first NaN.

* `ChecksItsData`: `fit`, `evaluate` and `predict` check their images first (`check_images`:
  0-255 pixels, NaN, a missing channel axis are refused with the fix); `vae.VAE` and
  `vae.Autoencoder` are built on it,
* `StopOnNonFiniteLoss`: `VAE.fit` stops at the first NaN or infinite loss, puts back the
  weights of the epoch's start and says where and why (`NonFiniteLossError`),
* `check_devices`: several devices are refused where Keras would train a model wrongly,
* `check_positive_int`, `check_image_shape`, ...: the argument checks each builder of
  `models.py` runs at its top, so a wrong size is named (the argument, what was given,
  what is allowed) before anything is built.

The file imports only Keras, NumPy and the standard library. To use a builder without
vaekit, paste this file, then `vae.py`, then the builder into one file of your own (drop
their `from vaekit... import` statements); it builds, checks and trains as in vaekit.
"""

import contextlib
import inspect
import math
import numbers
import sys
import warnings

import keras
import numpy as np
from keras import ops

PIXEL_RANGE = (0.0, 1.0)  # every VAE decoder ends in a sigmoid: data outside [0, 1] is a mistake


# ---------------------------------------------------------------- the data check every model runs

class ChecksItsData:
    """For a `keras.Model`: `fit`, `evaluate` and `predict` pass their data through `check_data` first.

    A subclass sets `value_range` (the pixels' range, None for any) and `data_shape()` (one
    image's shape, None entries for any size), and defines `check_targets(y)` if it takes
    targets. Each array is looked at once per call (the validation that `fit` runs through
    `evaluate` is not checked twice); nothing per step.
    """

    value_range: tuple[float, float] | None = PIXEL_RANGE

    def check_data(self, x, validation_data=None):
        """Check `x` and `validation_data` as `fit` does (`check_batches`); returns them, ready to pass on."""
        shape = self.data_shape()
        x = check_batches("x", x, self.value_range, shape)
        if isinstance(validation_data, (tuple, list)) and validation_data:  # (x_val,) or (x_val, y_val[, weights])
            rest = list(validation_data[1:])
            if rest and rest[0] is not validation_data[0] and hasattr(self, "check_targets"):  # (x_val, x_val): once
                rest[0] = self.check_targets(rest[0], "validation_data[1]")
            validation_data = (check_batches("validation_data[0]", validation_data[0], self.value_range, shape), *rest)
        elif validation_data is not None:  # a dataset or generator
            validation_data = check_batches("validation_data", validation_data, self.value_range, shape)
        return x, validation_data

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, after checking `x` (`y`) and `validation_data` (see `check_data`)."""
        bound = inspect.signature(super().fit).bind(*args, **kwargs)
        check_devices(self, bound.arguments)  # every batch splits over the devices
        with self._checking() as unchecked:
            if unchecked:
                self._check_arguments(bound.arguments, with_validation=True)
            return super().fit(*bound.args, **bound.kwargs)

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`, after checking `x` (and `y`) as `fit` does."""
        bound = inspect.signature(super().evaluate).bind(*args, **kwargs)
        check_devices(self, bound.arguments)
        if not getattr(self, "_data_checked", False):
            self._check_arguments(bound.arguments, with_validation=False)
        return super().evaluate(*bound.args, **bound.kwargs)

    def predict(self, *args, **kwargs):
        """`keras.Model.predict`, after checking `x` as `fit` does."""
        bound = inspect.signature(super().predict).bind(*args, **kwargs)
        check_devices(self, bound.arguments)
        bound.arguments["x"], _ = self.check_data(bound.arguments.get("x"))
        return super().predict(*bound.args, **bound.kwargs)

    @contextlib.contextmanager
    def _checking(self):
        # Yields whether the data still needs its check: not within a call that checked it
        # (fit's validation runs `evaluate`; `fit_resumable` checks before writing any file).
        outer = getattr(self, "_data_checked", False)
        self._data_checked = True
        try:
            yield not outer
        finally:
            self._data_checked = outer

    def _check_arguments(self, arguments: dict, with_validation: bool) -> None:
        check_devices(self)  # the backend and strategy, before `fit_resumable` writes any file
        x, y = arguments.get("x"), arguments.get("y")
        arguments["x"], validation_data = self.check_data(x, arguments.get("validation_data") if with_validation else None)
        if with_validation:
            arguments["validation_data"] = validation_data
        if y is not None and hasattr(self, "check_targets"):
            # fit(x, x), an autoencoder's usual call, is checked once (a generator, re-made by the check, passed once).
            arguments["y"] = arguments["x"] if y is x else self.check_targets(y)


# ---------------------------------------------------------------- a stop at the first NaN loss

LIKELY_CAUSES = (
    "Likely causes: the learning rate is too high (try 10x smaller); inputs are not "
    "scaled to [0, 1] (divide 0-255 pixel values by 255); the data contain NaN or "
    "infinite values (vaekit.guards.check_images finds them)."
)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message says where and why."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first NaN or infinite loss and say where it happened.

    `VAE.fit` adds this callback itself; other models take it from `callbacks=`:
    `model.fit(x, x, callbacks=[StopOnNonFiniteLoss()])`. At the start of each epoch it
    keeps a copy of the weights and the optimizer state. At the first non-finite value of
    `monitor` it asks `fit` to stop; at the end of that epoch it puts the copy back, so the
    model is as it was before the failing epoch instead of full of NaN, and raises
    `NonFiniteLossError` (`raise_error=True`) or warns, with `self.message` set.
    """

    # Not `async_safe`: from a worker thread (JAX) the batch's loss array can already be
    # freed by the next step when it is read. The batch hook only records where the loss
    # went bad; `on_epoch_end` acts on it.

    def __init__(self, monitor: str = "loss", raise_error: bool = True, restore_weights: bool = True):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a metric name such as 'loss', got {monitor!r}.")
        self.monitor, self.raise_error, self.restore_weights = monitor, bool(raise_error), bool(restore_weights)
        self.message: str | None = None
        self._saved, self._epoch, self._failure = None, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.restore_weights:
            optimizer = getattr(self.model, "optimizer", None)
            variables = [*self.model.weights, *(optimizer.variables if optimizer is not None else [])]
            self._saved = [(variable, ops.convert_to_numpy(variable)) for variable in variables]

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self._failure is None and value is not None and not math.isfinite(float(value)):
            # With steps_per_execution = n > 1 (the VAE's default on TensorFlow) Keras calls this
            # once every n batches, with the group's last index, which can lie past the epoch's end.
            steps_per_execution = getattr(self.model, "steps_per_execution", 1) or 1
            last = min(batch + 1, (self.params or {}).get("steps") or batch + 1)
            note = f" (checked every {steps_per_execution} batches)" if steps_per_execution > 1 else ""
            self._failure = f"became {float(value)} at epoch {self._epoch + 1}, batch {last}{note}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)  # `val_loss` is only seen here
        if self._failure is None and value is not None and not math.isfinite(float(value)):
            self._failure = f"became {float(value)} at the end of epoch {epoch + 1}"
        if self._failure is None:
            return
        restored = ""
        if self.restore_weights and self._saved is not None:
            for variable, saved in self._saved:
                variable.assign(saved)
            restored = f" The weights from the start of epoch {epoch + 1} have been restored."
        self.message = f"`{self.monitor}` {self._failure}; training stopped.{restored} {LIKELY_CAUSES}"
        self._failure, self.model.stop_training = None, True
        if self.raise_error:
            raise NonFiniteLossError(self.message)
        warnings.warn(self.message, RuntimeWarning, stacklevel=2)


# ---------------------------------------------------------------- several devices: refuse what would train wrongly

MULTI_DEVICE_WAY = ("Train on several devices with the JAX backend: KERAS_BACKEND=jax, then "
                    "`keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))` "
                    "before building the model (docs/multi_device.md).")


def check_devices(model, arguments: dict | None = None) -> None:
    """Refuse several devices where Keras would train `model` wrongly or not at all.

    A `keras.distribution` works on JAX only: TensorFlow and PyTorch ignore it (one device).
    Under a `tf.distribute` strategy with several replicas (`MirroredStrategy`) Keras sums the
    replicas' gradients of a loss it expects divided by their number, as its own losses are;
    `VAE.compute_loss`'s batch mean is not, so gradients and logged loss come out that many
    times too large (and every replica draws the same noise); a model compiled with a Keras
    loss passes. On JAX every batch of `arguments` (those of `fit`, `evaluate`, `predict`)
    must split evenly over the devices: Keras fails on the first that does not, and leaves
    the model's variables unusable.
    """
    backend, distribution = keras.backend.backend(), keras.distribution.distribution()
    if backend != "jax" and distribution is not None:
        raise ValueError(f"A keras.distribution is set ({type(distribution).__name__}), but Keras implements it on "
                         f"JAX only: on {backend} it is ignored and {type(model).__name__} would train on one "
                         f"device. {MULTI_DEVICE_WAY}")
    replicas = getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1)  # TensorFlow's
    if replicas > 1 and type(model).compute_loss is not keras.Model.compute_loss:
        raise ValueError(f"{type(model).__name__} does not train under a tf.distribute strategy with {replicas} "
                         "replicas (MirroredStrategy): Keras would sum the replicas' gradients of its loss, a batch "
                         f"mean, making them and the logged loss {replicas} times too large, and every replica would "
                         f"draw the same sampling noise. {MULTI_DEVICE_WAY}")
    mesh, axis = getattr(distribution, "device_mesh", None), getattr(distribution, "batch_dim_name", None)
    if arguments is None or mesh is None or axis not in list(mesh.axis_names):
        return
    jax = sys.modules.get("jax")  # loaded by Keras' JAX backend; each process splits its own batches
    shards = mesh.shape[list(mesh.axis_names).index(axis)] // (jax.process_count() if jax is not None else 1)
    batch_size, validation = arguments.get("batch_size") or 32, arguments.get("validation_data")
    for name, x in (("x", arguments.get("x")),
                    ("validation_data[0]", validation[0] if isinstance(validation, (tuple, list)) and validation else None)):
        x = next(iter(x.values())) if isinstance(x, dict) and x else x[0] if isinstance(x, (tuple, list)) and x else x
        n = int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else None  # None: a dataset, not checked
        if shards > 1 and n is not None and (n % shards or (n > batch_size and batch_size % shards)):
            raise ValueError(f"`{name}`: {n} examples in batches of {batch_size} (the last of {n % batch_size or batch_size}), "
                             f"but the keras.distribution splits every batch over {shards} devices, so each must "
                             f"divide by {shards}: pass a batch_size and a number of examples that do.")


# ---------------------------------------------------------------- checks: a clear error before any work
# Each names the argument, the value it got and what is accepted, so a wrong setting never
# surfaces as a deep backend traceback. The builders of models.py run them at their top.

def check_positive_int(name: str, value) -> int:
    """Return `value` as an int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive integer, got {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer (>= 1), got {value}.")
    return int(value)


def check_positive_ints(name: str, values, length: int | None = None) -> tuple[int, ...]:
    """Return a tuple of positive ints (a single int is accepted where length is None)."""
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, (tuple, list)) or len(values) == 0:
        raise TypeError(f"`{name}` must be a positive integer or a non-empty sequence of them, got {values!r}.")
    if length is not None and len(values) != length:
        raise ValueError(f"`{name}` must have {length} entries, got {len(values)}: {values!r}.")
    return tuple(check_positive_int(f"{name}[{i}]", v) for i, v in enumerate(values))


def check_non_negative(name: str, value) -> float:
    """Return `value` as a float, or raise if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a non-negative number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
    return float(value)


def check_seed(name: str, value) -> int | None:
    """Return `value` if it is None or an integer >= 0 (a random seed), else raise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be None or an integer >= 0, got {value!r} ({type(value).__name__}).")
    if value < 0:
        raise ValueError(f"`{name}` must be None or an integer >= 0, got {value}.")
    return int(value)


def check_image_shape(name: str, value, divisible_by: int = 1) -> tuple[int, int, int]:
    """Check an (height, width, channels) shape whose sides divide by `divisible_by`."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"`{name}` must be a tuple (height, width, channels), got {value!r} ({type(value).__name__}).")
    if len(value) != 3:
        raise ValueError(f"`{name}` must be (height, width, channels), 3 entries, got {value!r}.")
    height, width, depth = check_positive_ints(name, value, length=3)
    if height % divisible_by or width % divisible_by:
        raise ValueError(f"`{name}` height and width must be divisible by {divisible_by} "
                         f"(the strided layers halve them), got {value!r}.")
    return height, width, depth


def check_images(name: str, x, value_range: tuple[float, float] | None = (0.0, 1.0), shape=None,
                 floats_only: bool = False, as_numpy: bool = True):
    """Raise a clear error if `x` is not a batch of images a model can use; return it.

    In this order: a real numeric array (lists become NumPy arrays); a non-empty batch
    (n, ...); images of `shape`, e.g. (28, 28, 1), if given (None entries match any
    size); a float dtype if `floats_only` (what training needs); no NaN or infinity;
    values inside `value_range` (None: any). Each message names `name` and the usual
    fix. Returns NumPy, or with `as_numpy=False` backend tensors as they were (checked
    on their device, not copied).
    """
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
    if is_numpy:  # NaN and infinities show in the minimum or maximum
        low, high = x.min(), x.max()
        finite = bool(np.isfinite(low) and np.isfinite(high))
    else:  # a backend tensor: reduce it on its device rather than copy it
        low, high = ops.convert_to_numpy(ops.min(x)), ops.convert_to_numpy(ops.max(x))
        finite = not is_float or bool(ops.convert_to_numpy(ops.all(ops.isfinite(x))))
    low_end, high_end = value_range if value_range is not None else (0.0, 1.0)
    if floats_only and not is_float:
        fix = "x.astype(\"float32\") / 255" if high > 1 else "x.astype(\"float32\")"
        if (low_end, high_end) == (-1.0, 1.0) and high > 1:  # a tanh model's range
            fix = "x.astype(\"float32\") / 127.5 - 1"
        raise TypeError(f"`{name}` has dtype {dtype}; the model trains on floats in [{low_end:g}, {high_end:g}]: "
                        f"use `{fix}`.")
    if not finite:
        count = int(np.sum(~np.isfinite(ops.convert_to_numpy(x))))
        raise ValueError(f"`{name}` contains NaN or infinite values ({count} of {math.prod(batch_shape)}); "
                         "remove those images or replace the values (`np.nan_to_num(x)`).")
    if value_range is not None and (low < low_end or high > high_end):
        hint = ""
        if (low_end, high_end) == (-1.0, 1.0) and high > 1.5:  # a tanh model's range
            hint = " Scale 0-255 pixel values with `x / 127.5 - 1`."
        elif (low_end, high_end) == (0.0, 1.0) and high > 1.5:
            hint = " Divide 0-255 pixel values by 255: `x / 255`."
        elif (low_end, high_end) == (0.0, 1.0) and low >= -1 and high <= 1:
            hint = " Map [-1, 1] images to [0, 1] with `(x + 1) / 2`."
        raise ValueError(f"`{name}` values must lie in [{low_end}, {high_end}], "
                         f"got [{float(low):.4g}, {float(high):.4g}].{hint}")
    return x


def _shape_matches(shape, expected) -> bool:
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


def check_batches(name: str, data, value_range=(0.0, 1.0), shape=None):
    """`check_images` for anything `fit` takes; returns `data`, ready to pass on.

    An array is checked in full (cheap next to an epoch). A `keras.utils.PyDataset`,
    `tf.data.Dataset`, generator or other iterable of batches is checked on its first
    batch (its inputs, for batches of (x, y)); a generator is returned as a new generator
    that still yields that first batch.
    """
    def check(x):
        return check_images(name, x, value_range, shape, floats_only=True, as_numpy=False)

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


def check_labels(name: str, y, num_classes: int | None = None, length: int | None = None) -> np.ndarray:
    """Class labels as a 1-D int array: integers (3.0 passes, 3.5 not), shape (n,) or (n, 1),
    `length` of them if given (one per image), in 0..num_classes - 1 if given."""
    y = np.asarray(list(y) if isinstance(y, range) else y)
    if length is None and y.size == 0:
        raise ValueError(f"`{name}` must be a non-empty sequence of class labels, got shape {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"`{name}` must hold integer class labels, got dtype {y.dtype}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"`{name}` must have shape (n,) or (n, 1), got {y.shape}.")
    if length is not None and len(y) != length:
        raise ValueError(f"`{name}` has {len(y)} labels but there are {length} images; they must match one to one.")
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"`{name}` must lie in 0..{num_classes - 1}, got [{y.min()}, {y.max()}].")
    return y
