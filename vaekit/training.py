"""Runs that survive a stop: `fit_resumable`, one folder per training run.

A grid of full-length runs on a CPU takes hours. `fit_resumable(model, x, run_dir=...,
epochs=...)` is `model.fit` that saves the run after every epoch and, called again,
resumes at the first unfinished epoch, or only loads a finished run. Everything a run
folder needs is here:

* **the checkpoint** (`RunCheckpoint`): weights, optimizer state, the random streams'
  position and every epoch's numbers in one file, written atomically (`vaekit._io`);
  `history.csv` beside it; the epoch before kept as `checkpoint.previous.npz`;
* **what it trains** (`run.json`, `run_record`: the model's own config from `model_record`,
  with Keras' automatic layer names replaced by their order, the loss, the optimizer, the
  batch size, the epochs, the data's SHA-256) and **the config** (`config.json`, by default
  `run_settings`): a run with other settings trains in a sibling folder of its own
  (`find_run_folder`), so a folder is never resumed or loaded with settings not its own;
* **the finished run** (`model.weights.h5`, weights only): loaded instead of trained where
  the checkpoint is absent, as in a checkout, or fetched (`vaekit.shipped`);
* **damaged files** (`DamagedRunFileError`) are named with the way out, instead of the
  reader's own `BadZipFile` or `JSONDecodeError`;
* **one writer at a time**: `vaekit._lock.RunLock`, held for the whole call; a folder that
  stopped taking writes mid-run is taken back by the same process once it is writable again.

Where a notebook's run folders go is `vaekit.experiments.run_dir`'s business. The NaN stop
(`vaekit.vae.StopOnNonFiniteLoss`) is part of `VAE.fit`, so it guards these runs too.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import inspect
import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from vaekit import _io
from vaekit._lock import RunFolderBusyError, RunLock  # noqa: F401  (raised from here)
from vaekit.vae import ChecksItsData, check_devices, check_positive_int


class DamagedRunFileError(ValueError):
    """A run folder's file cannot be read back: cut short, emptied or altered."""


def damaged(path: Path, error: BaseException, way_out: str) -> DamagedRunFileError:
    """The error for a run file that failed to read with `error`; `way_out` says what the user can do."""
    return DamagedRunFileError(f"{path} is damaged and cannot be read ({type(error).__name__}: {error}); "
                               f"it was cut short, emptied or altered after it was written. {way_out}")


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Keys of a layer's config that do not change what the model computes or which weights fit it: seeds, and
# where Keras keeps a class (moved between Keras versions; the class name itself is compared).
_IGNORED_KEYS = frozenset({"seed", "module", "registered_name"})


def model_record(model) -> dict | None:
    """The model's config with automatic layer names replaced by "<layer k>", as JSON data; None if it has none."""
    try:
        config = json.loads(json.dumps(model.get_config(), default=repr))
    except Exception:  # a subclassed model without get_config: nothing to compare
        return None
    if isinstance(config, dict):
        config.pop("name", None)  # the model's own name: Keras numbers unnamed ones ("functional_3"); not its shape
    names: dict[str, str] = {}

    def collect(value):
        if isinstance(value, dict):
            inner = value.get("config")
            if "class_name" in value and isinstance(inner, dict) and isinstance(inner.get("name"), str):
                names.setdefault(inner["name"], f"<layer {len(names)}>")
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    def rename(value):
        if isinstance(value, dict):
            return {key: rename(item) for key, item in value.items() if key not in _IGNORED_KEYS}
        if isinstance(value, list):
            return [rename(item) for item in value]
        if not isinstance(value, str):
            return value
        return _ADDRESS.sub("", names.get(value, value))  # repr()s of objects differ by address only

    collect(config)
    for fixed in ("encoder", "decoder"):  # names vaekit gives itself: kept, they are part of the contract
        names.pop(fixed, None)
    return rename(config)


def model_differences(saved, given, where: str = "", limit: int = 6) -> list[str]:
    """Where two `model_record`s differ, as "path: saved X, given Y" lines (keys only one has are skipped:
    a newer Keras may add options with their defaults)."""
    return [f"{path or 'model'}: {saved_value}" if given_value is _COUNT else
            f"{path or 'model'}: saved {saved_value!r}, given {given_value!r}"
            for path, saved_value, given_value in _differences(saved, given, where)][:limit]


_COUNT = object()  # marks a difference in the number of entries of a list


