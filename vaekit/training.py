"""How vaekit trains: `VAE` with its guards, runs that survive a stop, and a JAX fast path.

* `VAE` is `vaekit.vae.VAE` (the model, the file students copy) plus the guards of
  vaekit's users: `fit` and `evaluate` check their data first (`vaekit.checks.images`:
  0-255 pixels, NaN or a missing channel axis are refused with the fix), and `fit`
  stops at the first NaN loss with the last good weights put back
  (`StopOnNonFiniteLoss`, usable with any Keras model). Saved, it is the same
  "vaekit>VAE" as the plain class, so a file loads with or without vaekit.
* `fit_resumable` is `fit` that can be stopped and started again: one folder per run,
  saved after every epoch by `RunCheckpoint`.
* `fit_on_device` is `fit` with a whole epoch compiled into one program on JAX. The
  keras.io example's VAE is small: on a GPU one training step is a fraction of a
  millisecond of arithmetic, and `model.fit` spends most of an epoch *between* steps (slicing each
  batch from NumPy, copying it to the device, one dispatch per batch, callbacks). On
  JAX it copies the training data to the device once and compiles one epoch (shuffle
  on the device, then `jax.lax.scan` over the batches of Keras' own `train_step`): one
  dispatch per epoch. The model's loss, optimizer and metrics are the ones `compile`
  set up, so the result is what `fit(shuffle=False)` computes, step for step. On
  TensorFlow and PyTorch it is `model.fit`. Limits: the training set must fit in
  device memory (all of MNIST is 188 MB as float32), and callbacks see epochs only.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import ops

from vaekit import _io, _runfolder, checks, cvae, vae
from vaekit._runfolder import DamagedRunFileError, RunFolderBusyError  # noqa: F401  (raised from here)

# The pixel values the model trains on: every reconstruction kind's decoder ends in a
# sigmoid, so data outside [0, 1] is a mistake (0-255 pixels, [-1, 1] images).
PIXEL_RANGE = (0.0, 1.0)

# `VAE.compile`'s default: 32 steps per call on TensorFlow from Keras 3.15 (see `VAE.compile`), else Keras' 1.
DEFAULT_STEPS_PER_EXECUTION = (
    32 if keras.backend.backend() == "tensorflow" and tuple(map(int, keras.__version__.split(".")[:2])) >= (3, 15) else 1
)


class ChecksItsData:
    """For a `keras.Model`: `fit`, `evaluate` and `predict` pass their data through `check_data` first.

    A subclass defines `check_data(x, validation_data=None) -> (x, validation_data)`, and
    `check_targets(y)` if it takes targets. Each array is looked at once per call (the
    validation that `fit` runs through `evaluate` is not checked twice); nothing per step.
    """

    def _check_arguments(self, arguments: dict, with_validation: bool) -> None:
        x, y = arguments.get("x"), arguments.get("y")
        arguments["x"], validation_data = self.check_data(x, arguments.get("validation_data") if with_validation else None)
        if with_validation:
            arguments["validation_data"] = validation_data
        if y is not None and hasattr(self, "check_targets"):
            # fit(x, x), an autoencoder's usual call, is checked once (a generator, re-made by the check, passed once).
            arguments["y"] = arguments["x"] if y is x else self.check_targets(y)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, after checking `x` (`y`) and `validation_data` (see `check_data`)."""
        bound = inspect.signature(super().fit).bind(*args, **kwargs)
        with self._checking() as unchecked:
            if unchecked:
                self._check_arguments(bound.arguments, with_validation=True)
            return super().fit(*bound.args, **bound.kwargs)

    @contextlib.contextmanager
    def _checking(self):
        # Yields whether the data still needs its check: within a call that checked it, it does
        # not (fit's validation runs `evaluate`; `fit_resumable` checks before writing any file,
        # then calls `fit`).
        outer = getattr(self, "_data_checked", False)
        self._data_checked = True
        try:
            yield not outer
        finally:
            self._data_checked = outer

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`, after checking `x` (and `y`) as `fit` does."""
        bound = inspect.signature(super().evaluate).bind(*args, **kwargs)
        if not getattr(self, "_data_checked", False):
            self._check_arguments(bound.arguments, with_validation=False)
        return super().evaluate(*bound.args, **bound.kwargs)

    def predict(self, *args, **kwargs):
        """`keras.Model.predict`, after checking `x` as `fit` does."""
        bound = inspect.signature(super().predict).bind(*args, **kwargs)
        bound.arguments["x"], _ = self.check_data(bound.arguments.get("x"))
        return super().predict(*bound.args, **bound.kwargs)


@keras.saving.register_keras_serializable(package="vaekit", name="VAE")
class VAE(ChecksItsData, vae.VAE):
    """`vaekit.vae.VAE` whose `fit` and `evaluate` check their data and stop at a NaN loss.

    Its `compile` also runs 32 steps per call on TensorFlow by default (a speed default,
    see `compile`). Registered under the plain class's name: a saved model reloads as
    this class where vaekit is imported and as the plain one where only `vae.py` is.
    """

    def compile(self, *args, steps_per_execution: int | None = None, **kwargs):
        """Keras' `compile`, with `steps_per_execution` 32 on TensorFlow when not given.

        32 batches per call spare TensorFlow most of its per-step work outside the
        arithmetic: 14 to 18 % less CPU time per step of `fc_vae()`, with the same steps
        and results (benchmarks/README.md); batch-level callbacks then run every 32
        batches. JAX would unroll the loop and PyTorch takes only 1, and Keras before
        3.15 loses the epoch's logs with it: there the default stays 1. Pass
        `steps_per_execution=1` for Keras' own behaviour.
        """
        # The compile config keeps None, so a default stays a default reloaded on another backend.
        super().compile(*args, steps_per_execution=steps_per_execution, **kwargs)
        if steps_per_execution is None:
            self.steps_per_execution = DEFAULT_STEPS_PER_EXECUTION

    def compile_from_config(self, config):
        # Keras skips loading the compile state of a class that overrides `compile`.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, *args, stop_on_nonfinite: bool = True, **kwargs):
        """`keras.Model.fit`, after checking the data, and stopping at the first NaN loss.

        Takes `fit`'s arguments. Before training, `x` and `validation_data` are checked
        (`vaekit.checks.batches`: arrays in full, a dataset or generator on its first batch), so
        0-255 pixels, NaN or a missing channel axis are refused with a message saying
        how to fix them. With `stop_on_nonfinite=True` (the default) a NaN or infinite
        loss stops training, puts back the weights from the start of that epoch and
        raises `NonFiniteLossError` naming the epoch and batch; pass False to let
        training run on.
        """
        bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
        if stop_on_nonfinite:  # first, so that no later callback saves a NaN epoch
            bound.arguments["callbacks"] = [StopOnNonFiniteLoss(), *(bound.arguments.get("callbacks") or [])]
        return super().fit(*bound.args[1:], **bound.kwargs)

    def check_data(self, x, validation_data=None):
        """Check training data as `fit` does (see `vaekit.checks.images`); returns (x, validation_data)."""
        shape = tuple(self.encoder.input_shape[1:]) if vae.is_functional(self.encoder) else None
        x = checks.batches("x", x, PIXEL_RANGE, shape)
        if isinstance(validation_data, (tuple, list)):  # (x_val,) or (x_val, y_val[, weights])
            x_val = checks.batches("validation_data[0]", validation_data[0], PIXEL_RANGE, shape)
            validation_data = (x_val, *validation_data[1:])
        elif validation_data is not None:  # a dataset or generator
            validation_data = checks.batches("validation_data", validation_data, PIXEL_RANGE, shape)
        return x, validation_data


@keras.saving.register_keras_serializable(package="vaekit", name="ConditionalVAE")
class ConditionalVAE(cvae.ConditionalVAE, VAE):
    """`vaekit.cvae.ConditionalVAE` with `VAE`'s guards: checked images and labels, a stop at a NaN loss.

    `fit` and `evaluate` check `x = (images, labels)` (or the dict) as `VAE` checks images,
    and the labels with `vaekit.checks.labels` (integers, one per image, in
    0..num_classes - 1). A dataset or generator is passed on unchecked. Saved, it is
    "vaekit>ConditionalVAE", like the plain class.
    """

    def check_data(self, x, validation_data=None):
        """Check `(images, labels)` as `fit` does; returns (x, validation_data)."""
        x = self._checked_inputs("x", x)
        if isinstance(validation_data, (tuple, list)):  # ((images, labels),) as Keras reads it
            validation_data = (self._checked_inputs("validation_data[0]", validation_data[0]), *validation_data[1:])
        return x, validation_data

    def _checked_inputs(self, name: str, inputs):
        if not (isinstance(inputs, (dict, tuple, list)) or hasattr(inputs, "shape") or inputs is None):
            return inputs  # a dataset or generator: Keras reads it batch by batch
        names, (images, labels) = checks.image_label_pair(
            name, inputs, fix="`fit(x=(images, labels), validation_data=((val_images, val_labels),))`.")
        shape = tuple(self.encoder.input_shape[0][1:]) if vae.is_functional(self.encoder) else None
        images = checks.batches(names[0], images, PIXEL_RANGE, shape)
        labels = checks.labels(names[1], labels, len(images), self.num_classes)
        # A tuple, never a list: Keras would read [images, labels] as x=images, y=labels.
        return {"images": images, "labels": labels} if isinstance(inputs, dict) else (images, labels)


def with_checks(builder):
    """`builder` of `vaekit.cvae`, returning its model's parts as the guarded `ConditionalVAE` above."""

    @functools.wraps(builder)
    def guarded_builder(*args, **kwargs) -> ConditionalVAE:
        plain = builder(*args, **kwargs)
        return ConditionalVAE(plain.encoder, plain.decoder, num_classes=plain.num_classes, beta=plain.beta,
                              reconstruction=plain.reconstruction, name=plain.name)

    return guarded_builder


LIKELY_CAUSES = (
    "Likely causes: the learning rate is too high (try 10x smaller); inputs are not "
    "scaled to [0, 1] (divide 0-255 pixel values by 255); the data contain NaN or "
    "infinite values (vaekit.checks.images finds them)."
)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message says where and why."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first NaN or infinite loss and say where it happened.

    `VAE.fit` adds this callback itself; other models take it from `callbacks=`:

        model.fit(x, x, callbacks=[StopOnNonFiniteLoss()])

    At the start of each epoch it keeps a copy of the weights and the optimizer state
    (one copy per epoch: cheap next to the epoch). At the first non-finite value of
    `monitor` it asks `fit` to stop; at the end of that epoch it puts the copy back, so
    the model is as it was before the failing epoch instead of full of NaN, and then
    raises `NonFiniteLossError` (`raise_error=True`, the default) or warns and lets
    `fit` return (`raise_error=False`, with `self.message` set).
    """

    # Not `async_safe`: from a worker thread (JAX) the batch's loss array can already be
    # freed by the next step when it is read ("Array has been deleted"). The batch hook
    # only records where the loss went bad; `on_epoch_end` acts on it.

    def __init__(self, monitor: str = "loss", raise_error: bool = True, restore_weights: bool = True):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a metric name such as 'loss', got {monitor!r}.")
        self.monitor = monitor
        self.raise_error = bool(raise_error)
        self.restore_weights = bool(restore_weights)
        self.message: str | None = None
        self._saved = None
        self._epoch = 0
        self._failure: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.restore_weights:
            self._saved = [(variable, ops.convert_to_numpy(variable)) for variable in self._state_variables()]

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
            for variable, value in self._saved:
                variable.assign(value)
            restored = f" The weights from the start of epoch {epoch + 1} have been restored."
        self.message = f"`{self.monitor}` {self._failure}; training stopped.{restored} {LIKELY_CAUSES}"
        self._failure = None
        self.model.stop_training = True
        if self.raise_error:
            raise NonFiniteLossError(self.message)
        warnings.warn(self.message, RuntimeWarning, stacklevel=2)

    def _state_variables(self) -> list:
        optimizer = getattr(self.model, "optimizer", None)
        return [*self.model.weights, *(optimizer.variables if optimizer is not None else [])]


# ---------------------------------------------------------------- runs that survive a stop

def fit_resumable(model: keras.Model, x, y=None, *, run_dir: str | os.PathLike | None, epochs: int,
                  config: Mapping | None = None, **fit_kwargs) -> dict[str, list[float]]:
    """`model.fit` that can be stopped and started again: one folder per training run.

    A grid of full-length runs on a CPU takes hours. With a `run_dir`, the weights,
    the optimizer state and the numbers of every finished epoch are saved after each
    epoch in one file, `checkpoint.npz`, written under a temporary name and then
    renamed, so a run killed at any moment (even mid-save) keeps its last finished
    epoch; `history.csv` is rewritten from it. Calling again with the same folder
    resumes at the first unfinished epoch; once all `epochs` are done it only loads
    the weights. The checkpoint also keeps where the model's random streams (the
    sampling noise) stand, so a finished run that is only loaded draws the same noise
    afterwards as the run that has just trained it: sampled figures do not depend on
    which of the two a notebook did. A resumed run matches an uninterrupted one in
    distribution, not bit for bit: the shuffling order starts again from its seed.

    A folder takes one writer at a time: while a call trains in it, a second call (another
    kernel, a script) raises `RunFolderBusyError` naming the folder and the process that
    holds it; the lock of a process that was killed is taken over. The checkpoint records
    the model's own config, so a different model (another beta, another size) is refused
    even where `config` does not tell them apart. A damaged file raises
    `DamagedRunFileError` naming it and the way out. The checkpoint of the epoch before is
    kept as `checkpoint.previous.npz`: with `checkpoint.npz` moved aside, the run resumes
    from it.

    Args:
        model: a compiled, built Keras model.
        x, y: training data, as for `fit`; a `vaekit.VAE` checks them first
            (`VAE.check_data`).
        run_dir: the run's folder, created if needed; `None` is plain `fit`, nothing saved.
        epochs: the total number of epochs, counting those done before a stop. A run
            may be extended (asked for more epochs later), never cut back.
        config: what defines the run beside the model (JSON-able: the data, the seed...).
            Without it, `run_settings` derives one from the model and the fit arguments:
            the optimizer, its learning rate, the batch size, the number of training
            examples. It is written to `config.json` on the first call and must be equal
            on every later one, so a folder is never resumed with other settings.
        **fit_kwargs: passed to `fit` (`batch_size`, `validation_data`, `verbose`,
            `callbacks`...); not `initial_epoch`, which the folder decides.

    Returns:
        The history of every epoch, old and new, as `fit(...).history` would give it.
    """
    epochs = checks.positive_int("epochs", epochs)
    if "initial_epoch" in fit_kwargs:
        raise TypeError("fit_resumable takes no `initial_epoch`: it resumes at the run folder's last saved epoch.")
    if not isinstance(model, ChecksItsData):  # a plain keras.Model: nothing to check
        return _fit_in_folder(model, x, y, run_dir, epochs, config, fit_kwargs)
    with model._checking():  # a vaekit.VAE or Autoencoder: checked here, before any file is written, not in fit
        arguments = {"x": x, "y": y, "validation_data": fit_kwargs.get("validation_data")}
        model._check_arguments(arguments, with_validation=True)  # the check `fit` makes
        if arguments["validation_data"] is not None:
            fit_kwargs["validation_data"] = arguments["validation_data"]
        return _fit_in_folder(model, arguments["x"], arguments["y"], run_dir, epochs, config, fit_kwargs)


def _fit_in_folder(model, x, y, run_dir, epochs: int, config, fit_kwargs: dict) -> dict[str, list[float]]:
    if run_dir is None:
        return model.fit(x, y, epochs=epochs, **fit_kwargs).history
    run_dir = _run_folder(run_dir)
    with _runfolder.RunLock(run_dir) as lock:  # one writer per folder; released on any exit, Ctrl-C included
        _check_run_config(run_dir / "config.json", run_settings(model, x, fit_kwargs) if config is None else config)
        checkpoint = RunCheckpoint(run_dir, lock=lock)
        done = checkpoint.restore(model)
        if done > epochs:
            raise ValueError(f"{run_dir} holds a run trained for {done} epochs, more than epochs={epochs}; "
                             f"pass epochs >= {done} or another run_dir.")
        if done == epochs:
            last = " - ".join(f"{name}: {values[-1]:.4f}" for name, values in checkpoint.history().items())
            print(f"{run_dir.name}: all {epochs} epochs were trained earlier; loading the weights from "
                  f"{_io.shown(run_dir)}\n  epoch {epochs}: {last}")
            return checkpoint.history()
        if done:
            print(f"{run_dir.name}: resuming at epoch {done + 1} of {epochs} from {_io.shown(run_dir)}")
        callbacks = [*(fit_kwargs.pop("callbacks", None) or []), checkpoint]
        model.fit(x, y, epochs=epochs, initial_epoch=done, callbacks=callbacks, **fit_kwargs)
        return checkpoint.history()


class RunCheckpoint(keras.callbacks.Callback):
    """Saves a run after every epoch: weights, optimizer state, the random streams' position and the epochs' numbers.

    Everything goes into one file, `checkpoint.npz` (NumPy arrays and a JSON record),
    written to a temporary name and renamed: after a kill at any moment the folder
    holds the state after the last finished epoch, whole. `history.csv` (one row per
    finished epoch, for reading by eye or pandas) is rewritten from that record after
    each save and on every restore, so it never lists an epoch twice or misses one.
    An epoch whose loss is not finite is not saved. The checkpoint it replaces is kept
    as `checkpoint.previous.npz`, the way back if the newer one is ever damaged.
    With a `lock` (`fit_resumable`'s), each save first checks that the folder is still this
    process's, so a run whose lock was taken from it never overwrites the new holder's files.
    """

    def __init__(self, run_dir: str | os.PathLike, lock: _runfolder.RunLock | None = None):
        super().__init__()
        self.path = Path(run_dir) / "checkpoint.npz"
        self.previous = Path(run_dir) / "checkpoint.previous.npz"
        self.history_csv = Path(run_dir) / "history.csv"
        self.lock = lock
        self.rows: list[dict[str, float]] = []  # one per finished epoch
        self._model_record = None

    def restore(self, model: keras.Model) -> int:
        """Load the saved state into `model`; returns the number of finished epochs (0 if none)."""
        # Only this folder's own files' leftovers (from a kill mid-save), never anything else
        # that happens to carry the mark; under `fit_resumable`'s lock no other writer is mid-save.
        for name in (self.path, self.history_csv, self.path.with_name("config.json")):
            for leftover in self.path.parent.glob(f".{name.stem}{_io.TEMPORARY_MARK}*{name.suffix}"):
                leftover.unlink(missing_ok=True)
        path = self.path
        if not path.exists() and self.previous.exists():  # moved aside, or a kill between the two renames of a save
            path = self.previous
        if not path.exists():
            return 0
        record, weights, optimizer_values, seed_states = _read_checkpoint(path, self.previous)
        saved_model, given_model = record.get("model"), _runfolder.model_record(model)
        differences = _runfolder.model_differences(saved_model, given_model) if saved_model and given_model else []
        if differences:
            raise ValueError(f"{path.parent} holds a run of another model than the one given:\n  "
                             + "\n  ".join(differences) + "\nPass another `run_dir` for this model, or move "
                             "the folder aside (or delete it) to train this model there from epoch 1.")
        try:
            model.set_weights(weights)
            if optimizer_values:
                if not model.optimizer.built:
                    model.optimizer.build(model.trainable_variables)
                if len(model.optimizer.variables) != len(optimizer_values):
                    raise ValueError(f"the optimizer has {len(model.optimizer.variables)} variables, "
                                     f"the checkpoint {len(optimizer_values)}")
                for variable, value in zip(model.optimizer.variables, optimizer_values):
                    variable.assign(value)
            if seed_states:  # absent from checkpoints written before they were saved
                variables = _seed_states(model)
                if len(variables) != len(seed_states):
                    raise ValueError(f"the model has {len(variables)} random seed generators, "
                                     f"the checkpoint {len(seed_states)}")
                for variable, value in zip(variables, seed_states):
                    variable.assign(value)
        except ValueError as error:
            raise ValueError(f"{self.path} does not fit this model ({error}). Was the model or the optimizer "
                             "changed without changing `config`? Pass another `run_dir`.") from error
        self.rows = record["rows"]
        self._write_history_csv()
        if path == self.previous:
            print(f"{self.path} is missing: resuming from {self.previous.name}, the state after epoch {len(self.rows)}")
        return len(self.rows)

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in (logs or {}).items()}
        if not math.isfinite(logs.get("loss", 0.0)) or epoch != len(self.rows):
            return
        self.rows.append(logs)
        optimizer = getattr(self.model, "optimizer", None)
        optimizer_variables = optimizer.variables if optimizer is not None else []
        arrays = {f"weight_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(self.model.weights)}
        arrays.update({f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer_variables)})
        seed_states = _seed_states(self.model)
        arrays.update({f"seed_state_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(seed_states)})
        if self._model_record is None:
            self._model_record = _runfolder.model_record(self.model)
        record = {"rows": self.rows, "weights": len(self.model.weights), "optimizer_variables": len(optimizer_variables),
                  "seed_states": len(seed_states), "model": self._model_record}
        if self.lock is not None:
            self.lock.check()
        with _io.replacing(self.path) as temporary:
            np.savez(temporary, record=np.array(json.dumps(record)), **arrays)
            if self.path.exists():  # the last good state stays one rename away
                os.replace(self.path, self.previous)
        self._write_history_csv()

    def history(self) -> dict[str, list[float]]:
        """Every finished epoch's numbers, as `fit(...).history` gives them."""
        names = list(dict.fromkeys(name for row in self.rows for name in row))
        return {name: [row.get(name, math.nan) for row in self.rows] for name in names}

    def _write_history_csv(self) -> None:
        frame = pd.DataFrame(self.rows)
        frame.insert(0, "epoch", range(len(frame)))
        with _io.replacing(self.history_csv) as temporary:
            frame.to_csv(temporary, index=False)


def _seed_states(model: keras.Model) -> list:
    """The state of each `keras.random.SeedGenerator` in `model`: the variables that are not weights."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _read_checkpoint(path: Path, previous: Path) -> tuple[dict, list, list, list]:
    """The record, weights, optimizer values and seed states in checkpoint `path`; `DamagedRunFileError` if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            record = json.loads(str(saved["record"]))
            weights = [saved[f"weight_{i}"] for i in range(record["weights"])]
            optimizer_values = [saved[f"optimizer_{i}"] for i in range(record["optimizer_variables"])]
            seed_states = [saved[f"seed_state_{i}"] for i in range(record.get("seed_states", 0))]
            rows = record["rows"]
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError("its record of finished epochs is not a list of epochs")
    except Exception as error:  # zip, zlib, EOF, JSON, missing keys: every way a cut or altered file fails
        if path != previous and previous.exists():
            way_out = (f"Move it aside (e.g. rename it to {path.name}.damaged) and run again: the run then resumes "
                       f"from {previous.name}, the state one epoch earlier, kept for this (or move the whole "
                       "folder aside to train the run from epoch 1).")
        else:
            way_out = (f"Move it aside (e.g. rename it to {path.name}.damaged) and run again to train this run "
                       "from epoch 1, or put back a good copy if you keep one.")
        raise _runfolder.damaged(path, error, way_out) from error
    return record, weights, optimizer_values, seed_states


def run_settings(model: keras.Model, x, fit_kwargs: Mapping) -> dict:
    """A run's training settings, read from the model and `fit`'s arguments: `fit_resumable`'s default config.

    The optimizer's class and learning rate (a schedule as its config), the batch size and,
    for an array, the number of training examples. The model's own config (sizes, β, the
    sampling seed) is not repeated: the checkpoint records it and refuses another model.
    """
    optimizer = getattr(model, "optimizer", None)
    learning_rate = None if optimizer is None else optimizer.get_config().get("learning_rate")
    if isinstance(learning_rate, float):  # stored as float32: 1e-3 comes back as 0.0010000000474974513
        learning_rate = float(str(np.float32(learning_rate)))
    settings = {"optimizer": None if optimizer is None else type(optimizer).__name__,
                "learning_rate": learning_rate,
                "batch_size": fit_kwargs.get("batch_size")}
    if hasattr(x, "shape"):
        settings["train_examples"] = int(x.shape[0])
    return json.loads(json.dumps(settings, default=repr))


def _run_folder(run_dir: str | os.PathLike) -> Path:
    return _io.make_folder(Path(run_dir), f"`run_dir` {_io.shown(Path(run_dir))}", "pass the path of a folder")


def _check_run_config(path: Path, config: Mapping | None) -> None:
    config = json.loads(json.dumps(dict(config or {})))  # as it reads back: tuples become lists
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise _runfolder.damaged(path, error, f"It should hold this run's `config`; delete it and run again to "
                                     f"write it anew from the config given ({config}), if that is the run's.") from error
        if saved != config:
            raise ValueError(f"{path.parent} holds a run with another config:\n  saved {saved}\n  given {config}\n"
                             "Pass another `run_dir`, or delete the folder to start that run again.")
    else:
        _io.write_text(path, json.dumps(config, indent=1) + "\n")




# ---------------------------------------------------------------- one compiled epoch on JAX

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
    epochs = checks.positive_int("epochs", epochs)
    batch_size = checks.positive_int("batch_size", batch_size)
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}.")
    if validation_data is not None and not (isinstance(validation_data, (tuple, list)) and 1 <= len(validation_data) <= 2):
        raise ValueError(f"`validation_data` must be a tuple (x_val,) or (x_val, y_val), got {type(validation_data).__name__}.")
    seed = checks.optional_seed("seed", seed)

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

    batch_size = min(batch_size, len(data[0]))
    _create_state(model, tuple(array[:batch_size] for array in data))

    cache = _compiled_epochs.setdefault(model, {})
    key = (id(model.optimizer), tuple((a.shape, a.dtype.str) for a in data), batch_size, shuffle)
    if key not in cache:
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        def train_step(state, batch):
            return model_ref().train_step(state, batch)

        cache[key] = jax.jit(_epoch_function(train_step, len(data[0]), batch_size, shuffle))
    run_epoch = cache[key]
    device_data = jax.device_put(data)  # copied once per call; a no-op for arrays already on the device
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
        step_logs, state = run_epoch(_state(model), device_data, jax.random.fold_in(shuffle_key, epoch))
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


def _epoch_function(train_step, num_examples: int, batch_size: int, shuffle: bool):
    """A pure function (state, data, key) -> (logs, state) that runs one epoch of `train_step`."""
    import jax

    full_batches, remainder = divmod(num_examples, batch_size)

    def run_epoch(state, data, key):
        if shuffle:
            order = jax.random.permutation(key, num_examples)
            data = tuple(array[order] for array in data)
        batches = tuple(array[:full_batches * batch_size].reshape(full_batches, batch_size, *array.shape[1:])
                        for array in data)

        def step(state, batch):
            logs, state = train_step(state, batch)
            return state, logs

        state, logs = jax.lax.scan(step, state, batches)
        logs = {name: values[-1] for name, values in logs.items()}  # the metrics are running means
        if remainder:
            logs, state = train_step(state, tuple(array[full_batches * batch_size:] for array in data))
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
