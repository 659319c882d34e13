"""Runs that survive a stop: `fit_resumable`, one folder per training run.

A grid of full-length runs on a CPU takes hours. `fit_resumable(model, x, run_dir=...,
epochs=...)` is `model.fit` that saves the run after every epoch and, called again,
resumes at the first unfinished epoch, or only loads a finished run. Everything a run
folder needs is here:

* **the checkpoint** (`RunCheckpoint`): weights, optimizer state, the random streams'
  position and every epoch's numbers in one file, written atomically (`vaekit._io`);
  `history.csv` beside it; the epoch before kept as `checkpoint.previous.npz`;
* **what it trains** (`run.json`) and **the config** (`config.json`): a run with other
  settings trains in a sibling folder of its own, so a folder is never resumed or loaded with
  settings not its own (`vaekit.runs` finds the folder);
* **the finished run** (`model.weights.h5`, weights only): loaded instead of trained where
  the checkpoint is absent, as in a checkout, or fetched (`vaekit.runs`);
* **damaged files** (`DamagedRunFileError`) are named with the way out, instead of the
  reader's own `BadZipFile` or `JSONDecodeError`;
* **one writer at a time**: `vaekit._lock.RunLock`, held for the whole call; a folder that
  stopped taking writes mid-run is taken back by the same process once it is writable again.

Where a notebook's run folders go is `vaekit.experiments.run_dir`'s business. The NaN stop
(`vaekit.guards.StopOnNonFiniteLoss`) is part of `VAE.fit`, so it guards these runs too.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from vaekit import _io, runs
from vaekit._lock import RunFolderBusyError, RunLock  # noqa: F401  (raised from here)
from vaekit.runs import DamagedRunFileError  # noqa: F401  (raised from here)
from vaekit.guards import ChecksItsData, check_devices, check_images, check_positive_int


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

    A run whose settings differ from those in `run_dir` (another model, loss, optimizer
    setting, batch size, number of epochs, data or `config`) trains in a sibling folder
    named after the difference (`runs.find_run_folder`), printed; the same settings find it
    again. A finished run also writes `model.weights.h5` (weights only); a folder holding
    that, `run.json` and `history.csv` but no checkpoint is loaded, not trained, and a run
    listed in `vaekit/shipped_runs.json` is fetched where the folder is empty.
    A folder takes one writer at a time: while a call trains in it, a second call (another
    kernel, a script) raises `RunFolderBusyError` naming the folder and the process that
    holds it; the lock of a process that was killed is taken over. A damaged file raises
    `DamagedRunFileError` naming it and the way out. The checkpoint of the epoch before is
    kept as `checkpoint.previous.npz`: with `checkpoint.npz` moved aside, the run resumes
    from it.

    Args:
        model: a compiled, built Keras model.
        x, y: training data, as for `fit`; a `vaekit.VAE` checks them first
            (`VAE.check_data`).
        run_dir: the run's folder, created if needed; `None` is plain `fit`, nothing saved.
        epochs: the total number of epochs, counting those done before a stop (another
            number is another run).
        config: what defines the run beside the model (JSON-able: the data, the seed...).
            Without it, `runs.run_settings` derives one from the model and the fit arguments:
            the optimizer, its learning rate, the batch size, the number of training
            examples. It is written to `config.json` on the first call; another config
            is another run.
        **fit_kwargs: passed to `fit` (`batch_size`, `validation_data`, `verbose`,
            `callbacks`...); not `initial_epoch`, which the folder decides. A name `fit`
            does not take (a misspelt `batchsize=`) is refused, as are a `config` that JSON
            cannot hold and a `run_dir` that is not a path: all before the folder is made.

    Returns:
        The history of every epoch, old and new, as `fit(...).history` would give it.
    """
    # Every argument of its own first, before any data is looked at or any file written.
    _check_model(model)
    epochs = check_positive_int("epochs", epochs)
    run_dir = check_run_dir(run_dir, optional=True)
    config = check_config(config)
    _check_fit_kwargs(model, fit_kwargs)
    if not isinstance(model, ChecksItsData):  # a plain keras.Model: nothing to check
        return _fit_in_folder(model, x, y, run_dir, epochs, config, fit_kwargs)
    with model._checking():  # a vaekit.VAE or Autoencoder: checked here, before any file is written, not in fit
        arguments = {"x": x, "y": y, "validation_data": fit_kwargs.get("validation_data")}
        check_devices(model, {**fit_kwargs, "x": x})  # every batch splits over the devices, before any file
        model._check_arguments(arguments, with_validation=True)  # the check `fit` makes
        if arguments["validation_data"] is not None:
            fit_kwargs["validation_data"] = arguments["validation_data"]
        return _fit_in_folder(model, arguments["x"], arguments["y"], run_dir, epochs, config, fit_kwargs)


