"""`fit_on_device`: the same training as `fit`, and clear errors for bad arguments.

On JAX it replaces fit's per-batch loop with one compiled epoch; the JAX checks run in
a subprocess (Keras picks its backend once per process). On TensorFlow it is `fit`.
"""

import textwrap

import keras
import numpy as np
import pytest

import vaekit
from vaekit.on_device import fit_on_device

JAX_SCRIPT = textwrap.dedent("""
    import json
    import keras, numpy as np
    import vaekit
    from vaekit import data
    from vaekit.on_device import fit_on_device

    (x, _), _ = data.load_mnist(limit=300)  # batch 128: two full batches and a remainder of 44

    def vae():
        keras.utils.set_random_seed(0)
        model = vaekit.fc_vae(latent_dim=4, hidden_units=64, seed=1)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        return model

    def weights(model):
        return [np.asarray(w) for w in model.weights]

    reference = vae()
    fit_history = reference.fit(x, epochs=3, batch_size=128, shuffle=False, verbose=0).history
    on_device = vae()
    device_history = fit_on_device(on_device, x, epochs=3, batch_size=128, shuffle=False, verbose=0).history
    shuffled = [fit_on_device(vae(), x, epochs=2, seed=3, verbose=0).history["loss"] for _ in range(2)]

    keras.utils.set_random_seed(0)
    autoencoder = vaekit.fc_autoencoder()
    autoencoder.compile(optimizer="adam", loss="mse")
    autoencoder_history = fit_on_device(autoencoder, x, x, epochs=2, batch_size=100, verbose=0,
                                        validation_data=(x[:50], x[:50])).history
    def error(call):  # the message of the ValueError a bad call raises before anything trains, or None
        try:
            call()
        except ValueError as raised:
            return str(raised)
        return None

    rejected = {
        "x": error(lambda: fit_on_device(vae(), x * 255, epochs=1, verbose=0)),
        "validation_data": error(lambda: fit_on_device(vae(), x, epochs=1, verbose=0, validation_data=(x[:8] * 255,))),
        "y": error(lambda: fit_on_device(autoencoder, x, x[:, :27], epochs=1, verbose=0)),
    }
    print("RESULTS" + json.dumps({
        "backend": keras.backend.backend(), "rejected": rejected,
        "fit": fit_history, "fit_on_device": device_history,
        "weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(weights(reference), weights(on_device))),
        "shuffled": shuffled, "autoencoder": autoencoder_history,
    }))
""")


@pytest.fixture(scope="module")
def jax_results(real_data_dir, run_on_backend):
    return run_on_backend.results("jax", JAX_SCRIPT, env={"VAEKIT_DATA_DIR": real_data_dir})


def test_jax_epoch_matches_fit_step_for_step(jax_results):
    assert jax_results["backend"] == "jax"
    fit, on_device = jax_results["fit"], jax_results["fit_on_device"]
    assert set(on_device) == set(fit) == {"loss", "reconstruction_loss", "kl_loss"}
    for name in fit:
        np.testing.assert_allclose(on_device[name], fit[name], rtol=1e-4, err_msg=name)
    assert fit["loss"][-1] < fit["loss"][0]
    assert jax_results["weight_difference"] < 1e-3


def test_jax_shuffling_is_seeded(jax_results):
    first, second = jax_results["shuffled"]
    assert first == second
    assert first != jax_results["fit_on_device"]["loss"][:2]  # shuffled batches, different steps


def test_jax_trains_models_with_targets_and_validates(jax_results):
    history = jax_results["autoencoder"]
    assert set(history) == {"loss", "val_loss"}
    assert history["loss"][1] < history["loss"][0]
    assert all(np.isfinite(history["val_loss"]))


def test_jax_checks_a_vaekit_models_data_as_its_fit_does(jax_results):
    rejected = jax_results["rejected"]
    assert rejected["x"] is not None and "`x` values must lie in [0.0, 1.0]" in rejected["x"]
    assert rejected["validation_data"] is not None and "validation" in rejected["validation_data"]
    assert rejected["y"] is not None and "`y`" in rejected["y"]


def compiled_vae():
    keras.utils.set_random_seed(0)
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=16, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae


@pytest.mark.oldest_versions
def test_other_backends_use_fit_and_return_its_history():
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    history = fit_on_device(compiled_vae(), x, epochs=2, batch_size=32, validation_data=(x[:16],),
                            callbacks=[callback], verbose=0)
    assert isinstance(history, keras.callbacks.History)
    assert set(history.history) == {"loss", "reconstruction_loss", "kl_loss",
                                    "val_loss", "val_reconstruction_loss", "val_kl_loss"}
    assert seen == [0, 1]


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(epochs=0), ValueError, "`epochs`"),
    (dict(epochs=1.5), TypeError, "`epochs`"),
    (dict(batch_size=0), ValueError, "`batch_size`"),
    (dict(verbose=3), ValueError, "`verbose`"),
    (dict(validation_data=np.zeros((4, 28, 28, 1))), ValueError, "`validation_data`"),
    (dict(seed=-1), ValueError, "`seed`"),
    (dict(y=np.zeros((3, 28, 28, 1))), ValueError, "`y`"),
])
def test_bad_arguments_name_themselves(kwargs, error, words):
    x = np.zeros((8, 28, 28, 1), dtype=np.float32)
    with pytest.raises(error, match=words):
        fit_on_device(compiled_vae(), x, **kwargs)


def test_bad_model_or_data_is_refused_early():
    x = np.zeros((8, 28, 28, 1), dtype=np.float32)
    with pytest.raises(TypeError, match="`model`"):
        fit_on_device("vae", x)
    with pytest.raises(ValueError, match="compiled"):
        fit_on_device(vaekit.fc_vae(), x)
    with pytest.raises(ValueError, match="`x` is empty"):
        fit_on_device(compiled_vae(), x[:0])
    with pytest.raises(TypeError, match="`x`"):
        fit_on_device(compiled_vae(), [[0.0]])
