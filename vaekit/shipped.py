"""Finished runs that ship with the repository: their weights, listed by SHA-256, and fetched where no checkout is.

A finished run folder in `runs/` keeps `run.json` (what it trains), `history.csv` and
`model.weights.h5` (weights only, no optimizer state); `fit_resumable` loads such a run
instead of training it. `shipped_runs.json`, beside this module, lists each shipped
run's files with their SHA-256 and size (`scripts/ship_runs.py` writes it). Outside a
checkout (Colab, a copied notebook) a run named there is fetched from the repository's
`Runs` address (`[project.urls]` in pyproject.toml; `$VAEKIT_RUNS_URL` overrides it)
with `keras.utils.get_file`, which checks each file's SHA-256 before anything is loaded
and caches it where Keras caches downloads. A failed or mismatched download is said in
one line, and the run trains instead.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import keras
import pandas as pd

from vaekit import training

MANIFEST = Path(__file__).with_name("shipped_runs.json")
URL_VARIABLE = "VAEKIT_RUNS_URL"
FILES = (training.RUN_RECORD, "history.csv", training.WEIGHTS_FILE)


def manifest() -> dict:
    """The shipped runs by name: {"epochs", "batch_size", "data", "files": {file: {"sha256", "bytes"}}}."""
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def runs_url() -> str | None:
    """Where the shipped runs are fetched from: `$VAEKIT_RUNS_URL`, else pyproject.toml's `Runs` address."""
    if os.environ.get(URL_VARIABLE):
        return os.environ[URL_VARIABLE].rstrip("/")
    try:
        addresses = importlib.metadata.metadata("vaekit").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:  # a copied vaekit folder, not installed
        return None
    return next((url.strip().rstrip("/") for label, _, url in (a.partition(",") for a in addresses)
                 if label.strip() == "Runs"), None)


def finished_run_files(run_dir: Path, trains: dict) -> tuple[Path, dict, Path] | None:
    """The weights file, run record and history of the finished run `trains` for `run_dir`; None if there is none.

    First the folder itself (a checkout's shipped run); then, for a run that `shipped_runs.json`
    lists under the folder's name with the same epochs, batch size and data, the files fetched
    from `runs_url()` and checked against their SHA-256.
    """
    weights, history = run_dir / training.WEIGHTS_FILE, run_dir / "history.csv"
    if weights.exists() and history.exists():
        return weights, json.loads((run_dir / training.RUN_RECORD).read_text()), history
    entry = manifest().get(run_dir.name)
    url = runs_url()
    if entry is None or url is None or any(entry.get(key) != trains[key] for key in ("epochs", "batch_size", "data")):
        return None
    fetched = {}
    for name in FILES:
        try:
            fetched[name] = Path(keras.utils.get_file(
                fname=name, origin=f"{url}/{run_dir.name}/{name}", file_hash=entry["files"][name]["sha256"],
                hash_algorithm="sha256", cache_subdir=f"vaekit/runs/{run_dir.name}",
                cache_dir=os.environ.get("KERAS_HOME")))
        except Exception as error:  # offline, a server down, a cut or altered file: say so, and train
            print(f"{run_dir.name}: not fetched, training it instead: {url}/{run_dir.name}/{name}: "
                  f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            return None
    record = json.loads(fetched[training.RUN_RECORD].read_text())
    if training._differences({key: record[key] for key in trains if key in record}, trains):
        print(f"{run_dir.name}: the shipped run trains other settings than this one; training it instead")
        return None
    if len(pd.read_csv(fetched["history.csv"])) != trains["epochs"]:
        return None
    return fetched[training.WEIGHTS_FILE], record, fetched["history.csv"]