def check_run_dir(value, optional: bool = False) -> Path | None:
    """A run folder's path as a `Path`: a non-empty str or os.PathLike (None too where `optional`), else a clear error."""
    if value is None and optional:
        return None
    allowed = "a folder path (str or pathlib.Path)" + (", or None for plain `fit`" if optional else "")
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`run_dir` must be {allowed}, got {value!r} ({type(value).__name__}).")
    if not str(os.fspath(value)).strip():
        raise ValueError(f"`run_dir` must name a folder, got {value!r} (it would be the working folder); "
                         "pass e.g. `experiments.run_dir(\"my_run\")`.")
    return Path(value)


def check_config(config) -> dict | None:
    """`fit_resumable`'s `config` as the JSON data `config.json` will hold: None, or a mapping of JSON values.

    A value JSON cannot hold (an optimizer, a NumPy array, a NaN that never equals itself) is
    refused here, naming it, rather than failing once the folder is made.
    """
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise TypeError(f"`config` must be a dict of the run's settings (JSON data: strings, numbers, lists, "
                        f"dicts, True/False/None) or None, got {config!r} ({type(config).__name__}).")
    try:
        return json.loads(json.dumps(dict(config), allow_nan=False))  # as it reads back: tuples become lists
    except (TypeError, ValueError) as error:
        raise TypeError(f"`config` must hold JSON data only (strings, numbers, lists, dicts, True/False/None; "
                        f"finite numbers), to be saved in config.json: {error}. Put in the setting's value "
                        "(e.g. the learning rate as a number), not the object.") from error


def _check_model(model) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a compiled keras.Model (e.g. `vaekit.conv_vae()` after `compile`), "
                        f"got {type(model).__name__}.")
    if not getattr(model, "compiled", True):
        raise ValueError(f"`model` ({model.name}) is not compiled: call `model.compile(optimizer=...)` before "
                         "fit_resumable.")


# Arguments of `fit` that fit_resumable takes itself or decides (`initial_epoch`), never passed on as **fit_kwargs.
_OWN_ARGUMENTS = frozenset({"self", "x", "y", "epochs", "initial_epoch"})


def _fit_parameters(model) -> set[str] | None:
    """The keyword arguments `model.fit` takes, read from its signature; None where it takes any (**kwargs only)."""
    names: set[str] = set()
    for cls in type(model).__mro__:
        fit = cls.__dict__.get("fit")
        if fit is None:
            continue
        try:
            parameters = inspect.signature(fit).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):  # a closed signature: the full list
            return names - {"self"}
    return None


def _check_fit_kwargs(model, fit_kwargs: dict) -> None:
    """Refuse what `fit` would refuse, or what fit_resumable decides itself, before any file is written."""
    if "initial_epoch" in fit_kwargs:
        raise TypeError("fit_resumable takes no `initial_epoch`: it resumes at the run folder's last saved epoch.")
    accepted = _fit_parameters(model)
    if accepted is not None:
        accepted -= _OWN_ARGUMENTS
        unknown = [name for name in fit_kwargs if name not in accepted]
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, sorted(accepted), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise TypeError(f"fit_resumable got an unexpected keyword argument `{name}`, which `model.fit` does not "
                            f"take.{hint} It passes on: {', '.join(sorted(accepted))}.")
    batch_size = fit_kwargs.get("batch_size")
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    callbacks = fit_kwargs.get("callbacks")
    if callbacks is not None and (not isinstance(callbacks, (list, tuple)) or not all(
            isinstance(callback, keras.callbacks.Callback) for callback in callbacks)):
        raise TypeError(f"`callbacks` must be a list of keras.callbacks.Callback objects, got {callbacks!r}.")


