"""The conditional VAE (`vaekit.cvae`): shapes, its loss, training, saving, label checks, backends, a copy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import vaekit
from vaekit import cvae, data, evaluate
from test_backends import BACKEND_MODULES
from test_copy_builder import RUNNER, VAE_SOURCE, pasted
from tiny import tiny_images

TINY = dict(num_classes=3, latent_dim=2, hidden_units=4, input_shape=(8, 8, 1), filters=(4, 4), seed=1)
LABELS = np.array([0, 1, 2, 0, 1, 2])


def test_shapes_and_the_guarded_class_through_vaekit():
    model = vaekit.conditional_conv_vae(**TINY)
    assert isinstance(model, vaekit.ConditionalVAE) and isinstance(model, cvae.ConditionalVAE)
    assert isinstance(model, vaekit.VAE)  # vaekit's guards: data checks and the NaN stop
    outputs = model((tiny_images((8, 8, 1), n=6), LABELS))
    assert tuple(outputs["reconstruction"].shape) == (6, 8, 8, 1)
    assert all(tuple(outputs[key].shape) == (6, 2) for key in ("z_mean", "z_log_var", "z"))
    assert [tuple(i.shape[1:]) for i in model.encoder.inputs] == [(8, 8, 1), (3,)]
    assert [tuple(i.shape[1:]) for i in model.decoder.inputs] == [(2,), (3,)]
    # The default network is conv_vae's plus the label's weights into its two dense layers.
    plain = cvae.conditional_conv_vae()
    assert plain.count_params() == vaekit.conv_vae().count_params() + 10 * 16 + 10 * 7 * 7 * 64 == 165_685


def test_the_label_changes_the_decoded_image():
    model = cvae.conditional_conv_vae(**TINY)
    z = np.zeros((1, 2), dtype="float32")
    as_zero, as_two = (keras.ops.convert_to_numpy(model.decode(z, [label])) for label in (0, 2))
    assert np.abs(as_zero - as_two).max() > 1e-4


def test_loss_is_reconstruction_plus_beta_times_kl_by_hand():
    model = cvae.conditional_conv_vae(**TINY, beta=2.5)
    x = tiny_images((8, 8, 1), n=6)
    for inputs in ((x, LABELS), {"images": x, "labels": LABELS}):
        y_pred = model(inputs)
        loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=inputs, y_pred=y_pred)))
        p = np.clip(keras.ops.convert_to_numpy(y_pred["reconstruction"]).astype(np.float64), 1e-7, 1 - 1e-7)
        mean, log_var = (keras.ops.convert_to_numpy(y_pred[key]).astype(np.float64) for key in ("z_mean", "z_log_var"))
        bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(6, -1).sum(axis=1)
        kl = -0.5 * (1 + log_var - mean**2 - np.exp(log_var)).sum(axis=1)
        assert kl.mean() > 0
        assert loss == pytest.approx(bce.mean() + 2.5 * kl.mean(), rel=1e-5)


def test_training_on_mnist_lowers_the_loss(real_data_dir):
    keras.utils.set_random_seed(0)
    (x, y), _ = data.load_mnist(data_dir=real_data_dir, limit=512)
    model = vaekit.conditional_conv_vae(latent_dim=2, hidden_units=16, filters=(8, 16), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(x=(x, y), batch_size=128, verbose=0, return_dict=True)["loss"]
    history = model.fit(x=(x, y), epochs=2, batch_size=64, verbose=0).history
    after = model.evaluate(x=(x, y), batch_size=128, verbose=0, return_dict=True)["loss"]
    assert after < before - 50, (before, history["loss"], after)  # BCE of about 543 nats at the start


def test_save_and_reload_give_identical_outputs(tmp_path):
    model = vaekit.conditional_conv_vae(**TINY, beta=0.5, reconstruction="mse")
    x = tiny_images((8, 8, 1), n=6)
    model.compile(optimizer="adam")
    model.fit(x=(x, LABELS), epochs=1, batch_size=3, verbose=0)
    model.save(tmp_path / "cvae.keras")
    loaded = keras.saving.load_model(tmp_path / "cvae.keras")
    assert type(loaded) is vaekit.ConditionalVAE
    assert (loaded.num_classes, loaded.beta, loaded.reconstruction) == (3, 0.5, "mse")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded((x, LABELS))["z_mean"]),
                                  keras.ops.convert_to_numpy(model((x, LABELS))["z_mean"]))
    np.testing.assert_array_equal(cvae.generate(loaded, [0, 1, 2], num_codes=4, seed=3),
                                  cvae.generate(model, [0, 1, 2], num_codes=4, seed=3))


def test_generate_draws_every_label_with_every_code():
    model = cvae.conditional_conv_vae(**TINY)
    z = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    grid = cvae.generate(model, [2, 0, 1], z)
    assert grid.shape == (3, 4, 8, 8, 1)
    for row, label in enumerate([2, 0, 1]):  # row r, column c: label r decoded from code c
        expected = keras.ops.convert_to_numpy(model.decode(z, [label] * 4))
        np.testing.assert_allclose(grid[row], expected, atol=1e-6)
    drawn = cvae.generate(model, range(3), num_codes=5, seed=7)
    assert drawn.shape == (3, 5, 8, 8, 1)
    np.testing.assert_array_equal(drawn, cvae.generate(model, range(3), num_codes=5, seed=7))
    assert np.abs(drawn - cvae.generate(model, range(3), num_codes=5, seed=8)).max() > 1e-4


@pytest.mark.parametrize("labels, error, message", [
    (LABELS + 1, ValueError, r"`x\[1\]` must lie in 0..2, got \[1, 3\]"),
    (LABELS[:5], ValueError, r"`x\[1\]` has 5 labels but there are 6 images"),
    (LABELS + 0.5, TypeError, r"`x\[1\]` must hold integer class labels, got dtype float64"),
])
def test_fit_refuses_bad_labels(labels, error, message):
    model = vaekit.conditional_conv_vae(**TINY)
    model.compile(optimizer="adam")
    with pytest.raises(error, match=message):
        model.fit(x=(tiny_images((8, 8, 1), n=6), labels), epochs=1, verbose=0)


def test_fit_refuses_images_without_labels_and_names_the_fix():
    model = vaekit.conditional_conv_vae(**TINY)
    model.compile(optimizer="adam")
    x = tiny_images((8, 8, 1), n=6)
    with pytest.raises(TypeError, match=r"`x` of a ConditionalVAE must be \(images, labels\)"):
        model.fit(x, epochs=1, verbose=0)
    with pytest.raises(TypeError, match=r"`validation_data\[0\]` .*validation_data=\(\(val_images, val_labels\),\)"):
        model.fit(x=(x, LABELS), validation_data=(x, LABELS), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`x\['images'\]` values must lie in \[0.0, 1.0\]"):
        model.fit(x={"images": x * 255, "labels": LABELS}, epochs=1, verbose=0)
    with pytest.raises(TypeError, match=r"decodes a code together with a label"):
        model.decode(np.zeros((1, 2), dtype="float32"))


@pytest.mark.parametrize("labels, error, message", [
    ([3], ValueError, r"`labels` must lie in 0..2, got \[3, 3\]"),
    ([-1, 0], ValueError, r"`labels` must lie in 0..2, got \[-1, 0\]"),
    ([0.5], TypeError, r"`labels` must hold integer class labels"),
    ([], ValueError, r"`labels` must be a non-empty sequence"),
])
def test_generate_refuses_bad_labels(labels, error, message):
    with pytest.raises(error, match=message):
        cvae.generate(cvae.conditional_conv_vae(**TINY), labels)


def test_builder_checks_its_arguments_before_building():
    with pytest.raises(ValueError, match=r"`num_classes` must be a positive integer \(>= 1\), got 0"):
        vaekit.conditional_conv_vae(num_classes=0)
    with pytest.raises(ValueError, match=r"`input_shape` height and width must be divisible by 4"):
        vaekit.conditional_conv_vae(input_shape=(30, 30, 1))


BACKEND_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import vaekit
    from vaekit import cvae, data

    keras.utils.set_random_seed(0)
    (x, y), _ = data.load_mnist(limit=128)
    model = vaekit.conditional_conv_vae(hidden_units=8, filters=(4, 8), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x=(x, y), epochs=1, batch_size=64, verbose=0).history   # two steps
    model.save(sys.argv[1] + "/cvae.keras")
    loaded = keras.saving.load_model(sys.argv[1] + "/cvae.keras")
    z = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    print("RESULTS" + json.dumps({
        "backend": keras.backend.backend(), "loss": history["loss"], "class": type(loaded).__qualname__,
        "reload_max_difference": float(np.abs(cvae.generate(loaded, range(10), z)
                                              - cvae.generate(model, range(10), z)).max()),
    }))
""")


