"""Write every notebook's Colab badge and install cell, and the README's Colab links,
from the repository address in pyproject.toml (`[project.urls] Repository`).

    python scripts/sync_notebooks.py            # rewrite whatever disagrees with the address
    python scripts/sync_notebooks.py --check    # change nothing; exit 1 and list what disagrees

A fork edits `[project.urls]` and runs the first command. Each notebook in `notebooks/`
gets, as its first cell, a markdown cell with the "Open in Colab" badge, and right
before its first code cell that imports vaekit, a three-line code cell that `%pip install`s
vaekit from the repository where it is not installed (a fresh Colab runtime, or a clone
beside the notebook that was never installed) and does nothing elsewhere (a checkout with
vaekit installed, CI), with the packages of EXTRA_PACKAGES that the notebook imports.
Only those two cells (found by their ids) and the marked block of the README are written;
other cells and their outputs are left as they are.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "main"
BADGE_CELL_ID = "open-in-colab"
INSTALL_CELL_ID = "install-vaekit"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
README_START = "<!-- colab-links: written by scripts/sync_notebooks.py from pyproject.toml -->"
README_END = "<!-- /colab-links -->"
IMPORTS_VAEKIT = re.compile(r"^\s*(import vaekit|from vaekit[ .])", re.MULTILINE)

# Three lines, so that a notebook's code is its lesson. `find_spec` looks vaekit up without importing it: an
# origin of None is a folder named vaekit with no __init__.py (a clone of the repository beside the notebook),
# which Python would import as an empty package; importing it here would also leave that empty package in
# sys.modules for the next cell. `%pip` installs into the kernel's own environment (IPython turns the line into
# `get_ipython().run_line_magic("pip", ...)`, so nbval and nbclient run the cell as they run any other).
INSTALL_SOURCE = '''\
import importlib.util
if getattr(importlib.util.find_spec("vaekit"), "origin", None) is None:  # not installed (Colab), or only a clone's folder
    %pip install --quiet "vaekit @ git+{url}"{extra_packages}'''

# Packages a notebook imports itself that vaekit does not install, by the module name the notebook imports.
EXTRA_PACKAGES = {"skimage": "scikit-image>=0.22"}


def install_source(url: str, code: str = "") -> str:
    """The install cell for a notebook whose code cells read `code`: vaekit, and the extra packages it imports."""
    extras = [package for module, package in EXTRA_PACKAGES.items()
              if re.search(rf"^\s*(import|from) {module}\b", code, re.MULTILINE)]
    return INSTALL_SOURCE.format(url=url, extra_packages="".join(f' "{package}"' for package in extras))


def repository_url(root: Path) -> str:
    """`[project.urls] Repository` of `root/pyproject.toml`, without a trailing slash or `.git`."""
    text = (root / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10
        match = re.search(r'^Repository\s*=\s*"([^"]+)"', text, re.MULTILINE)
        url = match.group(1) if match else None
    else:
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    if not url:
        raise SystemExit(f"{root / 'pyproject.toml'} has no [project.urls] Repository entry.")
    url = url.rstrip("/").removesuffix(".git")
    if not re.fullmatch(r"https://github\.com/[^/]+/[^/]+", url):
        raise SystemExit(f"Colab opens notebooks from GitHub: Repository must be https://github.com/<owner>/<repo>, got {url!r}.")
    return url


def colab_url(url: str, notebook: Path) -> str:
    return f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{BRANCH}/notebooks/{notebook.name}"


def badge_markdown(url: str, notebook: Path) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(url, notebook)})"


def synced_notebook(path: Path, url: str):
    """The notebook at `path` with its badge and install cells as `url` wants them."""
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    cells = {cell.get("id"): cell for cell in notebook.cells}
    badge = cells.get(BADGE_CELL_ID) or nbformat.v4.new_markdown_cell(id=BADGE_CELL_ID)
    install = cells.get(INSTALL_CELL_ID) or nbformat.v4.new_code_cell(id=INSTALL_CELL_ID)
    badge.source = badge_markdown(url, path)
    others = [cell for cell in notebook.cells if cell.get("id") not in (BADGE_CELL_ID, INSTALL_CELL_ID)]
    install.source = install_source(url, "\n".join(cell.source for cell in others if cell.cell_type == "code"))
    first_import = next((i for i, cell in enumerate(others)
                         if cell.cell_type == "code" and IMPORTS_VAEKIT.search(cell.source)), None)
    if first_import is None:  # a notebook that does not use vaekit needs no install cell
        notebook.cells = [badge, *others]
    else:
        notebook.cells = [badge, *others[:first_import], install, *others[first_import:]]
    return notebook


def readme_block(url: str, notebooks: list[Path]) -> str:
    links = "\n".join(f"| [{path.stem}](notebooks/{path.name}) | {badge_markdown(url, path)} |" for path in notebooks)
    return (f"{README_START}\n"
            f"Every notebook opens in Colab from the badge at its top, and its first code cell installs\n"
            f"vaekit where it is missing (`pip install \"vaekit @ git+{url}\"`); elsewhere that cell\n"
            f"does nothing.\n\n"
            f"| notebook | open in Colab |\n|---|---|\n{links}\n"
            f"{README_END}")


def synced_readme(text: str, url: str, notebooks: list[Path]) -> str:
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no block between {README_START!r} and {README_END!r}; add the two lines "
                         "to its Colab section.")
    return pattern.sub(lambda _: readme_block(url, notebooks), text)


def sync(root: Path, check: bool) -> list[str]:
    """Bring the notebooks and the README in line with the repository address.

    Returns the files that disagreed; with `check`, nothing is written.
    """
    url = repository_url(root)
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    changed = []
    for path in notebooks:
        text = nbformat.writes(synced_notebook(path, url)) + "\n"  # nbformat.write ends the file with a newline
        if text != path.read_text():
            changed.append(str(path.relative_to(root)))
            if not check:
                path.write_text(text)
    readme = root / "README.md"
    text = synced_readme(readme.read_text(), url, notebooks)
    if text != readme.read_text():
        changed.append("README.md")
        if not check:
            readme.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything disagrees")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository folder (default: this checkout)")
    args = parser.parse_args(argv)
    changed = sync(args.root, args.check)
    for name in changed:
        print(f"{'out of date' if args.check else 'written'}: {name}")
    if args.check and changed:
        print("Run `python scripts/sync_notebooks.py` to write them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
