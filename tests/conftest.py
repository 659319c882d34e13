"""Test set-up: import vaekit from this checkout, quiet TensorFlow, the data-folder fixture, and
`run_on_backend`: code in a fresh interpreter on another Keras backend."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter hides test output
os.environ.setdefault("MPLBACKEND", "Agg")  # no windows from the plot tests; vaekit leaves the backend to matplotlib
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # import vaekit from this checkout, installed or not
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The offline data folder ($VAEKIT_DATA_DIR); tests using it skip where it is absent."""
    folder = os.environ.get("VAEKIT_DATA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("VAEKIT_DATA_DIR is not set to a folder with the offline data sets")
    return Path(folder)


@pytest.fixture(autouse=True)
def full_run_environment(monkeypatch):
    """Each unit test starts as a full run would: quick mode, an epoch cap or an output folder change
    where outputs go, and the notebooks' conftest sets $VAEKIT_QUICK for the whole session when both
    folders are collected. Tests that need one of them set it themselves."""
    for name in ("VAEKIT_QUICK", "VAEKIT_EPOCHS", "VAEKIT_OUTPUT_DIR"):
        monkeypatch.delenv(name, raising=False)


class BackendRunner:
    """Runs Python code in a fresh interpreter, on one Keras backend (Keras picks its backend once
    per process, so a test that needs another backend than this session's runs its code here).

    `run_on_backend(backend, code, *args)` runs `code` (a string of Python source, or a Path to a
    .py script, or to a .sh script run with bash) with `args` as its sys.argv[1:], and returns the
    CompletedProcess, its output as text. The child gets this environment plus KERAS_BACKEND=backend
    (left as it is where backend is None), PYTHONPATH=<the checkout> (vaekit from here) and
    CUDA_VISIBLE_DEVICES="" (CPU only); `env` adds or overrides variables, a value None removes one.
    With check=True (the default) a non-zero exit fails the test, showing the end of the child's
    stderr and stdout. A backend that is not installed fails the test at once; tests that should
    skip instead call pytest.importorskip first. `.results(...)` parses what the code printed after
    "RESULTS" as JSON; `.popen(...)` starts the child without waiting (stdout and stderr piped, text).
    """

    def environment(self, backend: str | None, env: dict | None = None) -> dict:
        if backend is not None:
            if importlib.util.find_spec(backend) is None:  # each backend's name is its module's
                pytest.fail(f"{backend} is not installed; the test extras install all three backends")
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
        if backend is not None:
            environment["KERAS_BACKEND"] = backend
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = str(value)
        return environment

    @staticmethod
    def command(code: str | Path, *args) -> list[str]:
        if isinstance(code, Path):
            program = ["bash"] if code.suffix == ".sh" else [sys.executable]
            return [*program, str(code), *map(str, args)]
        return [sys.executable, "-c", code, *map(str, args)]

    def __call__(self, backend: str | None, code: str | Path, *args, env: dict | None = None, cwd=None,
                 timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run(self.command(code, *args), env=self.environment(backend, env), cwd=cwd,
                             capture_output=True, text=True, timeout=timeout)
        if check and run.returncode != 0:
            what = code.name if isinstance(code, Path) else "code"
            raise AssertionError(f"{what} on {backend or 'the default backend'} exited with {run.returncode}\n"
                                 f"--- stderr (end) ---\n{run.stderr[-3000:]}\n"
                                 f"--- stdout (end) ---\n{run.stdout[-1000:]}")
        return run

    def results(self, backend: str | None, code: str | Path, *args, marker: str = "RESULTS", **kwargs) -> dict:
        """What `code` printed after `marker`, as JSON; where it reports a "backend", it must be `backend`."""
        run = self(backend, code, *args, **kwargs)
        assert marker in run.stdout, f"no {marker!r} in the output:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        results = json.loads(run.stdout.split(marker, 1)[1])
        if backend is not None and isinstance(results, dict) and "backend" in results:
            assert results["backend"] == backend, results["backend"]
        return results

    def popen(self, backend: str | None, code: str | Path, *args, env: dict | None = None,
              cwd=None) -> subprocess.Popen:
        return subprocess.Popen(self.command(code, *args), env=self.environment(backend, env), cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="session")
def run_on_backend() -> BackendRunner:
    """Run code in a fresh interpreter on a Keras backend: see BackendRunner."""
    return BackendRunner()
