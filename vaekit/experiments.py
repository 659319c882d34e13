"""What every notebook and script does before and after training.

Quick mode (small subsets for CI), where figures and predictions go, a printout
of the versions and hardware a run used, results tables, and `fit_resumable`, a
`fit` that picks up where a stopped run left off. Seed a run with
`keras.utils.set_random_seed`; the metrics are in `evaluate`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from vaekit import _checks, _io, _runfolder
from vaekit._runfolder import DamagedRunFileError, RunFolderBusyError

QUICK_VARIABLE = "VAEKIT_QUICK"
EPOCHS_VARIABLE = "VAEKIT_EPOCHS"


def quick_mode() -> bool:
    """True when `$VAEKIT_QUICK` is set to 1/true/yes: tiny subsets and one short epoch."""
    return os.environ.get(QUICK_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def epochs(seed_epochs: int) -> int:
    """How many epochs to train: the seed's count, 1 in quick mode, capped by `$VAEKIT_EPOCHS`.

    The cap is for shortened runs on a CPU; notebooks print the count they used, so a
    shortened run is never mistaken for the seed's setting.
    """
    if quick_mode():
        return 1
    cap = os.environ.get(EPOCHS_VARIABLE, "").strip()
    if cap:
        if not cap.isdigit() or int(cap) < 1:
            raise ValueError(f"${EPOCHS_VARIABLE} must be a positive integer, got {cap!r}.")
        return min(seed_epochs, int(cap))
    return seed_epochs


def project_root() -> Path:
    """The folder that receives `figures/`, `predictions/`, `runs/`: where the notebook runs.

    The one exception is this repository's own `notebooks/` (or `benchmarks/`) folder,
    recognised by a `pyproject.toml` naming vaekit beside it: there the outputs go to the
    repository's `figures/` and `predictions/`. A notebook copied anywhere else (Colab's
    `/content`, a course folder) writes next to itself, never into a checkout it did not
    come from.
    """
    cwd = Path.cwd()
    if cwd.name in ("notebooks", "benchmarks") and _is_vaekit_checkout(cwd.parent):
        return cwd.parent
    return cwd


def _is_vaekit_checkout(folder: Path) -> bool:
    try:
        text = (folder / "pyproject.toml").read_text()
    except OSError:
        return False
    return re.search(r'^name\s*=\s*"vaekit"', text, re.MULTILINE) is not None


def output_dir(kind: str = "figures") -> Path:
    """Where a run writes `kind` ("figures", "predictions").

    Full runs write into `project_root() / kind`; quick runs into a temporary folder,
    so that running the tests never overwrites the committed results of full runs.
    """
    if quick_mode():
        path = Path(tempfile.gettempdir()) / "vaekit-quick" / kind
    else:
        path = project_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe_run(seed: int | None = None) -> None:
    """Print one line each for the versions, backend, device and seed a run used."""
    backend = keras.backend.backend()
    lines = [
        f"python {platform.python_version()}, keras {keras.__version__}, numpy {np.__version__}",
        f"backend {backend} {_backend_version(backend)}, device {_device(backend)}",
        f"platform {platform.platform()}, {os.cpu_count()} CPU cores",
        f"seed {seed}, quick mode {'on' if quick_mode() else 'off'}",
    ]
    print("\n".join(lines))


def save_table(frame: pd.DataFrame, path: str | os.PathLike, floatfmt: str = ".4g") -> pd.DataFrame:
    """Write a results table as `<path>.csv` and `<path>.md` (Markdown); returns it."""
    path = Path(path)
    with _io.replacing(path.with_suffix(".csv")) as temporary:
        frame.to_csv(temporary)
    # tabulate reads rows, which upcasts integer columns to float ("2.835e+04"); object keeps them whole.
    integers = {column: object for column in frame.columns if pd.api.types.is_integer_dtype(frame[column])}
    _io.write_text(path.with_suffix(".md"), frame.astype(integers).to_markdown(floatfmt=floatfmt) + "\n")
    return frame


def fit_resumable(model: keras.Model, x, y=None, *, run_dir: str | os.PathLike | None, epochs: int,
                  config: Mapping | None = None, **fit_kwargs) -> dict[str, list[float]]:
    """`model.fit` that can be stopped and started again: one folder per training run.

    A grid of full-length runs on a CPU takes hours. With a `run_dir`, the weights,
    the optimizer state and the numbers of every finished epoch are saved after each
    epoch in one file, `checkpoint.npz`, written under a temporary name and then
    renamed, so a run killed at any moment (even mid-save) keeps its last finished
    epoch; `history.csv` is rewritten from it. Calling again with the same folder
    resumes at the first unfinished epoch; once all `epochs` are done it only loads
    the weights. A resumed run matches an uninterrupted one in distribution, not bit
    for bit: the shuffling order and the sampling noise start again from their seeds.

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
        config: what defines the run (JSON-able: sizes, β, data...). It is written to
            `config.json` on the first call and must be equal on every later one, so a
            folder is never resumed with a different model.
        **fit_kwargs: passed to `fit` (`batch_size`, `validation_data`, `verbose`,
            `callbacks`...); not `initial_epoch`, which the folder decides.

    Returns:
        The history of every epoch, old and new, as `fit(...).history` would give it.
    """
    epochs = _checks.positive_int("epochs", epochs)
    if "initial_epoch" in fit_kwargs:
        raise TypeError("fit_resumable takes no `initial_epoch`: it resumes at the run folder's last saved epoch.")
    if hasattr(model, "check_data"):  # a vaekit.VAE or Autoencoder: refuse bad data before any file is written
        same_targets = y is x  # fit(x, x): the targets are the inputs, checked once
        x, validation_data = model.check_data(x, fit_kwargs.get("validation_data"))
        if hasattr(model, "check_targets"):  # an Autoencoder's y
            y = x if same_targets else model.check_targets(y)
        if validation_data is not None:
            fit_kwargs["validation_data"] = validation_data
    if run_dir is None:
        return model.fit(x, y, epochs=epochs, **fit_kwargs).history
    run_dir = _run_folder(run_dir)
    with _runfolder.RunLock(run_dir) as lock:  # one writer per folder; released on any exit, Ctrl-C included
        _check_run_config(run_dir / "config.json", config)
        checkpoint = RunCheckpoint(run_dir, lock=lock)
        done = checkpoint.restore(model)
        if done > epochs:
            raise ValueError(f"{run_dir} holds a run trained for {done} epochs, more than epochs={epochs}; "
                             f"pass epochs >= {done} or another run_dir.")
        if done == epochs:
            last = " - ".join(f"{name}: {values[-1]:.4f}" for name, values in checkpoint.history().items())
            print(f"{run_dir.name}: all {epochs} epochs were trained earlier; loading the weights from "
                  f"{_shown(run_dir)}\n  epoch {epochs}: {last}")
            return checkpoint.history()
        if done:
            print(f"{run_dir.name}: resuming at epoch {done + 1} of {epochs} from {_shown(run_dir)}")
        callbacks = [*(fit_kwargs.pop("callbacks", None) or []), checkpoint]
        model.fit(x, y, epochs=epochs, initial_epoch=done, callbacks=callbacks, **fit_kwargs)
        return checkpoint.history()


class RunCheckpoint(keras.callbacks.Callback):
    """Saves a run after every epoch: weights, optimizer state and the epochs' numbers.

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
        record, weights, optimizer_values = _read_checkpoint(path, self.previous)
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
        if self._model_record is None:
            self._model_record = _runfolder.model_record(self.model)
        record = {"rows": self.rows, "weights": len(self.model.weights), "optimizer_variables": len(optimizer_variables),
                  "model": self._model_record}
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


def _read_checkpoint(path: Path, previous: Path) -> tuple[dict, list, list]:
    """The record, weights and optimizer values in checkpoint `path`; `DamagedRunFileError` if it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            record = json.loads(str(saved["record"]))
            weights = [saved[f"weight_{i}"] for i in range(record["weights"])]
            optimizer_values = [saved[f"optimizer_{i}"] for i in range(record["optimizer_variables"])]
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
    return record, weights, optimizer_values


def _run_folder(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"`run_dir` {_shown(run_dir)} is an existing file; pass the path of a folder "
                         "(it is created if missing).")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a parent is a file, or no permission
        raise ValueError(f"`run_dir` {_shown(run_dir)} cannot be created as a folder ({error}).") from error
    return run_dir


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


def _shown(path: Path) -> str:
    """`path` relative to the working directory where it can be: outputs stay machine-neutral."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return str(path)


def _backend_version(backend: str) -> str:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    if module is None:
        return ""
    return getattr(__import__(module), "__version__", "")


def _device(backend: str) -> str:
    try:
        if backend == "jax":
            import jax

            return ", ".join(d.device_kind for d in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return ", ".join(g.name for g in gpus) or "CPU"
    except Exception:  # a device query must never stop a run
        pass
    return "unknown"
