"""Every public entry point that takes images, labels or scores checks them as `VAE.fit` does,
and errors about files name the path the user gave.

Metrics, ROC and the autoencoder builders' models refuse 0-255 pixels, digit labels where
anomaly flags belong, images of another size... with vaekit's messages; `active_units`'
default threshold is pinned by latent dimensions whose variances lie on both sides of it;
a write into a missing folder or onto a full disk names the file and folder.
"""

from __future__ import annotations

import errno
import textwrap

import keras
import numpy as np
import pytest

import tiny
import vaekit
from tiny import TINY_BUILDERS, tiny_images, tiny_model
from vaekit import evaluate, export, training

AUTOENCODERS = ["conv_autoencoder", "fc_autoencoder", "fcn_autoencoder", "strided_conv_autoencoder"]
TANH = {"fcn_autoencoder", "strided_conv_autoencoder"}


def images_for(name, n=4):
    x = tiny_images(TINY_BUILDERS[name]["input_shape"], n)
    return x * 2 - 1 if name in TANH else x


# --- reconstruction_metrics -----------------------------------------------------------------

def test_reconstruction_metrics_refuses_0_to_255_originals_with_the_fix():
    x = (np.random.default_rng(0).random((4, 8, 8, 1)) * 255).astype("uint8")
    with pytest.raises(ValueError, match=r"`x` values must lie in \[0.0, 1.0\], got \[\d+, 25\d\]\. Divide 0-255"):
        evaluate.reconstruction_metrics(x, tiny_images((8, 8, 1)))


@pytest.mark.parametrize("x, reconstruction, error, match", [
    (tiny_images((8, 8, 1)) * 2 - 1, tiny_images((8, 8, 1)), ValueError, r"`x` values.*\(x \+ 1\) / 2"),
    (tiny_images((8, 8, 1)), tiny_images((8, 8, 1)) * 255, ValueError, "`reconstruction` values.*x / 255"),
    (tiny_images((8, 8, 1)), tiny_images((8, 8, 1), n=3), ValueError, r"same shape, got \(4, 8, 8, 1\) and \(3, 8, 8, 1\)"),
    (tiny_images((8, 8, 1)), np.full((4, 8, 8, 1), np.nan, "float32"), ValueError, "`reconstruction` contains NaN"),
    (np.zeros((0, 8, 8, 1)), np.zeros((0, 8, 8, 1)), ValueError, "non-empty"),
    ("images.npy", tiny_images((8, 8, 1)), TypeError, "`x` must be a numeric array"),
])
def test_reconstruction_metrics_checks_both_arguments(x, reconstruction, error, match):
    with pytest.raises(error, match=match):
        evaluate.reconstruction_metrics(x, reconstruction)


def test_reconstruction_metrics_takes_backend_tensors_and_integer_binary_images():
    x = (tiny_images((8, 8, 1)) > 0.5).astype("uint8")
    r = keras.ops.convert_to_tensor(np.full((4, 8, 8, 1), 0.5, "float32"))
    assert evaluate.reconstruction_metrics(x, r)["bce_per_pixel"] == pytest.approx(np.log(2))


# --- ROC: scores and binary labels ------------------------------------------------------------

SCORES = np.linspace(0.0, 1.0, 20)


@pytest.mark.parametrize("function", [evaluate.roc_auc, evaluate.roc_curve,
                                      lambda s, y: evaluate.bootstrap_roc_auc(s, y, resamples=10)])
@pytest.mark.parametrize("labels, match", [
    (np.arange(20) % 10, r"must be binary.*10 distinct values: 0, 1, 2.*labels != normal_class"),
    (np.arange(20) % 3, r"must be binary.*3 distinct values: 0, 1, 2"),
    (np.where(np.arange(20) < 10, -1, 1), "must be binary"),
    (np.r_[np.zeros(19), np.nan], "contains NaN"),
    (np.arange(20) < 10, None),
])
def test_roc_functions_refuse_labels_that_are_not_anomaly_flags(function, labels, match):
    if match is None:
        function(SCORES, labels)  # booleans are what it takes
        return
    with pytest.raises(ValueError, match=match):
        function(SCORES, labels)


