"""`fit_on_device`: `fit` with a whole epoch compiled into one program on JAX.

The keras.io example's VAE is small: on a GPU one training step is a fraction of a
millisecond of arithmetic, and `model.fit` spends most of an epoch *between* steps
(slicing each batch from NumPy, copying it to the device, one dispatch per batch,
callbacks). On JAX `fit_on_device` copies the training data to the device once and
compiles one epoch (shuffle on the device, then `jax.lax.scan` over the batches of
Keras' own `train_step`): one dispatch per epoch. The model's loss, optimizer and
metrics are the ones `compile` set up, so the result is what `fit(shuffle=False)`
computes, step for step. On TensorFlow and PyTorch it is `model.fit`. Limits: the
training set must fit in device memory (all of MNIST is 188 MB as float32), and
callbacks see epochs only.

Under a `keras.distribution` (`DataParallel` over several devices of one process, set
before the model is built) the training set is copied whole to every device and each
batch is split over the mesh's batch axis inside the compiled epoch, so every device
computes its share of the batch and the gradients are summed across them, as `fit`
does; the weights stay replicated. A batch (or the last, shorter one) that does not
divide by the number of devices is padded by XLA, not refused. Over several processes
(`jax.distributed.initialize`) it refuses: each process would have to feed the same
data and seed; use `model.fit` with each process's share of the data there.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence

import keras
import numpy as np

from vaekit.guards import ChecksItsData, check_positive_int, check_seed

# model -> {(optimizer, data shapes, batch size, shuffle): compiled epoch}, so that calling
# fit_on_device again (one epoch at a time, say) does not compile again.
_compiled_epochs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fit_on_device(model: keras.Model, x, y=None, *, epochs: int = 1, batch_size: int = 128, shuffle: bool = True,
                  validation_data: Sequence | None = None, callbacks: Sequence | None = None, verbose: int = 1,
                  seed: int | None = None) -> keras.callbacks.History:
    """Train a compiled model like `model.fit`, one compiled program per epoch on JAX.

    Args:
        model: a compiled Keras model (a `vaekit.VAE`, or any model `fit` can train on (x, y)).
        x: training inputs, an array with the images on the first axis: NumPy, or a JAX
            array already on the device (`jax.device_put(x)`), which saves the copy
            when calling once per epoch.
        y: training targets (same length as `x`), or None for models whose loss needs
            only `x`, such as `vaekit.VAE`.
        epochs, batch_size, shuffle: as in `fit`; the last batch of an epoch is the
            remainder, as in `fit`.
        validation_data: `(x_val,)` or `(x_val, y_val)`, evaluated after each epoch
            with `model.evaluate`; its numbers get the `val_` prefix.
        callbacks: Keras callbacks; on JAX only their epoch and train hooks are called.
        verbose: 0 silent, 1 or 2 one line per epoch.
        seed: seeds the shuffling on JAX (None draws one from NumPy's global
            generator, which `keras.utils.set_random_seed` seeds).

    Returns:
        A `keras.callbacks.History`, as from `fit`.

    A `vaekit.VAE`'s data are checked first, as its `fit` checks them (`VAE.check_data`).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError("`model` must be compiled first: call model.compile(optimizer=...) before fit_on_device.")
    data = _training_arrays(x, y)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}.")
    if validation_data is not None and not (isinstance(validation_data, (tuple, list)) and 1 <= len(validation_data) <= 2):
        raise ValueError(f"`validation_data` must be a tuple (x_val,) or (x_val, y_val), got {type(validation_data).__name__}.")
    seed = check_seed("seed", seed)

    if keras.backend.backend() != "jax":  # (a vaekit.VAE's `fit` checks the data)
        return model.fit(*data, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                         validation_data=validation_data, callbacks=callbacks, verbose=verbose)
    if not isinstance(model, ChecksItsData):  # a plain keras.Model: nothing to check
        return _fit_jax(model, data, epochs, batch_size, shuffle, validation_data, callbacks or [], verbose, seed)
    with model._checking():  # a vaekit.VAE or Autoencoder: the check its `fit` makes, once (not again in evaluate)
        arguments = {"x": data[0], "y": data[1] if len(data) > 1 else None, "validation_data": validation_data}
        model._check_arguments(arguments, with_validation=True)
        data = (arguments["x"],) if arguments["y"] is None else (arguments["x"], arguments["y"])
        return _fit_jax(model, data, epochs, batch_size, shuffle, arguments["validation_data"], callbacks or [],
                        verbose, seed)


def _training_arrays(x, y) -> tuple[np.ndarray, ...]:
    if not hasattr(x, "shape") or len(x.shape) < 1:
        raise TypeError(f"`x` must be an array of training inputs (images on the first axis), got {type(x).__name__}.")
    if len(x) == 0:
        raise ValueError("`x` is empty: fit_on_device needs at least one training image.")
    if y is None:
        return (x,)
    if not hasattr(y, "shape") or len(y) != len(x):
        raise ValueError(f"`y` must be an array with one target per input ({len(x)}), "
                         f"got {len(y) if hasattr(y, '__len__') else type(y).__name__}.")
    return x, y


