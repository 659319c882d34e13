"""KL schedules: a linear KL warm-up over the first training steps, and free bits per latent dimension."""

import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import vaekit
from vaekit.vae import kl_divergence


def tiny_vae(**options):
    keras.utils.set_random_seed(0)
    base = vaekit.fc_vae(latent_dim=3, hidden_units=8, input_shape=(4, 4, 1), seed=0)
    return vaekit.VAE(base.encoder, base.decoder, **options)


X = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")


def terms(vae, outputs):
    reconstruction = float(ops.mean(vae.reconstruction_term(X, outputs["reconstruction"])))
    per_dimension = ops.convert_to_numpy(kl_divergence(outputs["z_mean"][..., None], outputs["z_log_var"][..., None]))
    return reconstruction, per_dimension.mean(axis=0)


def test_warmup_weighs_the_kl_by_the_share_of_warmup_steps_done_then_by_beta():
    vae = tiny_vae(beta=2.0, kl_warmup_steps=4)
    outputs = vae(X, training=True)
    reconstruction, kl_per_dimension = terms(vae, outputs)
    kl = kl_per_dimension.sum()
    for step in range(1, 7):  # each training call counts one step first
        loss = float(vae.compute_loss(X, None, outputs, training=True))
        assert loss == pytest.approx(reconstruction + 2.0 * min(1.0, step / 4) * kl, rel=1e-5), step
    # An evaluation neither counts a step nor changes the weight: beta itself, now that warm-up is over.
    assert float(vae.compute_loss(X, None, outputs, training=False)) == pytest.approx(reconstruction + 2.0 * kl, rel=1e-5)
    assert float(ops.convert_to_numpy(vae.training_steps)) == 6


def test_without_a_schedule_the_loss_is_reconstruction_plus_beta_times_kl_and_no_weight_is_added():
    vae = tiny_vae(beta=0.5)
    outputs = vae(X, training=True)
    reconstruction, kl_per_dimension = terms(vae, outputs)
    assert float(vae.compute_loss(X, None, outputs)) == pytest.approx(reconstruction + 0.5 * kl_per_dimension.sum(), rel=1e-5)
    assert vae.training_steps is None and len(vae.weights) == len(vae.encoder.weights) + len(vae.decoder.weights)


def test_free_bits_floor_each_dimensions_batch_mean_kl_and_the_logged_kl_stays_plain():
    vae = tiny_vae(free_bits=0.3)
    outputs = vae(X, training=True)
    reconstruction, kl_per_dimension = terms(vae, outputs)
    assert kl_per_dimension.min() < 0.3 < kl_per_dimension.max()  # the floor lifts one dimension, not the others
    expected = reconstruction + np.maximum(kl_per_dimension, 0.3).sum()
    assert float(vae.compute_loss(X, None, outputs)) == pytest.approx(expected, rel=1e-5)
    assert float(vae.compute_loss(X, None, outputs)) > reconstruction + kl_per_dimension.sum()
    assert float(vae.kl_loss_tracker.result()) == pytest.approx(kl_per_dimension.sum(), rel=1e-5)


def test_free_bits_above_every_dimensions_kl_make_the_kl_a_constant():
    vae = tiny_vae(free_bits=100.0)  # every dimension below the floor: the KL adds a constant, so no gradient
    outputs = {"reconstruction": np.full((4, 4, 4, 1), 0.5, "float32"),
               "z_mean": np.full((4, 3), 0.3, "float32"), "z_log_var": np.full((4, 3), -0.2, "float32")}
    loss = float(vae.compute_loss(X[:4], None, outputs))
    assert loss == pytest.approx(float(ops.mean(vae.reconstruction_term(X[:4], outputs["reconstruction"]))) + 300.0,
                                 rel=1e-6)


def test_fit_counts_every_step_and_the_schedule_saves_and_resumes_with_the_model(tmp_path):
    vae = tiny_vae(kl_warmup_steps=100, free_bits=0.25)
    vae.compile(optimizer="adam")
    vae.fit(X, epochs=3, batch_size=4, verbose=0)  # 4 steps an epoch
    assert float(ops.convert_to_numpy(vae.training_steps)) == 12
    vae.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    assert (loaded.kl_warmup_steps, loaded.free_bits) == (100, 0.25)
    assert float(ops.convert_to_numpy(loaded.training_steps)) == 12
    loaded.fit(X, epochs=1, batch_size=4, verbose=0)
    assert float(ops.convert_to_numpy(loaded.training_steps)) == 16


@pytest.mark.parametrize("options, match", [
    (dict(kl_warmup_steps=-1), "`kl_warmup_steps` must be an integer >= 0"),
    (dict(kl_warmup_steps=2.5), "`kl_warmup_steps` must be an integer >= 0"),
    (dict(free_bits=-0.1), "`free_bits` a number >= 0"),
    (dict(free_bits=float("nan")), "`free_bits` a number >= 0"),
    (dict(free_bits=True), "`free_bits` a number >= 0"),
])
def test_bad_schedule_arguments_are_refused_naming_them(options, match):
    with pytest.raises(ValueError, match=match):
        tiny_vae(**options)


def test_fc_vae_passes_the_schedules_to_its_vae_and_refuses_bad_ones_by_name():
    vae = vaekit.fc_vae(latent_dim=3, hidden_units=8, input_shape=(4, 4, 1), seed=0, kl_warmup_steps=7,
                        free_bits=0.2)
    assert (vae.kl_warmup_steps, vae.free_bits) == (7, 0.2) and vae.training_steps is not None
    plain = vaekit.fc_vae(latent_dim=3, hidden_units=8, input_shape=(4, 4, 1), seed=0)
    assert (plain.kl_warmup_steps, plain.free_bits, plain.training_steps) == (0, 0.0, None)
    with pytest.raises(ValueError, match="`free_bits` a number >= 0"):
        vaekit.fc_vae(latent_dim=3, hidden_units=8, input_shape=(4, 4, 1), free_bits=-1.0)


BACKEND_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import vaekit

    keras.utils.set_random_seed(0)
    base = vaekit.fc_vae(latent_dim=3, hidden_units=8, input_shape=(4, 4, 1), seed=0)
    vae = vaekit.VAE(base.encoder, base.decoder, kl_warmup_steps=6, free_bits=0.1)
    vae.compile(optimizer="adam")
    x = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")
    history = vae.fit(x, epochs=2, batch_size=4, verbose=0).history
    vae.save(sys.argv[1])
    loaded = keras.saving.load_model(sys.argv[1])
    print("RESULT" + json.dumps({"steps": float(keras.ops.convert_to_numpy(vae.training_steps)),
                                 "loaded_steps": float(keras.ops.convert_to_numpy(loaded.training_steps)),
                                 "loss": history["loss"], "kl": history["kl_loss"]}))
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_schedules_count_steps_on_other_backends(backend, tmp_path, run_on_backend):
    pytest.importorskip(backend)
    result = run_on_backend.results(backend, BACKEND_SCRIPT, tmp_path / "vae.keras", marker="RESULT")
    assert result["steps"] == result["loaded_steps"] == 8
    assert all(np.isfinite(result["loss"])) and all(np.isfinite(result["kl"]))
