"""How long `write_prediction_csv` takes for a full MNIST test set (10,000 x 784).

Run: python benchmarks/write_csv_speed.py [rows]. Prints the seconds to write and to
read back, and the file size. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaekit.export import read_prediction_csv, write_prediction_csv  # noqa: E402


def main(rows: int = 10_000, pixels: int = 784) -> None:
    rng = np.random.default_rng(0)
    originals = rng.random((rows, pixels)).astype(np.float32)
    originals[originals < 0.8] = 0.0  # about as sparse as MNIST
    reconstructions = rng.random((rows, pixels)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prediction.csv"
        start = time.perf_counter()
        write_prediction_csv(path, originals, reconstructions)
        written = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        start = time.perf_counter()
        read_prediction_csv(path)
        read = time.perf_counter() - start
    print(f"{rows} rows x {pixels} pixels: write {written:.2f} s, read {read:.2f} s, {size_mb:.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
