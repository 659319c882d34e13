"""Shared test fixtures: tiny builder settings, small image batches, the data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter hides test output
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # import vaekit from this checkout, installed or not
    sys.path.insert(0, str(ROOT))

# Every builder at its smallest useful size: keyword arguments for each, so tests
# that must touch all six (saving, shapes) stay fast on a shared CPU.
TINY_BUILDERS = {
    "conv_autoencoder": dict(input_shape=(8, 8, 1), filters=4),
    "conv_vae": dict(input_shape=(8, 8, 1), latent_dim=2, hidden_units=4, filters=(4, 4), seed=1),
    "fc_autoencoder": dict(input_shape=(4, 4, 1), hidden_units=(8,), latent_dim=2),
    "fcn_autoencoder": dict(input_shape=(4, 4, 3), hidden_units=(8,), latent_dim=2),
    "strided_conv_autoencoder": dict(input_shape=(8, 8, 3), filters=(4, 4)),
    "fc_vae": dict(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1),
}


def tiny_model(name: str):
    """Build the builder `name` with its TINY_BUILDERS settings."""
    import vaekit.models

    return getattr(vaekit.models, name)(**TINY_BUILDERS[name])


def tiny_images(shape, n: int = 4, seed: int = 0) -> np.ndarray:
    """`n` random float32 images of `shape` in [0, 1]."""
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


@pytest.fixture
def real_data_dir() -> Path:
    """The offline data folder ($VAEKIT_DATA_DIR); tests using it skip where it is absent."""
    folder = os.environ.get("VAEKIT_DATA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("VAEKIT_DATA_DIR is not set to a folder with the offline data sets")
    return Path(folder)
