"""requirements.txt lists exactly what pyproject.toml installs for the notebooks."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent


def requirements_txt() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def pyproject_notebook_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["notebooks"]


def normalised(requirement: str) -> str:
    return "".join(requirement.split()).lower()


def test_requirements_txt_lists_the_dependencies_and_the_notebooks_extra():
    listed = [normalised(r) for r in requirements_txt()]
    expected = [normalised(r) for r in pyproject_notebook_requirements()]
    assert len(listed) == len(set(listed)), f"requirements.txt lists a package twice: {listed}"
    assert sorted(listed) == sorted(expected), (
        f"only in requirements.txt: {sorted(set(listed) - set(expected))}; "
        f"only in pyproject.toml: {sorted(set(expected) - set(listed))}")