def test_digit_labels_no_longer_give_a_wrong_auc_but_flags_from_them_do_the_right_one():
    digits = np.arange(20) % 10
    with pytest.raises(ValueError, match="is_anomaly"):
        evaluate.roc_auc(SCORES, digits)
    assert evaluate.roc_auc(SCORES, digits != 0) == pytest.approx(
        np.mean([(SCORES[digits != 0][:, None] > SCORES[digits == 0][None, :])]))


@pytest.mark.parametrize("scores, error, match", [
    (np.ones((20, 2)), ValueError, r"`scores` must have shape \(n,\) or \(n, 1\).*mean\(axis"),
    (np.r_[SCORES[:19], np.inf], ValueError, r"`scores` contains NaN or infinite values \(1 of 20\)"),
    (np.arange(20) < 5, TypeError, "`scores` must hold real numbers"),
    (np.array(["0.1"] * 20), TypeError, "`scores` must hold real numbers"),
    (None, TypeError, "`scores` must be a 1-D array"),
])
def test_roc_functions_refuse_bad_scores_by_name(scores, error, match):
    with pytest.raises(error, match=match):
        evaluate.roc_auc(scores, np.arange(20) < 10)


def test_roc_accepts_float_zero_one_labels_and_column_vectors():
    labels = (np.arange(20) >= 10).astype("float32")[:, None]
    assert evaluate.roc_auc(SCORES[:, None], labels) == pytest.approx(1.0)


# --- The autoencoder builders' models ---------------------------------------------------------

@pytest.mark.parametrize("name", AUTOENCODERS)
def test_autoencoders_refuse_0_to_255_images_in_fit_with_the_fix(name):
    model = tiny_model(name)
    model.compile(optimizer="adam", loss="mse")
    x = (tiny_images(TINY_BUILDERS[name]["input_shape"]) * 255).round().astype("float32")
    fix = r"x / 127\.5 - 1" if name in TANH else "x / 255"
    with pytest.raises(ValueError, match=rf"`x` values must lie in .*{fix}"):
        model.fit(x, x, epochs=1, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(TypeError, match="dtype uint8"):
        model.fit(x.astype("uint8"), x.astype("uint8"), epochs=1, verbose=0)
    for before, after in zip(weights, model.get_weights()):  # refused before a single step
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_autoencoders_check_targets_validation_data_evaluate_and_predict(name):
    model = tiny_model(name)
    model.compile(optimizer="adam", loss="mse")
    x = images_for(name)
    shape = TINY_BUILDERS[name]["input_shape"]
    wrong = tiny_images((shape[0] * 2, shape[1] * 2, shape[2]))
    with pytest.raises(ValueError, match=rf"`y` must hold images of shape {tuple(shape)}".replace("(", r"\(").replace(")", r"\)")):
        model.fit(x, wrong, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data\[0\]` contains NaN"):
        model.fit(x, x, epochs=1, verbose=0, validation_data=(np.full_like(x, np.nan), x))
    with pytest.raises(ValueError, match="`x` must hold images of shape"):
        model.evaluate(wrong, wrong, verbose=0)
    with pytest.raises(ValueError, match="`x` must hold images of shape"):
        model.predict(wrong, verbose=0)
    history = model.fit(x, x, epochs=1, verbose=0, validation_data=(x, x))  # good data trains as before
    assert np.isfinite(history.history["val_loss"][0])
    assert model.predict(x, verbose=0).shape == x.shape


def test_the_reported_case_a_conv_autoencoder_on_uint8_mnist_is_refused_before_training():
    model = vaekit.conv_autoencoder()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = (np.random.default_rng(0).random((8, 28, 28, 1)) * 255).astype("uint8")
    with pytest.raises(TypeError, match=r"has dtype uint8; the model trains on floats in \[0, 1\]: use `x.astype\(\"float32\"\) / 255`"):
        model.fit(x, x, epochs=1, verbose=0)


def test_autoencoders_check_the_first_batch_of_a_dataset():
    import tensorflow as tf

    model = tiny_model("conv_autoencoder")
    model.compile(optimizer="adam", loss="mse")
    x = tiny_images((8, 8, 1), n=8) * 255
    with pytest.raises(ValueError, match="In the first batch: `x` values must lie in"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, x)).batch(4), epochs=1, verbose=0)


