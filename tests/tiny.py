"""Tiny models and images shared by the tests (imported as `tiny`), and `load_script`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str | Path):
    """A script of the checkout (`path` relative to it, e.g. "scripts/source_check.py") as a module named
    after its file, without running its main()."""
    path = ROOT / path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StopAfter(keras.callbacks.Callback):
    """Stops `fit` after `epochs` epochs, as a kill between two epochs would: the run is left unfinished."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


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
    """Build the builder `name` as vaekit exports it (checked, guarded) with its TINY_BUILDERS settings."""
    import vaekit

    return getattr(vaekit, name)(**TINY_BUILDERS[name])


def tiny_images(shape, n: int = 4, seed: int = 0) -> np.ndarray:
    """`n` random float32 images of `shape` in [0, 1]."""
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")
