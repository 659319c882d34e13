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
    # tabulate reads rows, which upcasts integer columns to float ("2.835e+04"); object keeps them whole.
    integers = {column: object for column in frame.columns if pd.api.types.is_integer_dtype(frame[column])}
    path.with_suffix(".md").write_text(frame.astype(integers).to_markdown(floatfmt=floatfmt) + "\n")
    return frame


def roc_curve(scores, is_anomaly) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of "score above threshold means anomaly", every threshold.

    `scores` are anomaly scores (higher = more anomalous, e.g. reconstruction error) and
    `is_anomaly` the true labels (1/True = anomaly). Thresholds run over the distinct scores
    from the highest down, so tied scores move the curve diagonally. Returns (fpr, tpr),
    both starting at 0 and ending at 1. NumPy only.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_anomaly = np.asarray(is_anomaly).astype(bool).ravel()
    if scores.shape != is_anomaly.shape:
        raise ValueError(f"`scores` and `is_anomaly` must have the same length, got {scores.shape} and {is_anomaly.shape}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("`scores` must be finite.")
    positives, negatives = int(is_anomaly.sum()), int((~is_anomaly).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("ROC needs at least one anomaly and one normal example.")
    order = np.argsort(-scores, kind="mergesort")
    scores, is_anomaly = scores[order], is_anomaly[order]
    # The last index of each run of equal scores: a threshold admits a tie all at once.
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(is_anomaly)[last_of_tie]
    false_positives = (last_of_tie + 1) - true_positives
    fpr = np.r_[0.0, false_positives / negatives]
    tpr = np.r_[0.0, true_positives / positives]
    return fpr, tpr


def roc_auc(scores, is_anomaly) -> float:
    """Area under the ROC curve: the probability that a random anomaly scores above a random
    normal example, ties counting one half (the Mann-Whitney U statistic / (n_pos * n_neg)).

    0.5 is chance, 1.0 a perfect ranking. Arguments as in `roc_curve`. NumPy only.
    """
    fpr, tpr = roc_curve(scores, is_anomaly)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: exact for a step curve with ties
