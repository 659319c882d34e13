"""The same builders and VAE train on TensorFlow, JAX and PyTorch.

Keras picks its backend once per process, so each backend runs in a subprocess.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import vaekit
    from vaekit import data

    keras.utils.set_random_seed(0)
    (x, _), _ = data.load_mnist(limit=512)
    results = {"backend": keras.backend.backend()}
    for name, vae in [("conv_vae", vaekit.conv_vae(seed=0)),
                      ("fc_vae", vaekit.fc_vae(reconstruction="mse", seed=0))]:
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = vae.fit(x, epochs=3, batch_size=64, verbose=0).history
        path = sys.argv[1] + f"/{name}.keras"
        vae.save(path)
        loaded = keras.saving.load_model(path)
        z = np.random.default_rng(0).standard_normal((4, vae.decoder.input_shape[-1])).astype("float32")
        results[name] = {
            "loss": history["loss"],
            "kl_loss": history["kl_loss"],
            "reload_max_difference": float(np.abs(
                keras.ops.convert_to_numpy(loaded.decoder(z)) - keras.ops.convert_to_numpy(vae.decoder(z))).max()),
        }
    print("RESULTS" + json.dumps(results))
""")


@pytest.mark.parametrize("backend", sorted(BACKEND_MODULES))
def test_vae_trains_and_reloads_on_backend(backend, tmp_path, real_data_dir):
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        pytest.fail(f"{backend} is not installed; the test extras install all three backends")
    env = {**os.environ, "KERAS_BACKEND": backend, "VAEKIT_DATA_DIR": str(real_data_dir),
           "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.split("RESULTS", 1)[1])
    assert results["backend"] == backend
    for name in ("conv_vae", "fc_vae"):
        losses = results[name]["loss"]
        assert losses[-1] < losses[0], f"{name} on {backend}: loss did not fall ({losses})"
        assert all(k >= 0 for k in results[name]["kl_loss"])
        assert results[name]["reload_max_difference"] == 0.0