@pytest.mark.parametrize("name", AUTOENCODERS + ["deterministic_autoencoder"])
def test_checked_autoencoders_save_and_load_without_custom_objects_and_keep_checking(name, tmp_path):
    if name == "deterministic_autoencoder":
        model = vaekit.deterministic_autoencoder(tiny_model("conv_vae"))
        x = tiny_images((8, 8, 1))
    else:
        model, x = tiny_model(name), images_for(name)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded) is type(model) and loaded.value_range == model.value_range
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="`x` values must lie in"):
        loaded.predict(x * 300, verbose=0)
    assert loaded.get_layer("encoder") is not None and loaded.count_params() == model.count_params()


def test_autoencoder_builders_return_the_one_autoencoder_class_from_any_path():
    for name in AUTOENCODERS:
        assert type(getattr(vaekit.models, name)(**TINY_BUILDERS[name])) is vaekit.vae.Autoencoder, name


# --- VAE evaluation: the model's own image shape -------------------------------------------------

@pytest.mark.parametrize("measure", [
    lambda vae, x: evaluate.elbo(vae, x), lambda vae, x: evaluate.elbo_terms(vae, x),
    lambda vae, x: evaluate.iwae_nll(vae, x, k=2), lambda vae, x: evaluate.active_units(vae, x),
])
def test_vae_measures_refuse_images_of_another_shape_naming_the_models(measure):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8)  # 28x28x1
    colour = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    with pytest.raises(ValueError, match=r"`x` must hold images of shape \(28, 28, 1\), got batch shape \(4, 32, 32, 3\)"):
        measure(vae, colour)
    with pytest.raises(ValueError, match=r"Add the channel axis with `x\[\.\.\., None\]`"):
        measure(vae, colour[..., :28, :28, 0])
    with pytest.raises(ValueError, match="Divide 0-255"):
        measure(vae, colour[:, :28, :28, :1] * 255)


def test_vae_measures_refuse_a_model_that_is_not_a_vae():
    with pytest.raises(TypeError, match="`vae` must be a vaekit.VAE.*Autoencoder"):
        evaluate.elbo(tiny_model("conv_autoencoder"), tiny_images((8, 8, 1)))


# --- active_units' default threshold ------------------------------------------------------------

def test_active_units_default_threshold_is_0_01_on_the_variance_of_the_posterior_mean():
    """Six latent means whose variances over the images straddle 0.01 (from 0.004 to 0.2): the
    default counts the four above it. A threshold of 0.1 would count 1, one of 0.001 all 6."""
    targets = np.array([0.004, 0.007, 0.014, 0.03, 0.06, 0.2])
    vae = vaekit.fc_vae(latent_dim=6, hidden_units=16, seed=0)
    x = (np.random.default_rng(1).random((200, 28, 28, 1)) > 0.5).astype("float32")
    layer = vae.encoder.get_layer("z_mean")
    kernel, bias = layer.get_weights()
    direction = np.random.default_rng(2).normal(size=kernel.shape[0]).astype("float32")
    layer.set_weights([np.tile(direction[:, None], (1, 6)), bias])
    base = float(np.var(vae.encoder.predict(x, verbose=0)[0][:, 0]))
    layer.set_weights([direction[:, None] * np.sqrt(targets / base)[None, :].astype("float32"), bias])
    variances = np.var(vae.encoder.predict(x, verbose=0)[0], axis=0)
    np.testing.assert_allclose(variances, targets, rtol=1e-3)  # the set-up does what it says
    assert evaluate.active_units(vae, x) == 4
    assert evaluate.active_units(vae, x, threshold=0.1) == 1
    assert evaluate.active_units(vae, x, threshold=0.001) == 6


# --- Errors name the user's paths ------------------------------------------------------------------

def test_write_prediction_csv_into_a_missing_folder_names_that_folder_and_path(tmp_path):
    target = tmp_path / "no_such_folder" / "prediction.csv"
    with pytest.raises(FileNotFoundError) as error:
        export.write_prediction_csv(target, tiny_images((4, 4, 1)), tiny_images((4, 4, 1)))
    message = str(error.value)
    assert str(target) in message and f"the folder {target.parent} does not exist" in message
    assert ".tmp-" not in message and error.value.filename == str(target)


