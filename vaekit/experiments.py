"""A notebook's plumbing: quick mode, where outputs go, a printout of the run, tables.

Quick mode (small subsets for CI), the epoch count of a run, where figures,
predictions and run folders go, a printout of the versions and hardware a run used,
and results tables. Seed a run with `keras.utils.set_random_seed`; training is in
`vaekit.training` (`fit_resumable` is importable from here too, where the notebooks
call it), the metrics are in `vaekit.evaluate`.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from vaekit import _io
from vaekit.training import fit_resumable  # noqa: F401  (the notebooks' entry point)

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
