"""The same builders and VAE train on TensorFlow, JAX and PyTorch.

Keras picks its backend once per process, so each backend runs in a subprocess.
"""

import json
import textwrap

import numpy as np
import pytest

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
def test_vae_trains_and_reloads_on_backend(backend, tmp_path, real_data_dir, run_on_backend):
    results = run_on_backend.results(backend, SCRIPT, tmp_path, env={"VAEKIT_DATA_DIR": real_data_dir})
    for name in ("conv_vae", "fc_vae"):
        losses = results[name]["loss"]
        assert losses[-1] < losses[0], f"{name} on {backend}: loss did not fall ({losses})"
        assert all(k >= 0 for k in results[name]["kl_loss"])
        assert results[name]["reload_max_difference"] == 0.0


LIKELIHOOD_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import vaekit
    from vaekit import data
    from vaekit.vae import continuous_bernoulli_log_norm

    def gradient(function, value):
        # d function / d value, by the backend's own autodiff (test code, not model code)
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf
            variable = tf.Variable(value)
            with tf.GradientTape() as tape:
                result = function(variable)
            return tape.gradient(result, variable).numpy()
        if backend == "jax":
            import jax
            return np.asarray(jax.grad(lambda v: function(v))(value))
        import torch
        variable = torch.tensor(value, requires_grad=True)
        function(variable).backward()
        return variable.grad.numpy()

    lambdas = np.array(json.loads(sys.argv[2]), dtype="float32")
    x = np.full_like(lambdas, 0.3)
    per_pixel = lambda lam: keras.ops.sum(vaekit.reconstruction_loss(x[None], lam[None], "continuous_bernoulli"))
    results = {
        "backend": keras.backend.backend(),
        "log_norm": keras.ops.convert_to_numpy(continuous_bernoulli_log_norm(lambdas)).tolist(),
        "gradient": gradient(per_pixel, lambdas).tolist(),
    }
    keras.utils.set_random_seed(0)
    (images, _), _ = data.load_mnist(limit=256)
    for kind in ("continuous_bernoulli", "gaussian"):
        vae = vaekit.conv_vae(latent_dim=2, hidden_units=8, filters=(4, 8), reconstruction=kind, seed=0)
        vae.compile(optimizer=keras.optimizers.Adam(3e-3))
        history = vae.fit(images, epochs=3, batch_size=64, verbose=0).history
        vae.save(sys.argv[1] + f"/{kind}.keras")
        loaded = keras.saving.load_model(sys.argv[1] + f"/{kind}.keras")
        z = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
        results[kind] = {
            "loss": history["loss"],
            "reload_max_difference": float(np.abs(
                keras.ops.convert_to_numpy(loaded.decode(z)) - keras.ops.convert_to_numpy(vae.decode(z))).max()),
            "log_var": None if vae.decoder_log_var is None else [
                float(keras.ops.convert_to_numpy(m.decoder_log_var)) for m in (vae, loaded)],
        }
    print("RESULTS" + json.dumps(results))
""")

# Near 0 and 1, either side of the series' switch at |1 - 2 lambda| = 0.1, and at 1/2.
LAMBDAS = [1e-4, 0.2, 0.4499, 0.4501, 0.4999, 0.5, 0.5001, 0.9, 1 - 1e-4]


@pytest.mark.parametrize("backend", sorted(BACKEND_MODULES))
def test_continuous_bernoulli_and_gaussian_train_and_differentiate_on_backend(backend, tmp_path, real_data_dir,
                                                                             run_on_backend):
    results = run_on_backend.results(backend, LIKELIHOOD_SCRIPT, tmp_path, json.dumps(LAMBDAS),
                                     env={"VAEKIT_DATA_DIR": real_data_dir})

    # log C(lambda) and d/dlambda of -log p(0.3 | lambda), against float64 closed forms
    # evaluated at the float32 lambdas the backend saw.
    lam = np.float32(LAMBDAS).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_norm = np.where(lam == 0.5, np.log(2.0), np.log((np.log1p(-lam) - np.log(lam)) / (1 - 2 * lam)))
        t = 1 - 2 * lam
        # d log C / d lambda = -2 d/dt log(artanh(t) / t), which is 0 at t = 0 (an even function of t)
        dlog_norm = np.where(t == 0, 0.0, -2 * (1 / ((1 - t**2) * np.arctanh(t)) - 1 / t))
    expected_gradient = -0.3 / lam + 0.7 / (1 - lam) - dlog_norm
    np.testing.assert_allclose(results["log_norm"], log_norm, rtol=2e-6, atol=1e-6)
    assert np.all(np.isfinite(results["gradient"]))
    np.testing.assert_allclose(results["gradient"], expected_gradient, rtol=1e-3, atol=1e-3)

    for kind in ("continuous_bernoulli", "gaussian"):
        losses = results[kind]["loss"]
        assert losses[-1] < losses[0], f"{kind} on {backend}: loss did not fall ({losses})"
        assert results[kind]["reload_max_difference"] == 0.0
    first, reloaded = results["gaussian"]["log_var"]
    assert first < 0.0 and reloaded == first  # the variance was learned (from log 1 = 0) and saved
