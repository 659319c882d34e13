"""What every notebook and script does before and after training.

Quick mode (small subsets for CI), where figures and predictions go, a printout
of the versions and hardware a run used, results tables, and `fit_resumable`, a
`fit` that picks up where a stopped run left off. Seed a run with
`keras.utils.set_random_seed`; the metrics are in `evaluate`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from vaekit import _checks

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
    frame.to_csv(path.with_suffix(".csv"))
    # tabulate reads rows, which upcasts integer columns to float ("2.835e+04"); object keeps them whole.
    integers = {column: object for column in frame.columns if pd.api.types.is_integer_dtype(frame[column])}
    path.with_suffix(".md").write_text(frame.astype(integers).to_markdown(floatfmt=floatfmt) + "\n")
    return frame


def fit_resumable(model: keras.Model, x, y=None, *, run_dir: str | os.PathLike | None, epochs: int,
                  config: Mapping | None = None, **fit_kwargs) -> dict[str, list[float]]:
    """`model.fit` that can be stopped and started again: one folder per training run.

    A grid of full-length runs on a CPU takes hours. With a `run_dir`, Keras'
    `BackupAndRestore` saves the weights and the optimizer state after every epoch,
    and `CSVLogger` appends each epoch's numbers to `history.csv`. Calling again with
    the same folder resumes at the first unfinished epoch; once all `epochs` are done
    it only loads the weights. A resumed run matches an uninterrupted one in
    distribution, not bit for bit: the shuffling order and the sampling noise (whose
    generator state Keras does not save) start again from their seeds.

    Args:
        model: a compiled, built Keras model.
        x, y: training data, as for `fit`.
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
    if run_dir is None:
        return model.fit(x, y, epochs=epochs, **fit_kwargs).history
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_run_config(run_dir / "config.json", config)
    backup = run_dir / "backup"
    done = _epochs_done(backup)
    if done > epochs:
        raise ValueError(f"{run_dir} holds a run trained for {done} epochs, more than epochs={epochs}; "
                         f"pass epochs >= {done} or another run_dir.")
    history_csv = run_dir / "history.csv"
    if done == epochs:
        last = " - ".join(f"{name}: {values[-1]:.4f}" for name, values in _read_history(history_csv, epochs).items())
        print(f"{run_dir.name}: all {epochs} epochs were trained earlier; loading the weights from "
              f"{_shown(run_dir)}\n  epoch {epochs}: {last}")
    elif done:
        print(f"{run_dir.name}: resuming at epoch {done + 1} of {epochs} from {_shown(run_dir)}")
    callbacks = [
        # The CSV first: a stop between the two leaves an epoch logged but not backed up,
        # which is then trained again and logged twice (the later line wins), never lost.
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False),
        *(fit_kwargs.pop("callbacks", None) or []),
    ]
    model.fit(x, y, epochs=epochs, callbacks=callbacks, **fit_kwargs)
    return _read_history(history_csv, epochs)


def _check_run_config(path: Path, config: Mapping | None) -> None:
    config = json.loads(json.dumps(dict(config or {})))  # as it reads back: tuples become lists
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != config:
            raise ValueError(f"{path.parent} holds a run with another config:\n  saved {saved}\n  given {config}\n"
                             "Pass another `run_dir`, or delete the folder to start that run again.")
    else:
        path.write_text(json.dumps(config, indent=1) + "\n")


def _shown(path: Path) -> str:
    """`path` relative to the working directory where it can be: outputs stay machine-neutral."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return str(path)


def _epochs_done(backup: Path) -> int:
    metadata = backup / "training_metadata.json"  # written by BackupAndRestore
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else 0


def _read_history(path: Path, epochs: int) -> dict[str, list[float]]:
    log = pd.read_csv(path).drop_duplicates("epoch", keep="last").sort_values("epoch")
    log = log[log["epoch"] < epochs]
    # CSVLogger writes empty val_ columns when there is no validation data; fit would have none.
    empty = [name for name in log.columns if name.startswith("val_") and log[name].isna().all()]
    return {name: log[name].astype(float).tolist() for name in log.columns.drop(["epoch", *empty])}


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