@pytest.mark.parametrize("backend", sorted(BACKEND_MODULES))
def test_trains_saves_and_reloads_on_backend(backend, tmp_path, real_data_dir, run_on_backend):
    results = run_on_backend.results(backend, BACKEND_SCRIPT, tmp_path, env={"VAEKIT_DATA_DIR": real_data_dir})
    assert len(results["loss"]) == 1 and 100 < results["loss"][0] < 1000  # BCE nats per 28x28 image
    assert results["class"] == "ConditionalVAE"
    assert results["reload_max_difference"] == 0.0


# guards.py, vae.py and cvae.py pasted into one file, below each other, without their import statements of vaekit.
CVAE_SOURCE = pasted("cvae.py")
COPY_SCRIPT = """
import json
x = np.random.default_rng(0).random((6, 8, 8, 1)).astype("float32")
labels = np.array([0, 1, 2, 0, 1, 2])
model = conditional_conv_vae(num_classes=3, latent_dim=2, hidden_units=4, input_shape=(8, 8, 1), filters=(4, 4))
model.compile(optimizer="adam")
history = model.fit(x=(x, labels), epochs=1, batch_size=3, verbose=0)
print("COPIED" + json.dumps({"loss": history.history["loss"], "grid": list(generate(model, [2, 1]).shape),
                              "class": type(model).__module__}))
"""


