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

from vaekit import _checks, _io

QUICK_VARIABLE = "VAEKIT_QUICK"
EPOCHS_VARIABLE = "VAEKIT_EPOCHS"
OUTPUT_VARIABLE = "VAEKIT_OUTPUT_DIR"


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
    cap = epoch_cap()
    if cap is not None:
        return min(seed_epochs, cap)
    return seed_epochs


def epoch_cap() -> int | None:
    """The epoch cap `$VAEKIT_EPOCHS` sets for a shortened run, or None when it is unset or empty."""
    cap = os.environ.get(EPOCHS_VARIABLE, "").strip()
    if not cap:
        return None
    if not cap.isdigit() or int(cap) < 1:
        raise ValueError(f"${EPOCHS_VARIABLE} must be a positive integer, got {cap!r}; "
                         "unset it (or set it empty) for a full-length run.")
    return int(cap)


def project_root() -> Path:
    """The folder that receives `figures/`, `predictions/`, `runs/`, `models/`: where the notebook runs.

    The one exception is this repository's own `notebooks/` (or `benchmarks/`) folder,
    recognised by a `pyproject.toml` naming vaekit beside it: there the outputs go to the
    repository's `figures/` and `predictions/`. A notebook copied anywhere else (Colab's
    `/content`, a course folder) writes next to itself, never into a checkout it did not
    come from. A quick or shortened run, or any run with `$VAEKIT_OUTPUT_DIR` set, has its
    own folder instead (`run_output_folder`), wherever it runs.
    """
    own_folder = run_output_folder()
    if own_folder is not None:
        return own_folder
    return _full_run_root()


def _full_run_root() -> Path:
    """`project_root` of a full run: the checkout from its notebooks/ or benchmarks/, else the working folder."""
    cwd = Path.cwd()
    if cwd.name in ("notebooks", "benchmarks") and _is_vaekit_checkout(cwd.parent):
        return cwd.parent
    return cwd


def run_output_folder() -> Path | None:
    """The folder of this run's own outputs, or None for a full run that writes as `project_root` says.

    `$VAEKIT_OUTPUT_DIR`, when set, is that folder for every run. Otherwise a quick run
    (`$VAEKIT_QUICK`) or a shortened one (`$VAEKIT_EPOCHS`) gets a fresh temporary folder,
    made on first use and kept for the rest of the process (one per notebook kernel):
    its figures, tables, run logs and saved models never land on the committed results
    of full runs, and it never finds, resumes or loads what another run left behind.
    `describe_run` prints which folder it is.
    """
    chosen = os.environ.get(OUTPUT_VARIABLE, "").strip()
    if chosen:
        folder = Path(chosen).expanduser().absolute()
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"${OUTPUT_VARIABLE} is {chosen!r}, an existing file; set it to a folder "
                             "(it is created if missing) or unset it.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a parent is a file, or no permission
            raise ValueError(f"${OUTPUT_VARIABLE} is {chosen!r}, which cannot be created as a folder ({error}); "
                             "set it to a folder you can write to, or unset it.") from error
        return folder
    mode = _run_mode()
    if mode == "full":
        return None
    if mode not in _fresh_output_folders:
        _fresh_output_folders[mode] = Path(tempfile.mkdtemp(prefix=f"vaekit-{mode}-"))
    return _fresh_output_folders[mode]


# One fresh folder per mode and process; tests reset it to stand in for a second process.
_fresh_output_folders: dict[str, Path] = {}


def _run_mode() -> str:
    """"quick", "shortened" (`$VAEKIT_EPOCHS` set) or "full"."""
    if quick_mode():
        return "quick"
    return "shortened" if epoch_cap() is not None else "full"


def _is_vaekit_checkout(folder: Path) -> bool:
    try:
        text = (folder / "pyproject.toml").read_text()
    except OSError:
        return False
    return re.search(r'^name\s*=\s*"vaekit"', text, re.MULTILINE) is not None


