"""Colab badges, install cells and README links all follow pyproject.toml's repository address."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from tiny import ROOT, load_script

nbformat = pytest.importorskip("nbformat")  # not in .ci/run's oldest-versions environment, which collects every file
sync_notebooks = load_script("scripts/sync_notebooks.py")

FORK = "https://github.com/someone/vaekit-fork"


def test_notebooks_and_readme_agree_with_pyproject():
    completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_every_notebook_has_one_colab_badge_and_one_install_cell(notebook):
    cells = nbformat.read(ROOT / "notebooks" / notebook, as_version=4).cells
    badges = [i for i, cell in enumerate(cells) if "colab-badge" in cell.source]
    installs = [i for i, cell in enumerate(cells) if cell.cell_type == "code" and "pip install" in cell.source]
    assert badges == [0], f"{notebook}: Colab badges in cells {badges}"
    assert len(installs) == 1 and cells[installs[0]].id == sync_notebooks.INSTALL_CELL_ID, (
        f"{notebook}: install cells {installs}")


@pytest.fixture
def fork(tmp_path):
    """A copy of the repository's pyproject, README and two notebooks, re-pointed at FORK."""
    (tmp_path / "notebooks").mkdir()
    for name in ("01_conv_autoencoder.ipynb", "07_anomaly_detection.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, tmp_path / "notebooks" / name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    text = (ROOT / "pyproject.toml").read_text()
    url = sync_notebooks.repository_url(ROOT)
    (tmp_path / "pyproject.toml").write_text(text.replace(f'"{url}"', f'"{FORK}"'))
    return tmp_path


def cells_by_id(path):
    return {cell.id: cell for cell in nbformat.read(path, as_version=4).cells}


def test_one_edit_and_one_command_re_point_a_fork(fork):
    before = {path.name: cells_by_id(path) for path in (fork / "notebooks").glob("*.ipynb")}
    assert sync_notebooks.main(["--root", str(fork), "--check"]) == 1
    assert sync_notebooks.main(["--root", str(fork)]) == 0
    assert sync_notebooks.main(["--root", str(fork), "--check"]) == 0

    for path in (fork / "notebooks").glob("*.ipynb"):
        cells = nbformat.read(path, as_version=4).cells
        assert cells[0].id == "open-in-colab"
        assert f"colab.research.google.com/github/someone/vaekit-fork/blob/main/notebooks/{path.name}" in cells[0].source
        install = [i for i, cell in enumerate(cells) if cell.id == "install-vaekit"]
        first_import = next(i for i, cell in enumerate(cells)
                            if cell.cell_type == "code" and "import vaekit" in cell.source and cell.id != "install-vaekit")
        assert install == [first_import - 1]
        assert f"vaekit @ git+{FORK}" in cells[install[0]].source
        # Every other cell, outputs included, is as it was.
        others = {cell.id: cell for cell in cells if cell.id not in ("open-in-colab", "install-vaekit")}
        assert others == {k: v for k, v in before[path.name].items() if k not in ("open-in-colab", "install-vaekit")}
    readme = (fork / "README.md").read_text()
    assert f"git+{FORK}" in readme and "github/vaekit/vaekit" not in readme.split("## Colab")[1].split("## ")[0]


def test_a_new_notebook_gets_its_cells_too(fork):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99"),
                                               nbformat.v4.new_code_cell("import numpy"),
                                               nbformat.v4.new_code_cell("from vaekit import data")])
    nbformat.write(notebook, fork / "notebooks" / "99_new.ipynb")
    sync_notebooks.main(["--root", str(fork)])
    cells = nbformat.read(fork / "notebooks" / "99_new.ipynb", as_version=4).cells
    assert [cell.id for cell in cells][:1] == ["open-in-colab"] and cells[3].id == "install-vaekit"
    assert "99_new" in (fork / "README.md").read_text()


def test_a_non_github_address_is_refused(fork):
    path = fork / "pyproject.toml"
    path.write_text(path.read_text().replace(FORK, "https://gitlab.com/someone/vaekit"))
    with pytest.raises(SystemExit, match="github.com/<owner>/<repo>"):
        sync_notebooks.main(["--root", str(fork), "--check"])


