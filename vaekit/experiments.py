"""A notebook's plumbing: quick mode, where outputs go, a printout of the run, tables.

Quick mode (small subsets for CI), the epoch count of a run, where figures,
predictions and run folders go, a printout of the versions and hardware a run used,
and results tables. Seed a run with `keras.utils.set_random_seed` (or `setup`); training,
`fit_resumable` included, is in `vaekit.training`, the metrics are in `vaekit.evaluate`.
"""

from __future__ import annotations

import logging
import numbers
import os
import platform
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from vaekit import _io
from vaekit._checks import check_name, check_output_path
from vaekit.guards import check_positive_int, check_seed

QUICK_VARIABLE = "VAEKIT_QUICK"
EPOCHS_VARIABLE = "VAEKIT_EPOCHS"
OUTPUT_VARIABLE = "VAEKIT_OUTPUT_DIR"


def quick_mode() -> bool:
    """True when `$VAEKIT_QUICK` is set to 1/true/yes: tiny subsets and one short epoch."""
    return os.environ.get(QUICK_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def epochs(full_epochs: int) -> int:
    """How many epochs to train: `full_epochs` (the reference setting), 1 in quick mode, capped by `$VAEKIT_EPOCHS`.

    The cap is for shortened runs on a CPU; notebooks print the count they used, so a
    shortened run is never mistaken for the reference setting.
    """
    full_epochs = check_positive_int("full_epochs", full_epochs)
    if quick_mode():
        return 1
    cap = epoch_cap()
    if cap is not None:
        return min(full_epochs, cap)
    return full_epochs


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
        return _io.make_folder(Path(chosen).expanduser().absolute(), f"${OUTPUT_VARIABLE} {chosen!r}",
                               "set it to a folder you can write to, or unset it")
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
    """Where a run writes `kind` ("figures", "predictions", "models"): `project_root() / kind`, created if missing.

    `project_root` says where that is for a full run and for a quick or shortened one.
    """
    kind = check_name("kind", kind, example="figures")
    path = project_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup(seed: int) -> Path:
    """A notebook's set-up in one call: seed Python, NumPy and the backend, print the run, return its figures folder.

        FIGURES = experiments.setup(SEED)

    is `keras.utils.set_random_seed(SEED)`, `describe_run(SEED)` and `output_dir("figures")`; it also
    silences TensorFlow's warning that the functions of several models count as retracing.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an integer >= 0, got {seed!r} ({type(seed).__name__}).")
    if seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed}.")
    seed = int(seed)
    figures = output_dir("figures")
    keras.utils.set_random_seed(seed)
    _quiet_per_model_retracing()
    describe_run(seed)
    return figures


class _PerModelRetracing(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls ... triggered tf.function retracing" warning.

    Every Keras model traces its own train, test and predict functions once. A notebook that
    trains several runs in one process creates several such functions, and TensorFlow counts
    their first traces as retracing; there is no loop to fix. Other TensorFlow messages pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _quiet_per_model_retracing() -> None:
    logger = logging.getLogger("tensorflow")  # TensorFlow's Python logger; harmless on the other backends
    if not any(isinstance(existing, _PerModelRetracing) for existing in logger.filters):
        logger.addFilter(_PerModelRetracing())


def run_dir(name: str) -> Path:
    """The folder of one training run, `runs/<name>` beside the figures (see `project_root`), for `fit_resumable`.

    A quick or shortened run gets it inside its own fresh folder, so it never resumes or
    overwrites a full run's.
    """
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"`name` must be a non-empty folder name without slashes, got {name!r}.")
    return project_root() / "runs" / name


def quick_or(full, quick):
    """`quick` when `$VAEKIT_QUICK` is set, `full` otherwise: a notebook's sizes, e.g. `experiments.quick_or(None, 1024)`."""
    return quick if quick_mode() else full


def describe_run(seed: int | None = None) -> None:
    """Print one line each for the versions, backend, device and seed a run used.

    A quick or shortened run, or one with `$VAEKIT_OUTPUT_DIR`, also says so (with the
    epoch cap) and names the folder its outputs go to; a full run prints only the four lines.
    """
    seed = check_seed("seed", seed)
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
    shown = _io.shown(folder) if folder == home or home in folder.parents else str(folder)
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
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"`frame` must be a pandas DataFrame (e.g. `pd.DataFrame(rows)`), got {type(frame).__name__}.")
    path = check_output_path("path", path, example="results_table")
    if not isinstance(floatfmt, str):
        raise TypeError(f"`floatfmt` must be a format string such as \".4g\", got {floatfmt!r}.")
    with _io.replacing(path.with_suffix(".csv")) as temporary:
        frame.to_csv(temporary)
    # tabulate reads rows, which upcasts integer columns to float ("2.835e+04"); object keeps them whole.
    integers = {column: object for column in frame.columns if pd.api.types.is_integer_dtype(frame[column])}
    _io.write_text(path.with_suffix(".md"), frame.astype(integers).to_markdown(floatfmt=floatfmt) + "\n")
    return frame


def recorded_runs(table: str, **where) -> pd.DataFrame:
    """Rows of a results table that this repository's full-length runs committed: `figures/<table>.csv`.

    A notebook pools them with its own runs to measure the spread over every run of one
    configuration, e.g. `recorded_runs("source_check_runs", run="ablation-vae-d16")`; `where`
    keeps the rows whose columns equal the values given. The table is empty, and the reason
    printed, outside a vaekit checkout (a notebook copied to Colab), where the file is missing,
    and in a quick or shortened run, whose own numbers are not comparable with full-length ones.
    """
    table = check_name("table", table, example="source_check_runs")
    if table.endswith(".csv"):
        raise ValueError(f"`table` is the table's name without .csv, e.g. {table[:-4]!r}, got {table!r}.")
    if _run_mode() != "full":
        print(f"{table}: recorded full-length runs are not pooled with a {_run_mode()} run")
        return pd.DataFrame()
    root = _full_run_root()
    path = root / "figures" / f"{table}.csv"
    if not _is_vaekit_checkout(root) or not path.is_file():
        print(f"{_io.shown(path)} is not here (a copy outside the repository?): only this notebook's runs are used")
        return pd.DataFrame()
    frame = pd.read_csv(path)
    for column, value in where.items():
        if column not in frame.columns:
            raise ValueError(f"`{column}` is not a column of {_io.shown(path)}; its columns are {list(frame.columns)}.")
        frame = frame[frame[column] == value]
    return frame.reset_index(drop=True)


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