def _fit_in_folder(model, x, y, run_dir, epochs: int, config, fit_kwargs: dict) -> dict[str, list[float]]:
    if run_dir is None:
        return model.fit(x, y, epochs=epochs, **fit_kwargs).history
    config = runs.run_settings(model, x, fit_kwargs) if config is None else config
    trains = runs.run_record(model, x, y, epochs, fit_kwargs)
    run_dir = runs.find_run_folder(Path(run_dir), config, trains)  # its config.json and run.json are this run's
    _io.make_folder(run_dir, f"`run_dir` {_io.shown(run_dir)}", "pass the path of a folder")
    with RunLock(run_dir) as lock:  # one writer per folder; released on any exit, Ctrl-C included
        for name, record in (("config.json", config), (runs.RUN_RECORD, trains)):
            if not (run_dir / name).exists():
                _io.write_text(run_dir / name, json.dumps(record, indent=1) + "\n")
        checkpoint = RunCheckpoint(run_dir, lock=lock)
        done = checkpoint.restore(model)
        if not done and (history := runs.load_finished_run(model, run_dir, trains)) is not None:
            checkpoint.adopt_history(history)
            done = epochs
        if done > epochs:
            raise ValueError(f"{run_dir} holds a run trained for {done} epochs, more than epochs={epochs}; "
                             f"pass epochs >= {done} or another run_dir.")
        if done == epochs:
            last = " - ".join(f"{name}: {values[-1]:.4f}" for name, values in checkpoint.history().items())
            print(f"{run_dir.name}: all {epochs} epochs were trained earlier; loading the weights from "
                  f"{_io.shown(run_dir)}\n  epoch {epochs}: {last}")
        else:
            if done:
                print(f"{run_dir.name}: resuming at epoch {done + 1} of {epochs} from {_io.shown(run_dir)}")
            callbacks = [*(fit_kwargs.pop("callbacks", None) or []), checkpoint]
            model.fit(x, y, epochs=epochs, initial_epoch=done, callbacks=callbacks, **fit_kwargs)
        if len(checkpoint.rows) == epochs and not (run_dir / runs.WEIGHTS_FILE).exists():
            lock.check()
            runs.write_finished_run(model, run_dir)
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

    def __init__(self, run_dir: str | os.PathLike, lock: RunLock | None = None):
        super().__init__()
        run_dir = check_run_dir(run_dir)
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
        saved_model, given_model = record.get("model"), runs.model_record(model)
        differences = runs.model_differences(saved_model, given_model) if saved_model and given_model else []
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
                variables = runs.seed_states(model)
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
        seed_states = runs.seed_states(self.model)
        arrays.update({f"seed_state_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(seed_states)})
        if self._model_record is None:
            self._model_record = runs.model_record(self.model)
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

    def adopt_history(self, history: Path) -> None:
        """Take the epochs of a finished run kept without its checkpoint from its `history.csv`."""
        self.rows = pd.read_csv(history).drop(columns="epoch").to_dict("records")
        if history != self.history_csv:  # fetched: the folder gets its own history.csv
            self._write_history_csv()

    def _write_history_csv(self) -> None:
        frame = pd.DataFrame(self.rows)
        frame.insert(0, "epoch", range(len(frame)))
        with _io.replacing(self.history_csv) as temporary:
            frame.to_csv(temporary, index=False)



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
        raise runs.damaged(path, error, way_out) from error
    return record, weights, optimizer_values, seed_states


# --- Burda et al. (2016)'s training settings, shared by notebook 08 and scripts/burda_paper_length.py ------

def burda_learning_rate(steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Burda et al.'s stages: 3^i epochs at 0.001 * 10^(-i/7), i = 0..7, as a schedule of the optimizer's steps.

    It reads the optimizer's step count, which the run's checkpoint keeps, so a resumed
    run carries on in the stage it stopped in.

        vae.compile(optimizer=keras.optimizers.Adam(training.burda_learning_rate(len(batches)), epsilon=1e-4))
    """
    steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
    stage_epochs = [3 ** i for i in range(8)]  # 1, 3, 9, ..., 2187: 3,280 in all
    # Keras takes values[i + 1] once the step (counted from 0) passes boundaries[i]: each stage's last step.
    boundaries = [steps_per_epoch * sum(stage_epochs[:i + 1]) - 1 for i in range(7)]
    rates = [1e-3 * 10 ** (-i / 7) for i in range(8)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, rates)


def set_output_bias_to_mean(vae: keras.Model, x_train) -> None:
    """Start the decoder's output layer at the training images' mean: sigmoid(bias) = the mean of each pixel.

    Burda et al.'s published code starts the Bernoulli decoder's output bias at the logit of
    the training pixels' mean (clipped to [1e-4, 1 - 1e-4], so that a pixel never lit gets
    a finite bias). `vae` is a `vaekit.fc_vae`, whose decoder ends in Dense(pixels, sigmoid)
    then Reshape; a decoder that ends otherwise (`conv_vae`'s transposed convolution) is
    refused, as are images of another size than the decoder's output or outside [0, 1].
    """
    decoder = getattr(vae, "decoder", None)
    if not isinstance(vae, keras.Model) or not isinstance(decoder, keras.Model):
        raise TypeError(f"`vae` must be a VAE with a `decoder` (e.g. `vaekit.fc_vae(...)`), got {type(vae).__name__}.")
    layers = decoder.layers
    output = layers[-2] if len(layers) >= 2 and isinstance(layers[-1], keras.layers.Reshape) else None
    if not (isinstance(output, keras.layers.Dense) and output.use_bias
            and output.activation is keras.activations.sigmoid):
        found = " -> ".join(type(layer).__name__ for layer in layers[-2:])
        raise ValueError(f"`vae`'s decoder must end in a Dense layer with a bias and a sigmoid, then a Reshape, as "
                         f"`vaekit.fc_vae`'s does; {vae.name}'s decoder ends in {found}.")
    x_train = check_images("x_train", x_train)
    pixels = x_train.reshape(len(x_train), -1)
    if pixels.shape[1] != output.units:
        raise ValueError(f"`x_train` must hold images of the decoder's output size, {output.units} pixels, "
                         f"got batch shape {x_train.shape}.")
    mean = np.clip(pixels.mean(axis=0), 1e-4, 1 - 1e-4)
    output.bias.assign(np.log(mean / (1 - mean)).astype("float32"))
