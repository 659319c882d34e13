"""Execute notebooks at full length, in place, without running their exercise cells.

An exercise is a code cell tagged `exercise` (in the cell's metadata, `tags`). It is committed
without outputs, for the student to run, and only the test suite executes it (nbval runs every
cell in quick mode). This script is `jupyter nbconvert --to notebook --execute --inplace` with no
timeout, except that it leaves exercise cells unexecuted and clears any outputs they carry.
Each notebook runs in a fresh python3 kernel whose working directory is the notebook's folder,
and the wall time it took is printed. No one moves a slider in a kernel run this way, so
`VAEKIT_STATIC_PLOTS=1` is set for it (unless set otherwise): `vaekit.explorer.explore_latent`
draws its static figure into the committed outputs instead of a widget. Usage:

    python scripts/run_notebooks.py                                   # every notebooks/*.ipynb, in place
    python scripts/run_notebooks.py notebooks/05_ablations.ipynb      # one notebook, in place
    python scripts/run_notebooks.py --output-dir executed notebooks/03_conv_vae.ipynb   # a copy in executed/

A notebook whose cell raises an error is not written, and the script stops there.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXERCISE_TAG = "exercise"


def is_exercise(cell) -> bool:
    """Whether `cell` is a code cell tagged `exercise`."""
    return cell.cell_type == "code" and EXERCISE_TAG in cell.get("metadata", {}).get("tags", [])


def exercise_cells_with_outputs(path: str | Path) -> list[int]:
    """The indices of the exercise cells of the notebook at `path` that carry outputs or an
    execution count (a committed notebook should have none)."""
    cells = nbformat.read(path, as_version=4).cells
    return [index for index, cell in enumerate(cells)
            if is_exercise(cell) and (cell.get("outputs") or cell.get("execution_count") is not None)]


def run_notebook(path: str | Path, output_dir: str | Path | None = None) -> Path:
    """Execute the notebook at `path` in its own folder, every cell but the exercises, and write it
    over itself, or into `output_dir` under the same name. Returns the path written."""
    path = Path(path).resolve()
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if is_exercise(cell):
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(notebook, kernel_name="python3", timeout=None, skip_cells_with_tag=EXERCISE_TAG,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    target = Path(output_dir).resolve() / path.name if output_dir is not None else path
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("VAEKIT_STATIC_PLOTS", "1")  # the kernels inherit it
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to execute (default: every notebooks/*.ipynb, sorted)")
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="write the executed notebooks into DIR instead of over themselves")
    args = parser.parse_args(argv)
    for path in args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")):
        start = time.perf_counter()
        target = run_notebook(path, args.output_dir)
        minutes, seconds = divmod(time.perf_counter() - start, 60)
        print(f"{path}: {int(minutes)} min {seconds:.0f} s -> {target}", flush=True)


if __name__ == "__main__":
    main()
