"""Write `vaekit/shipped_runs.json`: every finished run in `runs/` whose weights ship with the repository.

    python scripts/ship_runs.py            # list each runs/<run>/model.weights.h5 with its files' SHA-256 and size
    python scripts/ship_runs.py --check    # change nothing; exit 1 and say what disagrees with the files

A finished run folder keeps `run.json` (what it trains), `history.csv` and `model.weights.h5`
(weights only); `fit_resumable` writes them when a run's last epoch is done. The manifest lists
those three files per run, so a checkout can be checked against it and `vaekit.runs` can
fetch and check them where no checkout is. The weights are held to BUDGET_BYTES in all, and a
run whose weights are larger than LARGEST_RUN_BYTES does not ship: it retrains where it is run
(`.gitignore` keeps its weights out of git).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "vaekit" / "shipped_runs.json"
FILES = ("run.json", "history.csv", "model.weights.h5")
BUDGET_BYTES = 160 * 10**6  # what the weights may add to the repository
# Notebook 07's fully connected autoencoders (12,288 -> 1,024 -> ... on 64x64x3 images) are 103 MB each.
LARGEST_RUN_BYTES = 20 * 10**6


def describe(path: Path) -> dict:
    """A file's SHA-256 and size."""
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}


def shipped_runs(runs: Path = ROOT / "runs") -> dict:
    """The manifest the run folders under `runs` call for, by run name."""
    manifest = {}
    for weights in sorted(runs.glob("*/model.weights.h5")):
        if weights.stat().st_size > LARGEST_RUN_BYTES:
            continue
        folder = weights.parent
        record = json.loads((folder / "run.json").read_text())
        manifest[folder.name] = {"epochs": record["epochs"], "batch_size": record["batch_size"],
                                 "data": record["data"], "files": {name: describe(folder / name) for name in FILES}}
    return manifest


def weights_bytes(manifest: dict) -> int:
    return sum(entry["files"]["model.weights.h5"]["bytes"] for entry in manifest.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the manifest disagrees")
    arguments = parser.parse_args(argv)
    manifest = shipped_runs()
    total = weights_bytes(manifest)
    print(f"{len(manifest)} runs ship their weights: {total / 1e6:.1f} MB of {BUDGET_BYTES / 1e6:.0f} MB")
    if total > BUDGET_BYTES:
        print("over budget: leave a run out (delete its model.weights.h5) and say so in docs/running.md")
        return 1
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if arguments.check:
        if MANIFEST.read_text() != text:
            print(f"{MANIFEST.relative_to(ROOT)} disagrees with runs/: run python scripts/ship_runs.py")
            return 1
        return 0
    MANIFEST.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
