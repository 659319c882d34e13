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


# --- Burda et al.'s settings, shared by notebook 08 and scripts/burda_paper_length.py -----------

@pytest.mark.oldest_versions
def test_burda_learning_rate_stages_are_three_to_the_i_epochs_at_a_seventh_decade_each():
    schedule = vaekit.training.burda_learning_rate(steps_per_epoch=2)
    ends = np.cumsum([3 ** i for i in range(8)]) * 2  # the last step of each stage, + 1
    assert ends[-1] == 2 * 3280  # 3,280 epochs
    for stage, end in enumerate(ends):
        for step in (end - 2 * 3 ** stage, end - 1):  # the stage's first and last step
            rate = float(keras.ops.convert_to_numpy(schedule(step)))
            assert rate == pytest.approx(1e-3 * 10 ** (-stage / 7), rel=1e-5), (stage, step)
    with pytest.raises(ValueError, match="`steps_per_epoch`"):
        vaekit.training.burda_learning_rate(0)


@pytest.mark.oldest_versions
def test_set_output_bias_to_mean_makes_the_untrained_output_bias_the_clipped_mean_image():
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
    x = np.random.default_rng(0).random((6, 4, 4, 1), dtype=np.float32)
    x[:, 0, 0, 0], x[:, 3, 3, 0] = 0.0, 1.0  # a pixel never lit and one always lit: clipped to 1e-4 and 1 - 1e-4
    vaekit.training.set_output_bias_to_mean(vae, x)
    bias = keras.ops.convert_to_numpy(vae.decoder.layers[-2].bias)
    expected = np.clip(x.reshape(6, -1).mean(axis=0), 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), expected, rtol=1e-4)


@pytest.mark.oldest_versions
def test_set_output_bias_to_mean_refuses_a_decoder_or_images_it_does_not_fit():
    x = np.full((3, 8, 8, 1), 0.5, dtype=np.float32)
    with pytest.raises(TypeError, match="`vae` must be a VAE with a `decoder`"):
        vaekit.training.set_output_bias_to_mean("vae", x)
    conv = vaekit.conv_vae(input_shape=(8, 8, 1), latent_dim=2, hidden_units=4, filters=(4, 4), seed=1)
    with pytest.raises(ValueError, match="`vae`'s decoder must end in a Dense layer .* Conv2DTranspose"):
        vaekit.training.set_output_bias_to_mean(conv, x)
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
    with pytest.raises(ValueError, match="`x_train` must hold images of the decoder's output size, 16 pixels"):
        vaekit.training.set_output_bias_to_mean(vae, x)
    with pytest.raises(ValueError, match=r"`x_train` values must lie in \[0.0, 1.0\]"):
        vaekit.training.set_output_bias_to_mean(vae, x[:, :4, :4] * 255)


@pytest.mark.oldest_versions
def test_burda_script_builds_its_paper_run_with_the_shared_schedule_and_bias(monkeypatch):
    from tiny import load_script

    monkeypatch.setenv("KERAS_BACKEND", keras.backend.backend())  # the script's default must not leak out
    x = np.random.default_rng(0).random((40, 28, 28, 1), dtype=np.float32)  # batch 20: two steps an epoch
    vae, config = load_script("scripts/burda_paper_length.py").build("paper", x)
    assert config["activation"] == "tanh" and config["batch_size"] == 20 and config["train_images"] == 40
    assert vae.optimizer.get_config()["learning_rate"]["config"] == (
        keras.optimizers.schedules.serialize(vaekit.training.burda_learning_rate(2))["config"])
    assert vae.optimizer.get_config()["epsilon"] == pytest.approx(1e-4)
    reference = vaekit.fc_vae(latent_dim=50, hidden_units=(200, 200), seed=0, activation="tanh")
    vaekit.training.set_output_bias_to_mean(reference, x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(vae.decoder.layers[-2].bias),
                                  keras.ops.convert_to_numpy(reference.decoder.layers[-2].bias))