def as_python(cell_source: str) -> str:
    """The install cell as the kernel runs it: IPython turns `%pip ...` into `get_ipython().run_line_magic(...)`."""
    transformer = pytest.importorskip("IPython.core.inputtransformer2").TransformerManager()
    return transformer.transform_cell(cell_source)


def vaekit_pip(*packages: str) -> list:
    """The one `%pip` call the install cell makes where vaekit is missing: vaekit from FORK, then `packages`."""
    return [["pip", " ".join(["install", "--quiet", f'"vaekit @ git+{FORK}"', *(f'"{p}"' for p in packages)])]]


class Shell:
    """Stands in for IPython's `get_ipython()`: records the magics a cell runs instead of running them."""

    def __init__(self):
        self.calls = []

    def run_line_magic(self, name, line):
        self.calls.append([name, line])


def install_cell_calls(monkeypatch, vaekit_found: bool) -> list:
    """Run the install cell's code with the kernel's magics recorded, not run; return the magics it ran."""
    shell = Shell()
    if not vaekit_found:
        real_find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *args: None if name == "vaekit" else real_find_spec(name, *args))
    exec(as_python(sync_notebooks.install_source(FORK)), {"get_ipython": lambda: shell})
    return shell.calls


def test_install_cell_is_three_lines_of_the_usual_shape():
    source = sync_notebooks.install_source(FORK)
    assert len(source.splitlines()) == 3
    assert source.splitlines()[-1].strip() == f'%pip install --quiet "vaekit @ git+{FORK}"'
    compile(as_python(source), "install cell", "exec")  # valid Python once IPython has read the magic


def test_install_cell_does_nothing_where_vaekit_is_importable(monkeypatch):
    assert install_cell_calls(monkeypatch, vaekit_found=True) == []


def test_install_cell_pip_installs_from_the_repository_where_vaekit_is_missing(monkeypatch):
    assert install_cell_calls(monkeypatch, vaekit_found=False) == vaekit_pip()


def install_cell_in_a_fresh_python(cwd, code: str = "") -> list:
    """The magics the install cell runs in a Python without site-packages (no vaekit installed), in `cwd`."""
    script = (
        "import json, sys\n"
        "calls = []\n"
        "class Shell:\n"
        "    def run_line_magic(self, name, line):\n"
        "        calls.append([name, line])\n"
        f"exec({as_python(sync_notebooks.install_source(FORK, code))!r}, {{'get_ipython': Shell}})\n"
        "assert 'vaekit' not in sys.modules  # looked up, not imported: no empty package left for the next cell\n"
        "print(json.dumps(calls))\n")
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # only `cwd` on the path
    completed = subprocess.run([sys.executable, "-S", "-c", script], cwd=cwd, env=environment, capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_install_cell_installs_where_only_a_clone_sits_beside_the_notebook(tmp_path):
    # Colab's usual pattern: `git clone .../vaekit` next to the notebook, no install. The clone's folder
    # has no __init__.py at its top, so Python would import it as an empty namespace package.
    (tmp_path / "vaekit" / "vaekit").mkdir(parents=True)
    (tmp_path / "vaekit" / "README.md").write_text("a clone")
    assert install_cell_in_a_fresh_python(tmp_path) == vaekit_pip()
    # The package itself (a checkout's root on the path) is an install: nothing to do.
    assert install_cell_in_a_fresh_python(ROOT) == []


def test_install_cell_adds_the_packages_a_notebook_imports_beyond_vaekit(tmp_path):
    calls = install_cell_in_a_fresh_python(tmp_path, code="import keras\nimport skimage.data\n")
    assert calls == vaekit_pip("scikit-image>=0.22")
    anomaly = cells_by_id(ROOT / "notebooks" / "07_anomaly_detection.ipynb")["install-vaekit"].source
    assert '"scikit-image>=0.22"' in anomaly
    assert "scikit-image" not in cells_by_id(ROOT / "notebooks" / "03_conv_vae.ipynb")["install-vaekit"].source