def _fit_jax(model, data, epochs, batch_size, shuffle, validation_data, callbacks, verbose, seed):
    import jax

    distribution = _data_distribution()
    batch_size = min(batch_size, len(data[0]))
    _create_state(model, tuple(array[:batch_size] for array in data))

    cache = _compiled_epochs.setdefault(model, {})
    mesh = None if distribution is None else distribution.device_mesh.backend_mesh
    key = (id(model.optimizer), tuple((a.shape, a.dtype.str) for a in data), batch_size, shuffle, mesh)
    if key not in cache:
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        def train_step(state, batch):
            return model_ref().train_step(state, batch)

        split, layout = None, {}
        if distribution is not None:  # and the state comes back laid out as it goes in: no second compile
            split = _batch_splitter(distribution)
            layout = {"out_shardings": (None, _state_shardings(model, distribution))}
        cache[key] = jax.jit(_epoch_function(train_step, len(data[0]), batch_size, shuffle, split), **layout)
    run_epoch = cache[key]
    if distribution is None:
        device_data = jax.device_put(data)  # copied once per call; a no-op for arrays already on the device
    else:  # the whole training set on every device of the mesh: each shuffles its copy, then takes its share
        device_data = jax.device_put(data, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    shuffle_key = jax.random.key(np.random.randint(2**31 - 1) if seed is None else seed)

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList([*callbacks, history], model=model, epochs=epochs, verbose=verbose)
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(epochs):
        model.reset_metrics()  # epoch averages, as in fit
        callback_list.on_epoch_begin(epoch)
        start = time.perf_counter()
        state = _state(model)
        if distribution is not None:  # each variable as its layout says (over a 1-device mesh Keras leaves some unset)
            state = jax.device_put(state, _state_shardings(model, distribution))
        step_logs, state = run_epoch(state, device_data, jax.random.fold_in(shuffle_key, epoch))
        _assign_state(model, state)
        logs = {name: float(value) for name, value in step_logs.items()}
        seconds = time.perf_counter() - start
        if validation_data is not None:
            validation = model.evaluate(*validation_data, batch_size=batch_size, verbose=0, return_dict=True)
            logs.update({f"val_{name}": float(value) for name, value in validation.items()})
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs} - {seconds:.2f}s - "
                  + " - ".join(f"{name}: {value:.4f}" for name, value in logs.items()))
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_variables)
    callback_list.on_train_end(logs)
    return history


def _data_distribution():
    """The `keras.distribution` in effect, or None; refused over several processes (see the module's notes)."""
    import jax

    distribution = keras.distribution.distribution()
    if distribution is not None and jax.process_count() > 1:
        raise ValueError(
            f"fit_on_device runs in one process; this is process {jax.process_index()} of {jax.process_count()} "
            "(jax.distributed.initialize). Train with `model.fit(x_local, ...)` there, each process passing its "
            "own share of the training set: Keras assembles the global batch from the processes' local batches.")
    return distribution


def _batch_splitter(distribution):
    """batch -> the batch constrained to the distribution's data layout (split over the mesh's batch axis)."""
    import jax

    def split(batch):
        return tuple(jax.lax.with_sharding_constraint(array, distribution.get_data_layout(array.shape).backend_layout)
                     for array in batch)

    return split


def _state_shardings(model: keras.Model, distribution) -> tuple[list, ...]:
    """The sharding of each state variable under `distribution` (replicated, for `DataParallel`)."""
    def sharding(variable):
        layout = distribution.get_variable_layout(variable)
        return getattr(layout, "backend_layout", layout)  # a TensorLayout, or already a jax sharding

    return tuple([sharding(variable) for variable in group] for group in _state_variables(model))


def _create_state(model: keras.Model, batch: tuple) -> None:
    """Create every variable `train_step` uses, as `fit` does before its first step.

    The compiled epoch only reads and returns state, so the model's layers, the loss
    and metric trackers `compile` asked for and the optimizer's slots must exist
    first. One forward pass, loss and metrics on a batch create them; every value it
    changes (the sampling noise's seed, the metrics' totals) is then put back, so
    training starts exactly where `fit` would.
    """
    x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    # On JAX `variable.value` is an immutable array: these are copies, not references.
    before = [(variable, variable.value) for variable in [*model.variables, *model.metrics_variables]]
    y_pred = model(x, training=True)
    model.compute_loss(x, y, y_pred)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    for variable, value in before:
        variable.assign(value)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _epoch_function(train_step, num_examples: int, batch_size: int, shuffle: bool, split=None):
    """A pure function (state, data, key) -> (logs, state) that runs one epoch of `train_step`.

    `split(batch) -> batch`, if given, lays each batch out over the devices (`_batch_splitter`).
    """
    import jax

    full_batches, remainder = divmod(num_examples, batch_size)
    if split is None:
        split = tuple

    def run_epoch(state, data, key):
        if shuffle:
            order = jax.random.permutation(key, num_examples)
            data = tuple(array[order] for array in data)
        batches = tuple(array[:full_batches * batch_size].reshape(full_batches, batch_size, *array.shape[1:])
                        for array in data)

        def step(state, batch):
            logs, state = train_step(state, split(batch))
            return state, logs

        state, logs = jax.lax.scan(step, state, batches)
        logs = {name: values[-1] for name, values in logs.items()}  # the metrics are running means
        if remainder:
            logs, state = train_step(state, split(tuple(array[full_batches * batch_size:] for array in data)))
        return logs, state

    return run_epoch


def _state_variables(model: keras.Model) -> tuple[list, list, list, list]:
    """The four groups of variables whose values Keras' JAX `train_step` takes and returns."""
    return (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
            model.metrics_variables)


def _state(model: keras.Model) -> tuple[list, ...]:
    return tuple([variable.value for variable in group] for group in _state_variables(model))


def _assign_state(model: keras.Model, state) -> None:
    for variables, values in zip(_state_variables(model), state):
        for variable, value in zip(variables, values):
            variable.assign(value)
