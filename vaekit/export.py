"""`prediction.csv`: originals and reconstructions, one row per image.

Columns: `row_id` (0..N-1), then for each pixel k the pair `orig_px{k}`, `recon_px{k}`,
interleaved in that order, values in [0, 1] (seed-001's format).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from vaekit import _checks


def prediction_columns(num_pixels: int) -> list[str]:
    """The header: row_id, orig_px0, recon_px0, orig_px1, recon_px1, ..."""
    return ["row_id"] + [f"{kind}_px{k}" for k in range(num_pixels) for kind in ("orig", "recon")]


def write_prediction_csv(path: str | os.PathLike, originals, reconstructions, decimals: int = 6) -> None:
    """Write originals and reconstructions (same shape, values in [0, 1]) to `path`.

    Images of any shape are flattened row-major. Values are written with `decimals`
    places (reading back is exact to 0.5e-`decimals`).
    """
    originals = _checks.images("originals", originals).reshape(len(originals), -1)
    reconstructions = _checks.images("reconstructions", reconstructions).reshape(len(reconstructions), -1)
    if originals.shape != reconstructions.shape:
        raise ValueError(
            f"`originals` and `reconstructions` must have the same shape, got {originals.shape} "
            f"and {reconstructions.shape}."
        )
    decimals = _checks.positive_int("decimals", decimals)
    n, num_pixels = originals.shape
    interleaved = np.empty((n, 2 * num_pixels), dtype=np.float64)
    interleaved[:, 0::2] = originals
    interleaved[:, 1::2] = reconstructions
    # np.savetxt formats value by value in Python; one vectorised format per column is ~10x faster.
    text = np.char.mod(f"%.{decimals}f", interleaved)
    # "0.000000" -> "0": most MNIST pixels are 0, so this shrinks the file by about a third.
    text = np.char.rstrip(np.char.rstrip(text, "0"), ".")
    lines = [",".join(prediction_columns(num_pixels))]
    lines += [f"{i}," + ",".join(row) for i, row in enumerate(text)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_prediction_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a `prediction.csv` back as (originals, reconstructions), each (n, num_pixels) float32."""
    frame = pd.read_csv(path)
    if frame.columns[0] != "row_id" or len(frame.columns) % 2 != 1:
        raise ValueError(f"{path} is not a prediction.csv: first column must be row_id, then pixel pairs.")
    num_pixels = (len(frame.columns) - 1) // 2
    if list(frame.columns) != prediction_columns(num_pixels):
        raise ValueError(f"{path}: columns are not row_id, orig_px0, recon_px0, ... in order.")
    if not np.array_equal(frame["row_id"].to_numpy(), np.arange(len(frame))):
        raise ValueError(f"{path}: row_id must run 0..{len(frame) - 1} in order.")
    values = frame.to_numpy(dtype=np.float32)[:, 1:]
    return values[:, 0::2], values[:, 1::2]
