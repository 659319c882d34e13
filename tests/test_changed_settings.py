"""A changed setting gets its own run: each kind of setting a notebook cell can change.

The committed run stays where it is and is found again unchanged; the changed one trains in a
sibling folder named after the difference, and is found again when asked for a second time.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import vaekit
from vaekit import training

X = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")
BASE = dict(latent_dim=2, loss="mse", learning_rate=1e-2, batch_size=8, epochs=2, x=X, config={"seed": 0})


def run(run_dir, latent_dim, loss, learning_rate, batch_size, epochs, x, config):
    keras.utils.set_random_seed(0)
    model = vaekit.fc_autoencoder(input_shape=(4, 4, 1), hidden_units=(8,), latent_dim=latent_dim)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    history = training.fit_resumable(model, x, x, run_dir=run_dir, epochs=epochs, batch_size=batch_size,
                                     config=config, verbose=0)
    return model, history


@pytest.mark.parametrize("change, name", [
    (dict(latent_dim=3), "units3"),                       # the model
    (dict(loss="binary_crossentropy"), "loss-binary-crossentropy"),
    (dict(learning_rate=1e-3), "learning-rate0.001"),     # the optimizer
    (dict(batch_size=4), "batch-size4"),
    (dict(epochs=3), "epochs3"),
    (dict(x=X[:8]), "data"),                              # another subset, as quick mode takes
    (dict(x=1 - X), "data"),                              # other images, the same number
    (dict(config={"seed": 1}), "seed1"),                  # what only the config says
])
def test_a_changed_setting_trains_a_run_of_its_own(tmp_path, capsys, change, name):
    run_dir = tmp_path / "run"
    _, history = run(run_dir, **BASE)
    committed = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    capsys.readouterr()

    changed, changed_history = run(run_dir, **{**BASE, **change})
    printed = capsys.readouterr().out
    siblings = [path for path in tmp_path.iterdir() if path != run_dir]
    assert len(siblings) == 1 and siblings[0].name.startswith(f"run-{name}-"), siblings
    assert "holds a run with other settings" in printed and siblings[0].name in printed
    assert int(changed.optimizer.iterations) > 0  # trained, not loaded
    assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == committed

    again, again_history = run(run_dir, **{**BASE, **change})
    # Found and loaded: the optimizer state is the finished run's, nothing more trained.
    assert again_history == changed_history and int(again.optimizer.iterations) == int(changed.optimizer.iterations)
    assert len(list(tmp_path.iterdir())) == 2
    unchanged, unchanged_history = run(run_dir, **BASE)
    assert unchanged_history == history and int(unchanged.optimizer.iterations) == 2 * 16 // 8