def _differences(saved, given, where: str = "") -> list[tuple[str, object, object]]:
    """Where two JSON records differ, as (path, saved, given) triples; keys only one of them has are skipped."""
    if isinstance(saved, (dict, list)) != isinstance(given, (dict, list)) or (
            isinstance(saved, dict) != isinstance(given, dict)):
        return []  # one value written in two formats (a Keras upgrade changed how it saves it): not comparable
    if isinstance(saved, dict) and isinstance(given, dict):
        found = []
        for key in [key for key in saved if key in given]:  # in the saved order, so messages read the same each time
            found += _differences(saved[key], given[key], f"{where}.{key}" if where else str(key))
        return found
    if isinstance(saved, list) and isinstance(given, list):
        if len(saved) != len(given):
            return [(where, f"{len(saved)} entries saved, {len(given)} given", _COUNT)]
        return [found for index, (a, b) in enumerate(zip(saved, given))
                for found in _differences(a, b, f"{where}[{index}]")]
    if saved != given and not (_is_number(saved) and _is_number(given) and float(saved) == float(given)):
        return [(where, saved, given)]
    return []


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    named after the difference (`find_run_folder`), printed; the same settings find it
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
            Without it, `run_settings` derives one from the model and the fit arguments:
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
    config = run_settings(model, x, fit_kwargs) if config is None else config
    trains = run_record(model, x, y, epochs, fit_kwargs)
    run_dir = _run_folder(find_run_folder(Path(run_dir), config, trains))
    with RunLock(run_dir) as lock:  # one writer per folder; released on any exit, Ctrl-C included
        _check_run_config(run_dir / "config.json", config)
        if not (run_dir / RUN_RECORD).exists():
            _io.write_text(run_dir / RUN_RECORD, json.dumps(trains, indent=1) + "\n")
        checkpoint = RunCheckpoint(run_dir, lock=lock)
        done = checkpoint.restore(model)
        if not done and _load_finished_run(model, run_dir, checkpoint, trains):
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
        if len(checkpoint.rows) == epochs and not (run_dir / WEIGHTS_FILE).exists():
            _write_finished_run(model, run_dir, lock)
        return checkpoint.history()


# The files of a finished run that a checkout keeps (docs/training.md): what it trains and its weights.
RUN_RECORD = "run.json"
WEIGHTS_FILE = "model.weights.h5"


def run_record(model: keras.Model, x, y, epochs: int, fit_kwargs: Mapping) -> dict:
    """What a run trains, as JSON data: the model's record, its loss and optimizer, the batch size, the epochs, the data.

    Two runs with equal records train the same thing; `fit_resumable` keeps each record in its
    folder's `run.json` and gives a run whose record differs a folder of its own. The data are
    recorded by a SHA-256 of their bytes (arrays) or not at all (a `tf.data.Dataset`, a
    generator: say what they hold in `config`).
    """
    optimizer = getattr(model, "optimizer", None)
    optimizer_config = None
    if optimizer is not None:
        optimizer_config = {key: value for key, value in optimizer.get_config().items() if key != "name"}
        optimizer_config = {"class": type(optimizer).__name__, **optimizer_config}
    loss = getattr(model, "loss", None)
    if isinstance(loss, keras.losses.Loss):
        loss = keras.losses.serialize(loss)
    record = {"model": model_record(model), "loss": loss, "optimizer": optimizer_config,
              "batch_size": fit_kwargs.get("batch_size"), "epochs": epochs,
              "data": {name: data_fingerprint(value) for name, value in (("x", x), ("y", y)) if value is not None}}
    return json.loads(_ADDRESS.sub("", json.dumps(_rounded(record), default=repr)))


def _rounded(value):
    """Floats as float32 stores them, written short: 1e-3 is 0.001, not 0.0010000000474974513."""
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return float(str(np.float32(value))) if isinstance(value, float) else value


def data_fingerprint(data) -> str | None:
    """"sha256:<hex>" of an array's shape, dtype and bytes; None for data that is not an array."""
    if not hasattr(data, "shape") or not hasattr(data, "dtype") or hasattr(data, "element_spec"):
        return None
    array = np.ascontiguousarray(keras.ops.convert_to_numpy(data))
    digest = hashlib.sha256(f"{array.shape} {array.dtype}".encode())
    digest.update(memoryview(array).cast("B"))
    return f"sha256:{digest.hexdigest()}"


def find_run_folder(run_dir: Path, config: Mapping, trains: dict) -> Path:
    """The folder a run with this `config` and `run_record` trains in: `run_dir`, or a sibling of its own.

    `run_dir` itself when it is new, empty, or holds this very run; otherwise the sibling
    `<run_dir>-<what differs>-<hash>` that holds it or will. So a changed setting (another
    size, loss, learning rate, number of epochs, data) trains a run of its own, and the
    unchanged one finds and loads its run.
    """
    differences = _folder_differences(run_dir, config, trains)
    if differences is None:
        return run_dir
    for sibling in sorted(run_dir.parent.glob(f"{glob.escape(run_dir.name)}-*")):
        if sibling.is_dir() and _folder_differences(sibling, config, trains) is None:
            return sibling
    digest = hashlib.sha256(json.dumps([config, trains], sort_keys=True).encode()).hexdigest()[:8]
    differences = [difference for difference in differences if difference[2] is not _COUNT] or differences
    labels = [_label(path, given) for path, _, given in differences]
    label = "-".join(list(dict.fromkeys(labels))[:2])  # a setting both in `config` and the record, named once
    sibling = run_dir.with_name(f"{run_dir.name}-{label}-{digest}" if label else f"{run_dir.name}-{digest}")
    shown = "; ".join("other data" if label == "data" else f"{path}: {_short(saved)} there, {_short(given)} here"
                      for label, (path, saved, given) in dict(zip(labels, differences)).items()) or "another model"
    print(f"{_io.shown(run_dir)} holds a run with other settings ({shown}): this run's folder is {_io.shown(sibling)}")
    return sibling


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _label(path: str, given) -> str:
    """A short name for one changed setting, for a folder name: "units16", "loss-mse", "data"."""
    leaf = path.split(".")[-1].split("[")[0]
    if leaf in ("x", "y") or path.startswith("data"):
        return "data"
    text = f"{leaf}{given}" if _is_number(given) else f"{leaf}-{given}" if isinstance(given, str) and len(given) <= 24 else leaf
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:32]


