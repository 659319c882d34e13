"""The full-length executor runs every cell but the exercises; committed exercises carry no outputs."""

from __future__ import annotations

import pytest

from tiny import ROOT, load_script

nbformat = pytest.importorskip("nbformat")  # not in .ci/run's oldest-versions environment, which collects every file
pytest.importorskip("nbclient")
run_notebooks = load_script("scripts/run_notebooks.py")

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_run_notebook_executes_every_cell_but_the_exercise(tmp_path):
    exercise = nbformat.v4.new_code_cell('ran = True\nraise RuntimeError("an exercise cell was executed")',
                                         metadata={"tags": ["exercise"]}, execution_count=7,
                                         outputs=[nbformat.v4.new_output("stream", text="a stale output\n")])
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nprint(os.path.basename(os.getcwd()))"),
        exercise,
        nbformat.v4.new_code_cell('print("exercise ran" if "ran" in globals() else "exercise skipped")'),
    ])
    (tmp_path / "notebooks").mkdir()
    source = tmp_path / "notebooks" / "tiny.ipynb"
    nbformat.write(notebook, source)

    written = run_notebooks.run_notebook(source, output_dir=tmp_path / "executed")

    assert written == tmp_path / "executed" / "tiny.ipynb"
    assert nbformat.read(source, as_version=4) == notebook  # --output-dir leaves the original as it was
    first, skipped, last = nbformat.read(written, as_version=4).cells
    assert first.outputs[0].text == "notebooks\n"  # the kernel ran in the notebook's folder
    assert (first.execution_count, last.execution_count) == (1, 2)
    assert last.outputs[0].text == "exercise skipped\n"
    assert skipped.outputs == [] and skipped.execution_count is None
    assert run_notebooks.exercise_cells_with_outputs(written) == []
    assert run_notebooks.exercise_cells_with_outputs(source) == [1]


def test_there_are_committed_notebooks():
    assert len(NOTEBOOKS) >= 12


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_committed_exercise_cells_have_no_outputs(notebook):
    assert run_notebooks.exercise_cells_with_outputs(notebook) == [], (
        f"{notebook.name}: exercise cells carry outputs; clear them, or re-execute with scripts/run_notebooks.py")