def output_dir(kind: str = "figures") -> Path:
    """Where a run writes `kind` ("figures", "predictions", "models").

    `project_root() / kind`: for a full run the checkout's (or the notebook's own folder's)
    `figures/` and `predictions/`; for a quick or shortened run, its own folder's
    (`run_output_folder`), so that neither the tests nor a shortened run overwrite the
    committed results of full runs.
    """
    path = project_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe_run(seed: int | None = None) -> None:
    """Print one line each for the versions, backend, device and seed a run used.

    A quick or shortened run, or one with `$VAEKIT_OUTPUT_DIR`, also says so (with the
    epoch cap) and names the folder its outputs go to; a full run prints only the four lines.
    """
    backend = keras.backend.backend()
    lines = [
        f"python {platform.python_version()}, keras {keras.__version__}, numpy {np.__version__}",
        f"backend {backend} {_backend_version(backend)}, device {_device(backend)}",
        f"platform {platform.platform()}, {os.cpu_count()} CPU cores",
        f"seed {seed}, quick mode {'on' if quick_mode() else 'off'}",
        *_run_lines(),
    ]
    print("\n".join(lines))


def _run_lines() -> list[str]:
    """What `describe_run` adds for a run that is not a full one, or writes where the user chose."""
    folder = run_output_folder()
    if folder is None:
        return []
    mode = _run_mode()
    lines = []
    if mode == "quick":
        lines.append(f"quick run (${QUICK_VARIABLE}): small subsets, 1 epoch per training; not the notebook's results")
    elif mode == "shortened":
        lines.append(f"shortened run: every training capped at {epoch_cap()} epochs by ${EPOCHS_VARIABLE} "
                     "(unset it for the full length); not the notebook's results")
    # Relative inside the checkout (or the notebook's folder), so committed outputs stay machine-neutral;
    # absolute elsewhere (a temporary folder), where "../../tmp/..." would hide where it is.
    home = _full_run_root().absolute()
    shown = _shown(folder) if folder == home or home in folder.parents else str(folder)
    lines.append(f"outputs (figures, predictions, runs, models) go to {shown}")
    earlier = sorted(str(path.relative_to(folder)) for kind in ("runs", "models") if (folder / kind).is_dir()
                     for path in (folder / kind).iterdir())
    if earlier:  # possible only in a folder named by $VAEKIT_OUTPUT_DIR, or after another run in this process
        listed = ", ".join(earlier[:6]) + (f" and {len(earlier) - 6} more" if len(earlier) > 6 else "")
        lines.append(f"that folder holds an earlier run's {listed}: finished runs there are loaded, not retrained, "
                     "and saved models are reused; choose an empty folder to start afresh")
    return lines


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
    if hasattr(model, "check_data"):  # a vaekit.VAE: refuse bad data before any file is written
        x, validation_data = model.check_data(x, fit_kwargs.get("validation_data"))
        if validation_data is not None:
            fit_kwargs["validation_data"] = validation_data
    if run_dir is None:
        return model.fit(x, y, epochs=epochs, **fit_kwargs).history
    run_dir = _run_folder(run_dir)
    _check_run_config(run_dir / "config.json", config)
    checkpoint = RunCheckpoint(run_dir)
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
    An epoch whose loss is not finite is not saved.
    """

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(run_dir) / "checkpoint.npz"
        self.history_csv = Path(run_dir) / "history.csv"
        self.rows: list[dict[str, float]] = []  # one per finished epoch

    def restore(self, model: keras.Model) -> int:
        """Load the saved state into `model`; returns the number of finished epochs (0 if none)."""
        for leftover in self.path.parent.glob(f".*{_io.TEMPORARY_MARK}*"):  # from a kill mid-save
            leftover.unlink(missing_ok=True)
        if not self.path.exists():
            return 0
        with np.load(self.path, allow_pickle=False) as saved:
            record = json.loads(str(saved["record"]))
            weights = [saved[f"weight_{i}"] for i in range(record["weights"])]
            optimizer_values = [saved[f"optimizer_{i}"] for i in range(record["optimizer_variables"])]
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
        record = {"rows": self.rows, "weights": len(self.model.weights), "optimizer_variables": len(optimizer_variables)}
        with _io.replacing(self.path) as temporary:
            np.savez(temporary, record=np.array(json.dumps(record)), **arrays)
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
        saved = json.loads(path.read_text())
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