def _folder_differences(folder: Path, config: Mapping, trains: dict) -> list | None:
    """How the run in `folder` differs from the one given ((path, there, here) triples); None if it is this run or none."""
    config = json.loads(json.dumps(dict(config)))
    saved_config = _read_json(folder / "config.json", f"It should hold this run's `config`; delete it and run again "
                              f"to write it anew from the config given ({config}), if that is the run's.")
    saved = _read_json(folder / RUN_RECORD, "Delete it and run again to write it anew, if the folder holds this run.")
    differences = []
    if saved_config is not None and saved_config != config:
        differences += _differences(saved_config, config, "config") or [("config", saved_config, config)]
    if saved is not None:
        differences += _differences({key: saved[key] for key in trains if key in saved}, trains)
    return differences or None


def _read_json(path: Path, way_out: str):
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise damaged(path, error, way_out) from error


def _write_finished_run(model: keras.Model, run_dir: Path, lock: RunLock) -> None:
    """Save a finished run's weights (no optimizer state) and where its random streams stand, for a checkout to keep."""
    lock.check()
    optimizer = model.optimizer
    model.optimizer = None  # weights only: the optimizer's state is the checkpoint's business
    try:
        with _io.replacing(run_dir / WEIGHTS_FILE) as temporary:
            model.save_weights(temporary.with_suffix(".weights.h5"))  # Keras chooses the format by this ending
            os.replace(temporary.with_suffix(".weights.h5"), temporary)
    finally:
        model.optimizer = optimizer
    record = json.loads((run_dir / RUN_RECORD).read_text())
    record["seed_states"] = [keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(model)]
    _io.write_text(run_dir / RUN_RECORD, json.dumps(record, indent=1) + "\n")


def _load_finished_run(model: keras.Model, run_dir: Path, checkpoint: "RunCheckpoint", trains: dict) -> bool:
    """Load a finished run kept without its checkpoint (the weights a checkout ships, or fetched); False if none."""
    from vaekit import shipped  # noqa: PLC0415  (fetching is needed only here)

    files = shipped.finished_run_files(run_dir, trains)
    if files is None:
        return False
    weights, record, history = files
    with warnings.catch_warnings():  # the file has no optimizer state, by design
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(weights)
    variables = _seed_states(model)
    for variable, value in zip(variables, record.get("seed_states") or []):
        variable.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(variable.dtype)))
    checkpoint.rows = pd.read_csv(history).drop(columns="epoch").to_dict("records")
    if history != checkpoint.history_csv:
        checkpoint._write_history_csv()
    return True


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
        saved_model, given_model = record.get("model"), model_record(model)
        differences = model_differences(saved_model, given_model) if saved_model and given_model else []
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
            self._model_record = model_record(self.model)
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
        raise damaged(path, error, way_out) from error
    return record, weights, optimizer_values, seed_states


def run_settings(model: keras.Model, x, fit_kwargs: Mapping) -> dict:
    """A run's training settings, read from the model and `fit`'s arguments: `fit_resumable`'s default config.

    The optimizer's class and learning rate (a schedule as its config), the batch size and,
    for an array, the number of training examples. The model's own config (sizes, β, the
    sampling seed) is not repeated: the checkpoint records it and refuses another model.
    """
    optimizer = getattr(model, "optimizer", None)
    learning_rate = None if optimizer is None else optimizer.get_config().get("learning_rate")
    if isinstance(learning_rate, float):  # a schedule's config is kept as Keras writes it
        learning_rate = _rounded(learning_rate)
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
            raise damaged(path, error, f"It should hold this run's `config`; delete it and run again to "
                                     f"write it anew from the config given ({config}), if that is the run's.") from error
        if saved != config:
            raise ValueError(f"{path.parent} holds a run with another config:\n  saved {saved}\n  given {config}\n"
                             "Pass another `run_dir`, or delete the folder to start that run again.")
    else:
        _io.write_text(path, json.dumps(config, indent=1) + "\n")
