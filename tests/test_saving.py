"""Every builder's model survives `.keras` and `.weights.h5` files, across backends."""

from __future__ import annotations

import importlib.util
import textwrap

import keras
import numpy as np
import pytest

from tiny import TINY_BUILDERS, tiny_images, tiny_model
from vaekit import models
from vaekit.vae import VAE

pytestmark = pytest.mark.oldest_versions  # .ci/run's stage on the oldest Keras and TensorFlow

VAE_BUILDERS = ("conv_vae", "fc_vae")


def deterministic_outputs(model, x) -> dict[str, np.ndarray]:
    """Outputs that do not depend on the sampling noise."""
    if isinstance(model, VAE):
        z_mean, z_log_var, _ = model.encoder(x)
        z = np.linspace(-2, 2, len(x) * z_mean.shape[-1], dtype="float32").reshape(len(x), -1)
        return {
            "z_mean": keras.ops.convert_to_numpy(z_mean),
            "z_log_var": keras.ops.convert_to_numpy(z_log_var),
            "decoded": keras.ops.convert_to_numpy(model.decoder(z)),
        }
    return {"reconstruction": keras.ops.convert_to_numpy(model(x))}


def assert_same_outputs(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol, err_msg=key)


def trained(name: str):
    """A tiny model whose weights differ from any fresh build (random, as if trained).

    Setting weights directly instead of fitting keeps these tests fast; what is saved
    is the same either way.
    """
    model = tiny_model(name)
    x = tiny_images(TINY_BUILDERS[name]["input_shape"])
    model(x)  # build the VAE's variables
    rng = np.random.default_rng(99)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model, x


@pytest.mark.parametrize("name", sorted(TINY_BUILDERS))
def test_model_round_trips_through_keras_file_with_identical_outputs(name, tmp_path):
    model, x = trained(name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.name == model.name
    assert loaded.count_params() == model.count_params()
    assert_same_outputs(deterministic_outputs(model, x), deterministic_outputs(loaded, x))


@pytest.mark.parametrize("name", sorted(TINY_BUILDERS))
def test_weights_round_trip_through_weights_h5_into_a_fresh_build_without_a_dummy_call(name, tmp_path):
    model, x = trained(name)
    path = tmp_path / f"{name}.weights.h5"
    model.save_weights(path)
    keras.utils.set_random_seed(12345)  # the fresh build starts from other weights
    fresh = tiny_model(name)
    assert not np.allclose(fresh.get_weights()[0], model.get_weights()[0])
    fresh.load_weights(path)
    assert_same_outputs(deterministic_outputs(model, x), deterministic_outputs(fresh, x))


@pytest.mark.parametrize("kind", ["mse", "continuous_bernoulli", "gaussian"])
@pytest.mark.parametrize("name", VAE_BUILDERS)
def test_saved_vae_keeps_beta_and_reconstruction_loss(name, kind, tmp_path):
    vae = getattr(models, name)(beta=4.0, reconstruction=kind, **TINY_BUILDERS[name])
    if kind == "gaussian":
        vae.decoder_log_var.assign(-1.7)  # as if learned: the reloaded model must keep it
    x = tiny_images(TINY_BUILDERS[name]["input_shape"])
    outputs = vae(x)
    vae.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    assert (loaded.beta, loaded.reconstruction) == (4.0, kind)
    # Same weights, the learned variance included: the same loss on the same outputs.
    loss = [float(keras.ops.convert_to_numpy(m.compute_loss(x, None, outputs))) for m in (vae, loaded)]
    assert loss[0] == loss[1]


def other_backend() -> str:
    """A backend other than this session's: JAX, or TensorFlow when the tests run on JAX."""
    return "tensorflow" if keras.backend.backend() == "jax" else "jax"


WRITE_SCRIPT = textwrap.dedent("""
    import sys

    import keras
    import numpy as np

    from vaekit import models

    folder, backend = sys.argv[1], sys.argv[2]
    assert keras.backend.backend() == backend, keras.backend.backend()
    keras.utils.set_random_seed(3)
    vae = models.conv_vae(input_shape=(8, 8, 1), latent_dim=2, hidden_units=4, filters=(4, 4))
    autoencoder = models.strided_conv_autoencoder(input_shape=(8, 8, 3), filters=(4, 4))
    x_gray = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    x_rgb = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    z = np.array([[-1.0, 0.5], [2.0, -0.3]], dtype="float32")
    vae(x_gray)
    vae.save(folder + "/vae.keras")
    autoencoder.save(folder + "/autoencoder.keras")
    np.savez(
        folder + "/outputs.npz",
        z_mean=keras.ops.convert_to_numpy(vae.encoder(x_gray)[0]),
        decoded=keras.ops.convert_to_numpy(vae.decoder(z)),
        reconstruction=keras.ops.convert_to_numpy(autoencoder(x_rgb)),
    )
""")


def test_model_saved_on_another_backend_loads_with_the_same_outputs(tmp_path, run_on_backend):
    writer_backend = other_backend()
    if importlib.util.find_spec(writer_backend) is None:
        pytest.skip(f"{writer_backend} is not installed")
    run_on_backend(writer_backend, WRITE_SCRIPT, tmp_path, writer_backend, timeout=300)
    expected = np.load(tmp_path / "outputs.npz")

    vae = keras.saving.load_model(tmp_path / "vae.keras")
    autoencoder = keras.saving.load_model(tmp_path / "autoencoder.keras")
    x_gray = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    x_rgb = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    z = np.array([[-1.0, 0.5], [2.0, -0.3]], dtype="float32")
    # Different backends use different kernels, so equal to float32 rounding, not bit for bit.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(vae.encoder(x_gray)[0]), expected["z_mean"], atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(vae.decoder(z)), expected["decoded"], atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(autoencoder(x_rgb)), expected["reconstruction"], atol=1e-5)
