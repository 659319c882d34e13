"""Test set-up: import vaekit from this checkout, quiet TensorFlow, the data-folder fixture."""

from __future__ import annotations

import os
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
