"""What every notebook and script does before and after training.

Seeding, quick mode (small subsets for CI), where figures and predictions go, a
printout of the versions and hardware a run used, and a loop over run configs that
collects one results table.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

QUICK_VARIABLE = "VAEKIT_QUICK"


def quick_mode() -> bool:
    """True when `$VAEKIT_QUICK` is set to 1/true/yes: tiny subsets and one short epoch."""
    return os.environ.get(QUICK_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def project_root() -> Path:
    """The folder holding `figures/` and `predictions/`: the parent of `notebooks/`, else the cwd."""
    cwd = Path.cwd()
    return cwd.parent if cwd.name in ("notebooks", "benchmarks") else cwd


def output_dir(kind: str = "figures") -> Path:
    """Where a run writes `kind` ("figures", "predictions").

    Full runs write into the project; quick runs into a temporary folder, so that
    running the tests never overwrites the committed results of full runs.
    """
    if quick_mode():
        path = Path(tempfile.gettempdir()) / "vaekit-quick" / kind
    else:
        path = project_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend (`keras.utils.set_random_seed`)."""
    keras.utils.set_random_seed(int(seed))


def describe_run(seed: int | None = None) -> str:
    """One line each for the versions, backend, device and seed a run used; printed and returned."""
    backend = keras.backend.backend()
    lines = [
        f"python {platform.python_version()}, keras {keras.__version__}, numpy {np.__version__}",
        f"backend {backend} {_backend_version(backend)}, device {_device(backend)}",
        f"platform {platform.platform()}, {os.cpu_count()} CPU cores",
        f"seed {seed}, quick mode {'on' if quick_mode() else 'off'}",
    ]
    text = "\n".join(lines)
    print(text)
    return text


def run_grid(configs: Mapping[str, Mapping], run: Callable[..., Mapping], seed: int = 42) -> pd.DataFrame:
    """Call `run(**config)` for each named config, reseeding first; one table row per run.

    `run` returns a mapping of results (numbers go into the table). The frame is
    indexed by run name, config columns first.
    """
    rows = []
    for name, config in configs.items():
        set_seed(seed)
        results = run(**config)
        scalars = {k: v for k, v in results.items() if np.isscalar(v)}
        rows.append({"run": name, **config, **scalars})
    return pd.DataFrame(rows).set_index("run")


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


def reconstruction_metrics(x, reconstruction) -> dict[str, float]:
    """Test reconstruction error on scales that compare across models.

    Per-pixel BCE and MSE (means over pixels and images) and BCE summed over the
    pixels of an image (nats per image, the VAE's reconstruction term).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    r = np.clip(np.asarray(reconstruction, dtype=np.float64).reshape(len(x), -1), 1e-7, 1 - 1e-7)
    bce = -(x * np.log(r) + (1 - x) * np.log(1 - r))
    return {
        "bce_per_pixel": float(bce.mean()),
        "mse_per_pixel": float(np.mean((x - r) ** 2)),
        "bce_nats_per_image": float(bce.sum(axis=1).mean()),
    }


def save_table(frame: pd.DataFrame, path: str | os.PathLike, floatfmt: str = ".4g") -> pd.DataFrame:
    """Write a results table as `<path>.csv` and `<path>.md` (Markdown); returns it."""
    path = Path(path)
    frame.to_csv(path.with_suffix(".csv"))
    path.with_suffix(".md").write_text(frame.to_markdown(floatfmt=floatfmt) + "\n")
    return frame