def test_a_full_disk_while_writing_names_the_file_and_folder_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "prediction.csv"
    export.write_prediction_csv(target, tiny_images((4, 4, 1)), tiny_images((4, 4, 1)))
    before = target.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "_format_rows", disk_full)
    with pytest.raises(OSError) as error:
        export.write_prediction_csv(target, tiny_images((4, 4, 1), seed=1), tiny_images((4, 4, 1)))
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC and str(target) in message and f"disk holding {tmp_path}" in message
    assert ".tmp-" not in message
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["prediction.csv"]


def test_a_real_write_limit_reached_mid_file_names_the_file(tmp_path, run_on_backend):
    """A real OS error, not a simulated one: the file-size limit (RLIMIT_FSIZE) stops the write part-way."""
    script = textwrap.dedent("""
        import resource, signal, sys
        import numpy as np
        from vaekit import export
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        x = np.random.default_rng(0).random((100, 28, 28, 1)).astype("float32")
        try:
            export.write_prediction_csv(sys.argv[1], x, x)
        except OSError as error:
            print(type(error).__name__, error.errno, error)
    """)
    target = tmp_path / "prediction.csv"
    run = run_on_backend("jax", script, target, timeout=300)
    assert f"OSError {errno.EFBIG} [Errno {errno.EFBIG}] cannot write {target}" in run.stdout
    assert ".tmp-" not in run.stdout and list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_cannot_be_written_names_it_and_keeps_the_last_one(tmp_path, monkeypatch):
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8)
    vae.compile(optimizer="adam")
    x = tiny_images((4, 4, 1), n=8)
    training.fit_resumable(vae, x, run_dir=tmp_path / "run", epochs=2, verbose=0, callbacks=[tiny.StopAfter(1)])
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match=rf"cannot write {tmp_path / 'run' / 'checkpoint.npz'}: No space left"):
        training.fit_resumable(vae, x, run_dir=tmp_path / "run", epochs=2, verbose=0)
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before
    assert not (tmp_path / "run" / "run.lock").exists()  # released on the way out


# --- Plots take the same checks ----------------------------------------------------------------------

def test_latent_scatter_refuses_labels_that_do_not_match_the_codes():
    from vaekit import plots

    z = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="`labels` has 9 labels but there are 10 images"):
        plots.plot_latent_scatter(z, np.arange(9) % 10)
    with pytest.raises(TypeError, match="`labels` must hold integer class labels"):
        plots.plot_latent_scatter(z, np.linspace(0, 1, 10))


@pytest.mark.parametrize("draw", ["grid", "reconstructions"])
def test_image_plots_refuse_nan_images_instead_of_drawing_blanks(draw):
    from vaekit import plots

    images = tiny_images((8, 8, 1))
    images[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"`images` contains NaN or infinite values \(1 of 256\)"):
        if draw == "grid":
            plots.plot_image_grid(images)
        else:
            plots.plot_reconstructions(tiny_images((8, 8, 1)), images)


def test_fit_resumable_refuses_an_autoencoders_bad_data_before_writing_anything(tmp_path):
    model = tiny_model("conv_autoencoder")
    model.compile(optimizer="adam", loss="mse")
    x = tiny_images((8, 8, 1)) * 255
    with pytest.raises(ValueError, match="`x` values must lie in"):
        training.fit_resumable(model, x, x, run_dir=tmp_path / "run", epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`y` must hold images of shape \(8, 8, 1\)"):
        training.fit_resumable(model, x / 255, x[:, :4] / 255, run_dir=tmp_path / "run", epochs=1, verbose=0)
    assert not (tmp_path / "run").exists() or list((tmp_path / "run").iterdir()) == []


@pytest.mark.parametrize("run_in_folder", [False, True])
def test_fit_resumable_checks_the_data_once_and_fit_alone_still_checks(tmp_path, monkeypatch, run_in_folder):
    from vaekit import guards

    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8)
    vae.compile(optimizer="adam")
    x, x_val = tiny_images((4, 4, 1), n=8), tiny_images((4, 4, 1), n=4, seed=1)
    checked = []
    real_batches = guards.check_batches
    monkeypatch.setattr(guards, "check_batches", lambda name, *args: checked.append(name) or real_batches(name, *args))
    training.fit_resumable(vae, x, run_dir=tmp_path / "run" if run_in_folder else None, epochs=1,
                           validation_data=(x_val,), verbose=0)
    assert checked == ["x", "validation_data[0]"]  # not again by fit, nor by the validation's evaluate
    checked.clear()
    vae.fit(x, epochs=1, validation_data=(x_val,), verbose=0)
    assert checked == ["x", "validation_data[0]"]
    with pytest.raises(ValueError, match="`x` values must lie in"):
        vae.fit(x * 255, epochs=1, verbose=0)