def test_copied_vae_and_cvae_build_and_train_without_vaekit(tmp_path):
    script = tmp_path / "cvae_copy.py"
    script.write_text("\n\n".join([VAE_SOURCE, CVAE_SOURCE, COPY_SCRIPT]))
    completed = subprocess.run([sys.executable, "-c", RUNNER, str(script)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = json.loads(completed.stdout.split("RESULTS", 1)[1])[str(script)]
    assert run["ok"], run.get("error")
    results = json.loads(run["stdout"].split("COPIED", 1)[1])
    assert len(results["loss"]) == 1 and np.isfinite(results["loss"][0])
    assert results["grid"] == [2, 8, 8, 8, 1] and results["class"] == "__main__"


def test_elbo_of_a_conditional_vae_is_the_conditional_bound_by_hand():
    model = vaekit.conditional_conv_vae(**TINY)
    x = (tiny_images((8, 8, 1), n=6) > 0.5).astype("float32")  # binary: BCE is a likelihood, no warning
    terms = evaluate.elbo_terms(model, (x, LABELS), seed=5)
    # The same computation by hand: q(z|x, y) from the encoder, one draw with a generator seeded alike, p(x|z, y).
    one_hot = keras.ops.convert_to_tensor(np.eye(3, dtype="float32")[LABELS])
    z_mean, z_log_var, _ = model.encoder([keras.ops.convert_to_tensor(x), one_hot])
    z = vaekit.Sampling(5)([z_mean, z_log_var])
    p = np.clip(keras.ops.convert_to_numpy(model.decoder([z, one_hot])).astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(6, -1).sum(axis=1)
    mean, log_var = (keras.ops.convert_to_numpy(a).astype(np.float64) for a in (z_mean, z_log_var))
    kl = -0.5 * (1 + log_var - mean**2 - np.exp(log_var)).sum(axis=1)
    np.testing.assert_allclose(terms["reconstruction_loss"], bce, rtol=1e-4)
    np.testing.assert_allclose(terms["kl_loss"], kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(terms["negative_elbo"], bce + kl, rtol=1e-4)
    # The labels enter: the same images under other labels give another bound; a dict works as the tuple does.
    other = evaluate.elbo(model, (x, (LABELS + 1) % 3), seed=5)["negative_elbo"]
    assert abs(other - terms["negative_elbo"].mean()) > 1e-3
    assert evaluate.elbo(model, {"images": x, "labels": LABELS}, seed=5) == evaluate.elbo(model, (x, LABELS), seed=5)


def test_evaluate_refuses_a_conditional_vae_without_labels_and_names_the_fix():
    model = vaekit.conditional_conv_vae(**TINY)
    x = tiny_images((8, 8, 1), n=6)
    with pytest.raises(TypeError,
                       match=r"`x` of a ConditionalVAE must be \(images, labels\).*elbo\(model, \(x_test, y_test\)\)"):
        evaluate.elbo(model, x)
    with pytest.raises(ValueError, match=r"`x\[1\]` must lie in 0..2"):
        evaluate.elbo_terms(model, (x, LABELS + 1))
    with pytest.raises(TypeError, match=r"only `elbo` and `elbo_terms` evaluate one"):
        evaluate.iwae_nll(model, (x, LABELS), k=2)
    with pytest.raises(TypeError, match=r"only `elbo` and `elbo_terms` evaluate one"):
        evaluate.active_units(model, x)


def label_detector(levels=(0.1, 0.5, 0.9), side=4):
    """A ConditionalVAE whose loss shows whether each image met its own label inside `fit`.

    The images of class c have every pixel at levels[c]. The encoder's mean is
    10 * (mean pixel - levels[label]): 0, so no KL (its log-variance is 0), only with the image's own
    label. The decoder ignores z and draws every pixel as levels[label]: the least possible BCE,
    the pixels' entropy, only with the image's own label. Any other pairing costs nats in both.
    """
    from vaekit.vae import Sampling

    pixels, levels = side * side, np.asarray(levels)
    images, labels = keras.Input((side, side, 1)), keras.Input((len(levels),))
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(images), labels])
    mean_layer = keras.layers.Dense(1, name="z_mean")
    z_mean = mean_layer(joined)
    z_log_var = keras.layers.Dense(1, kernel_initializer="zeros", name="z_log_var")(joined)
    z = Sampling(seed=0)([z_mean, z_log_var])
    encoder = keras.Model([images, labels], [z_mean, z_log_var, z], name="encoder")
    mean_layer.set_weights([np.r_[np.full(pixels, 10 / pixels), -10 * levels][:, None].astype("float32"),
                            np.zeros(1, "float32")])
    code, label = keras.Input((1,)), keras.Input((len(levels),))
    pixel_layer = keras.layers.Dense(pixels, activation="sigmoid")
    decoded = keras.layers.Reshape((side, side, 1))(pixel_layer(keras.layers.Concatenate()([code, label])))
    decoder = keras.Model([code, label], decoded, name="decoder")
    logits = np.log(levels / (1 - levels))
    pixel_layer.set_weights([np.vstack([np.zeros((1, pixels)), np.repeat(logits[:, None], pixels, axis=1)])
                             .astype("float32"), np.zeros(pixels, "float32")])
    model = cvae.ConditionalVAE(encoder, decoder, num_classes=len(levels))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))  # the weights stay as set
    return model, levels


