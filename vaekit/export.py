"""`prediction.csv`: originals and reconstructions, one row per image.

Columns: `row_id` (0..N-1), then for each pixel k the pair `orig_px{k}`, `recon_px{k}`,
interleaved in that order, values in [0, 1] (the format of the tutorial's fully connected autoencoder).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from vaekit import _io
from vaekit._checks import check_file_path, check_output_path
from vaekit.guards import check_images, check_positive_int


def prediction_columns(num_pixels: int) -> list[str]:
    """The header: row_id, orig_px0, recon_px0, orig_px1, recon_px1, ..."""
    num_pixels = check_positive_int("num_pixels", num_pixels)
    return ["row_id"] + [f"{kind}_px{k}" for k in range(num_pixels) for kind in ("orig", "recon")]


_ROWS_PER_CHUNK = 1000
_COMMA, _NEWLINE, _DOT, _ZERO = (ord(c) for c in ",\n.0")


def write_prediction_csv(path: str | os.PathLike, originals, reconstructions, decimals: int = 6) -> None:
    """Write originals and reconstructions (same shape, values in [0, 1]) to `path`.

    Images of any shape are flattened row-major. Values are written with `decimals`
    places, trailing zeros trimmed ("0.5", "0", "1"); reading back is exact to
    0.5e-`decimals`. The file is written under a temporary name and renamed, so a
    stop midway leaves the previous file whole. 10,000 MNIST rows (15.7 million values) take a few seconds.
    """
    path = check_output_path("path", path, example="prediction.csv")
    decimals = check_positive_int("decimals", decimals)
    if decimals > 9:
        raise ValueError(f"`decimals` must be 1..9 (float32 pixels carry about 7 digits), got {decimals}.")
    originals = check_images("originals", originals)
    reconstructions = check_images("reconstructions", reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError(
            f"`originals` and `reconstructions` must have the same shape, got {originals.shape} "
            f"and {reconstructions.shape}."
        )
    originals = originals.reshape(len(originals), -1)
    reconstructions = reconstructions.reshape(len(reconstructions), -1)
    n, num_pixels = originals.shape
    with _io.replacing(path) as temporary, open(temporary, "wb") as f:
        f.write((",".join(prediction_columns(num_pixels)) + "\n").encode("ascii"))
        # 1,000-row chunks keep memory flat: about 15 MB of character cells at a time.
        for start in range(0, n, _ROWS_PER_CHUNK):
            stop = min(start + _ROWS_PER_CHUNK, n)
            values = np.empty((stop - start, 2 * num_pixels), dtype=np.float64)
            values[:, 0::2] = originals[start:stop]
            values[:, 1::2] = reconstructions[start:stop]
            f.write(_format_rows(np.arange(start, stop), values, decimals))


def _format_rows(row_ids: np.ndarray, values: np.ndarray, decimals: int) -> bytes:
    """CSV lines "row_id,v,v,...\n" for values in [0, 1], built as one byte array.

    Formatting 15.7 million floats one at a time (np.savetxt, np.char.mod, f-strings)
    takes ~20 s. Here every token (the row id, then each value) gets a fixed-width
    cell of ASCII codes, "0.dddddd" plus a separator, filled by integer array
    arithmetic; one boolean mask then keeps each token's significant characters
    and its separator, which in row-major order is exactly the CSV text.
    """
    scale = 10 ** decimals
    # Round half to even on the scaled value; "%.*f" rounds the binary value instead,
    # so the two could differ by one unit in the last place, and only on exact ties.
    scaled = np.rint(values * scale).astype(np.int64)
    n, m = scaled.shape
    id_text = np.array([str(i) for i in row_ids], dtype=bytes)
    id_width = id_text.dtype.itemsize
    width = max(2 + decimals, id_width)

    cells = np.empty((n, 1 + m, width + 1), dtype=np.uint8)
    cells[:, :, width] = _COMMA
    cells[:, -1, width] = _NEWLINE
    cells[:, 0, :id_width] = id_text.view(np.uint8).reshape(n, id_width)
    value_cells = cells[:, 1:]
    whole, fraction = np.divmod(scaled, scale)  # whole is 0 or 1 for values in [0, 1]
    value_cells[:, :, 0] = _ZERO + whole
    value_cells[:, :, 1] = _DOT
    for j in range(decimals - 1, -1, -1):
        fraction, digit = np.divmod(fraction, 10)
        value_cells[:, :, 2 + j] = _ZERO + digit

    # Characters kept per token: the id's digits; "0"/"1" for whole values; else up
    # to the last non-zero decimal, so trailing zeros are trimmed.
    nonzero = value_cells[:, :, 2:2 + decimals] != _ZERO
    kept = decimals - np.argmax(nonzero[:, :, ::-1], axis=-1)
    kept[~nonzero.any(axis=-1)] = 0
    length = np.empty((n, 1 + m), dtype=np.int64)
    length[:, 0] = np.char.str_len(id_text)
    length[:, 1:] = np.where(kept == 0, 1, 2 + kept)
    keep = np.arange(width + 1) < length[:, :, None]
    keep[:, :, width] = True  # the separator
    return cells[keep].tobytes()


def read_prediction_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a `prediction.csv` back as (originals, reconstructions), each (n, num_pixels) float32."""
    check_file_path("path", path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable prediction.csv: it is empty, cut short or not text "
                         f"({type(error).__name__}: {error}); write it again with write_prediction_csv.") from error
    if frame.columns[0] != "row_id" or len(frame.columns) % 2 != 1:
        raise ValueError(f"{path} is not a prediction.csv: first column must be row_id, then pixel pairs.")
    num_pixels = (len(frame.columns) - 1) // 2
    if list(frame.columns) != prediction_columns(num_pixels):
        raise ValueError(f"{path}: columns are not row_id, orig_px0, recon_px0, ... in order.")
    if not np.array_equal(frame["row_id"].to_numpy(), np.arange(len(frame))):
        raise ValueError(f"{path}: row_id must run 0..{len(frame) - 1} in order.")
    try:
        values = frame.to_numpy(dtype=np.float32)[:, 1:]
    except ValueError as error:  # a text cell somewhere
        raise ValueError(f"{path}: every pixel value must be a number ({error}).") from error
    if values.size and (not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1):
        raise ValueError(f"{path}: pixel values must be numbers in [0, 1]; found empty, NaN or out-of-range cells.")
    return values[:, 0::2], values[:, 1::2]