def test_vae_predict_checks_its_images_as_fit_does():
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8)
    with pytest.raises(ValueError, match=r"`x` values must lie in \[0.0, 1.0\].*Divide 0-255"):
        vae.predict(tiny_images((4, 4, 1)) * 255, verbose=0)
    with pytest.raises(ValueError, match=r"`x` must hold images of shape \(4, 4, 1\)"):
        vae.predict(tiny_images((8, 8, 1)), verbose=0)
    assert vae.predict(tiny_images((4, 4, 1)), verbose=0)["reconstruction"].shape == (4, 4, 4, 1)


def test_interpolate_refuses_two_images_of_different_shapes_or_with_nan():
    from vaekit import plots

    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8)
    encode = lambda x: vae.encoder.predict(x, verbose=0)[0]  # noqa: E731
    a = tiny_images((4, 4, 1), n=1)[0]
    with pytest.raises(ValueError, match=r"`x_start` and `x_end` must be two images of one shape"):
        plots.interpolate(encode, vae.decoder, a, a[:2])
    with pytest.raises(ValueError, match="contains NaN"):
        plots.interpolate(encode, vae.decoder, a, np.full_like(a, np.nan))


@pytest.mark.parametrize("damage", ["emptied", "cut mid-header", "binary"])
def test_a_damaged_prediction_csv_is_named_when_read(tmp_path, damage):
    path = tmp_path / "prediction.csv"
    export.write_prediction_csv(path, tiny_images((4, 4, 1)), tiny_images((4, 4, 1)))
    text = path.read_bytes()
    path.write_bytes({"emptied": b"", "cut mid-header": text[:30], "binary": bytes(range(256)) * 4}[damage])
    with pytest.raises(ValueError, match=str(path)):
        export.read_prediction_csv(path)


BACKEND_SCRIPT = textwrap.dedent("""
    import sys
    import keras, numpy as np
    import vaekit
    from vaekit import training

    folder = sys.argv[1]
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    model = vaekit.conv_autoencoder(input_shape=(8, 8, 1), filters=4)
    model.compile(optimizer="adam", loss="mse")
    history = training.fit_resumable(model, x, x, run_dir=folder + "/run", epochs=2, batch_size=8, verbose=0)
    try:
        model.fit(x * 255, x * 255, epochs=1, verbose=0)
    except ValueError as error:
        print("REFUSED", str(error).split(".")[0])
    model.save(folder + "/model.keras")
    loaded = keras.saving.load_model(folder + "/model.keras")
    print("LOADED", type(loaded).__name__, loaded.value_range,
          float(np.abs(loaded.predict(x, verbose=0) - model.predict(x, verbose=0)).max()))
    wider = vaekit.conv_autoencoder(input_shape=(8, 8, 1), filters=6)
    wider.compile(optimizer="adam", loss="mse")
    import os
    before = open(folder + "/run/checkpoint.npz", "rb").read()
    training.fit_resumable(wider, x, x, run_dir=folder + "/run", epochs=2, batch_size=8, verbose=0)
    print("OTHER MODEL", sorted(name for name in os.listdir(folder) if name.startswith("run"))[1].startswith("run-"),
          open(folder + "/run/checkpoint.npz", "rb").read() == before)
    print("EPOCHS", len(history["loss"]))
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_checked_autoencoders_and_run_folders_work_on_other_backends(backend, tmp_path, run_on_backend):
    run = run_on_backend(backend, BACKEND_SCRIPT, tmp_path)
    lines = run.stdout
    assert "REFUSED `x` values must lie in [0" in lines and "EPOCHS 2" in lines and "OTHER MODEL True True" in lines
    loaded = next(line for line in lines.splitlines() if line.startswith("LOADED")).split()
    assert loaded[1:4] == ["Autoencoder", "(0.0,", "1.0)"] and float(loaded[4]) < 1e-5