def test_inside_fit_the_encoder_and_the_decoder_get_each_images_own_label():
    """A batch whose labels are shifted by one example (in the data, the encoder or the decoder) fails here."""
    model, levels = label_detector()
    labels = np.array([0, 1, 2, 2, 0, 1, 1, 2, 0, 0, 2, 1])
    x = np.broadcast_to(levels[labels][:, None, None, None], (12, 4, 4, 1)).astype("float32")
    entropy = -(levels * np.log(levels) + (1 - levels) * np.log(1 - levels))
    own_labels_bce = 16 * entropy[labels].mean()  # nats per image, with every image's own label
    history = model.fit(x=(x, labels), epochs=1, batch_size=4, verbose=0).history
    assert history["kl_loss"][0] == pytest.approx(0.0, abs=1e-4)  # the encoder: q(z | x, y) with y its own
    assert history["reconstruction_loss"][0] == pytest.approx(own_labels_bce, rel=1e-4)  # the decoder: p(x | z, y)
    assert model.evaluate(x=(x, labels), batch_size=4, verbose=0, return_dict=True)["kl_loss"] == pytest.approx(
        0.0, abs=1e-4)
    # The detector itself: labels one example off cost several nats in both terms.
    shifted = model.evaluate(x=(x, np.roll(labels, 1)), batch_size=4, verbose=0, return_dict=True)
    assert shifted["kl_loss"] > 1.0 and shifted["reconstruction_loss"] > own_labels_bce + 1.0
