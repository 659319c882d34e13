"""A notebook copied out of the repository runs where it is put and writes nothing into the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tiny import ROOT

nbformat = pytest.importorskip("nbformat")  # not in .ci/run's oldest-versions environment, which collects every file
NOTEBOOK = "01_conv_autoencoder.ipynb"  # the cheapest notebook in quick mode


def repository_state() -> list[str]:
    """`git status` of the checkout, ignored files included (runs/, models/), bytecode caches left out."""
    completed = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        pytest.skip("not a git checkout")
    noise = ("__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints")
    return sorted(line for line in completed.stdout.splitlines() if not any(part in line for part in noise))


def test_copied_notebook_runs_in_quick_mode_and_writes_only_where_it_runs(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    course = tmp_path / "my course"
    course.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, course / NOTEBOOK)
    # vaekit must come from the installed package, as on a student's machine, not from
    # this checkout's folder; where it is not installed the install cell would go online.
    found = subprocess.run([sys.executable, "-c", "import vaekit"], cwd=course, capture_output=True)
    if found.returncode != 0:
        pytest.skip("vaekit is not installed (pip install -e .), so a copied notebook would install it from GitHub")

    monkeypatch.setenv("VAEKIT_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where quick mode makes its fresh folder (tempfile.mkdtemp)
    monkeypatch.delenv("VAEKIT_OUTPUT_DIR", raising=False)
    (tmp_path / "tmp").mkdir()
    before = repository_state()
    notebook = nbformat.read(course / NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(course)}}).execute()
    after = repository_state()

    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert errors == []
    [quick] = (tmp_path / "tmp").glob("vaekit-quick-*")  # the kernel's own folder, and only one
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs)
    assert f"outputs (figures, predictions, runs, models) go to {quick}\n" in printed
    assert (quick / "figures" / "01_conv_autoencoder_reconstructions.png").stat().st_size > 0
    assert (quick / "models" / "conv_autoencoder.keras").is_file()
    assert after == before
    assert sorted(os.listdir(course)) == [NOTEBOOK]  # quick runs leave the notebook's folder as it was
