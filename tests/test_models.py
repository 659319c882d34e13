"""The builders reproduce the sources' architectures, parameter for parameter."""

import warnings

import keras
import numpy as np
import pytest

import vaekit

pytestmark = pytest.mark.oldest_versions  # .ci/run's stage on the oldest Keras and TensorFlow

# Parameter counts of the architectures as the sources describe them (by hand:
# kernel*kernel*in*out + out per convolution, in*out + out per dense layer).
SEED_PARAMETER_COUNTS = [
    (vaekit.conv_autoencoder, {}, 28_353),
    (vaekit.fc_autoencoder, {}, 254_704),
    (vaekit.fcn_autoencoder, {}, 25_737_792),
    (vaekit.strided_conv_autoencoder, {}, 47_355),
]


def vae_parameters(vae):
    return vae.encoder.count_params() + vae.decoder.count_params()


@pytest.mark.parametrize("builder, options, expected", SEED_PARAMETER_COUNTS, ids=lambda v: getattr(v, "__name__", ""))
def test_autoencoder_matches_seed_parameter_count(builder, options, expected):
    assert builder(**options).count_params() == expected


def test_conv_vae_matches_seed_000_parameter_count():
    vae = vaekit.conv_vae()
    # The keras.io example prints 69,076 (encoder) and 65,089 (decoder).
    assert vae.encoder.count_params() == 69_076
    assert vae.decoder.count_params() == 65_089


def test_conv_vae_with_128_hidden_units_is_seed_003_model():
    vae = vaekit.conv_vae(latent_dim=16, hidden_units=128)
    # 3136*128+128 replaces 3136*16+16; heads 128*16+16 each; decoder Dense 16*3136+3136.
    assert vae.encoder.count_params() == 320 + 18_496 + 401_536 + 2 * 2_064
    assert vae.decoder.count_params() == 65_089 + 14 * 3_136


def test_conv_vae_builds_seed_004_svhn_model():
    vae = vaekit.conv_vae(latent_dim=200, hidden_units=1024, input_shape=(32, 32, 3))
    z_mean, z_log_var, z = vae.encoder(np.zeros((2, 32, 32, 3), "float32"))
    assert z.shape == (2, 200)
    assert vae.decoder.output_shape == (None, 32, 32, 3)


def test_fc_vae_has_pytorch_example_sizes():
    vae = vaekit.fc_vae()
    assert vae_parameters(vae) == 652_824
    assert vae.encoder.get_layer("z_mean").units == 20


def test_fc_vae_with_two_hidden_layers_is_burdas_vae():
    vae = vaekit.fc_vae(latent_dim=50, hidden_units=(200, 200))
    # 784-200-200-(50, 50) and 50-200-200-784, as in Burda et al. (2016), section 5.
    assert vae.encoder.count_params() == 784 * 200 + 200 + 200 * 200 + 200 + 2 * (200 * 50 + 50)
    assert vae.decoder.count_params() == 50 * 200 + 200 + 200 * 200 + 200 + 200 * 784 + 784
    assert [layer.units for layer in vae.decoder.layers if hasattr(layer, "units")] == [200, 200, 784]


def test_fc_vae_takes_the_hidden_layers_activation_and_names_an_unknown_one():
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=(8, 8), input_shape=(4, 4, 1), activation="tanh")
    hidden = [layer for part in (vae.encoder, vae.decoder) for layer in part.layers
              if hasattr(layer, "units") and layer.units == 8]
    assert len(hidden) == 4 and all(layer.activation is keras.activations.tanh for layer in hidden)
    assert vae.encoder.get_layer("z_mean").activation is keras.activations.linear
    with pytest.raises(ValueError, match=r"`activation` must be a Keras activation .* got 'tanhh'"):
        vaekit.fc_vae(activation="tanhh")


@pytest.mark.parametrize("builder", [vaekit.conv_autoencoder, vaekit.fc_autoencoder,
                                     vaekit.fcn_autoencoder, vaekit.strided_conv_autoencoder])
def test_autoencoder_output_has_input_shape_and_named_halves(builder):
    model = builder()
    assert model.output_shape == model.input_shape
    assert {layer.name for layer in model.layers} >= {"encoder", "decoder"}


def test_vae_encoder_returns_mean_log_variance_and_sample():
    vae = vaekit.conv_vae(latent_dim=3)
    outputs = vae(np.random.rand(4, 28, 28, 1).astype("float32"))
    assert set(outputs) == {"reconstruction", "z_mean", "z_log_var", "z"}
    assert outputs["reconstruction"].shape == (4, 28, 28, 1)
    assert outputs["z"].shape == (4, 3)


def test_output_ranges_match_seed_activations():
    x = np.random.rand(2, 64, 64, 3).astype("float32") * 2 - 1
    for builder in (vaekit.fcn_autoencoder, vaekit.strided_conv_autoencoder):
        y = keras.ops.convert_to_numpy(builder()(x))
        assert y.min() >= -1 and y.max() <= 1 and y.min() < 0  # tanh, not sigmoid
    y = keras.ops.convert_to_numpy(vaekit.conv_autoencoder()(np.random.rand(2, 28, 28, 1).astype("float32")))
    assert y.min() >= 0 and y.max() <= 1


# --- deterministic_autoencoder: the VAE's layers without the noise -----------------------

def test_deterministic_autoencoder_decodes_the_posterior_mean():
    vae = vaekit.conv_vae(latent_dim=3, hidden_units=8, filters=(4, 8), seed=0)
    autoencoder = vaekit.deterministic_autoencoder(vae)
    x = np.random.default_rng(0).random((5, 28, 28, 1)).astype("float32")
    z_mean = vae.encoder.predict(x, verbose=0)[0]
    expected = vae.decoder.predict(z_mean, verbose=0)
    output = autoencoder.predict(x, verbose=0)
    assert output.shape == x.shape
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(output, autoencoder.predict(x, verbose=0))  # no sampling


def test_deterministic_autoencoder_shares_layers_and_leaves_out_the_log_variance_head():
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8, input_shape=(4, 4, 1), seed=0)
    autoencoder = vaekit.deterministic_autoencoder(vae)
    head = vae.encoder.get_layer("z_log_var")
    assert autoencoder.count_params() == vae.encoder.count_params() + vae.decoder.count_params() - head.count_params()
    assert not any(variable is weight for variable in autoencoder.weights for weight in head.weights)

    x = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")
    before = [w.copy() for w in vae.encoder.get_layer("z_mean").get_weights()]
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss=vaekit.reconstruction_loss)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "Gradients do not exist", UserWarning)  # an unused head would warn so
        autoencoder.fit(x, x, epochs=1, batch_size=8, verbose=0)
    after = vae.encoder.get_layer("z_mean").get_weights()
    assert not np.allclose(before[0], after[0])  # training the autoencoder trained the VAE's encoder


@pytest.mark.parametrize("argument", [vaekit.conv_autoencoder(), "conv_vae", None])
def test_deterministic_autoencoder_refuses_what_is_not_a_vae(argument):
    with pytest.raises(TypeError, match="vae"):
        vaekit.deterministic_autoencoder(argument)


def test_deterministic_autoencoder_refuses_a_subclassed_encoder():
    class Encoder(keras.Model):
        def call(self, x):
            flat = keras.ops.reshape(x, (keras.ops.shape(x)[0], -1))[:, :2]
            return flat, flat, flat

    vae = vaekit.VAE(Encoder(), vaekit.fc_vae(latent_dim=2).decoder)
    with pytest.raises(TypeError, match="functional"):
        vaekit.deterministic_autoencoder(vae)
