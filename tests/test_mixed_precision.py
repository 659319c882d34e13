"""vaekit under Keras' mixed-precision policies, on TensorFlow, JAX and PyTorch.

`keras.mixed_precision.set_global_policy("mixed_bfloat16")` (or "mixed_float16") makes the
layers compute in 16 bits while the weights stay float32. Every model, likelihood, evaluation,
plot and save/reload must work under both, with the losses and what users read in float32.
Keras picks its backend once per process, and the policy is global, so each backend and
policy runs in a subprocess (see tests/test_backends.py).
"""

import textwrap

import numpy as np
import pytest
from test_backends import BACKEND_MODULES

POLICIES = ("mixed_bfloat16", "mixed_float16")

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import keras, numpy as np
    from keras import ops
    import matplotlib
    matplotlib.use("Agg")
    import vaekit
    from vaekit import evaluate, on_device, plots, training

    warnings.simplefilter("ignore", UserWarning)  # "not a likelihood" notes on grey-level test images
    policy, folder = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1)).astype("float32")
    results = {"backend": keras.backend.backend(), "vae": {}, "autoencoders": {}}
    dtype = lambda value: keras.backend.standardize_dtype(value.dtype) if hasattr(value, "dtype") else type(value).__name__

    def build(builder, kind, seed=1):
        if builder == "conv_vae":
            return vaekit.conv_vae(input_shape=(8, 8, 1), latent_dim=2, hidden_units=4, filters=(4, 4), seed=seed,
                                   reconstruction=kind)
        vae = vaekit.fc_vae(input_shape=(8, 8, 1), latent_dim=2, hidden_units=8, seed=seed, reconstruction=kind)
        if kind == "gaussian":  # and a learned variance per pixel, a weight of the shape of an image
            vae = vaekit.VAE(vae.encoder, vae.decoder, reconstruction=kind, per_pixel_variance=True)
        return vae

    # Every likelihood on the conv VAE; the FC VAE with the learned per-pixel variance (a weight of its own).
    for builder, kind in [("conv_vae", kind) for kind in ("bce", "mse", "continuous_bernoulli", "gaussian")] + [
            ("fc_vae", "gaussian")]:
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)
        vae = build(builder, kind)
        vae.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = vae.fit(x, epochs=3, batch_size=16, verbose=0).history
        outputs = vae.predict(x[:8], verbose=0)
        z = np.zeros((3, 2), "float32")
        raw = vae.decoder(ops.convert_to_tensor(z))
        loss = vae.compute_loss(x=ops.convert_to_tensor(x[:8]), y_pred=vae(x[:8]))
        test = evaluate.elbo(vae, x, seed=0)
        iwae = evaluate.iwae_nll_terms(vae, x[:8], k=20, batch_size=4, seed=0)
        row = {
            "optimizer": type(vae.optimizer).__name__,
            "decoder_output": dtype(raw), "decoder_log_var": None if vae.decoder_log_var is None
                                                               else dtype(vae.decoder_log_var),
            "predict": {name: str(value.dtype) for name, value in outputs.items()},
            "decode": dtype(vae.decode(z)), "compute_loss": dtype(loss),
            "loss": history["loss"], "kl_loss": history["kl_loss"],
            "elbo": test, "iwae": iwae.tolist(), "iwae_dtype": str(iwae.dtype),
            "active_units": evaluate.active_units(vae, x),
        }
        # The same weights in a float32 model: how far 16-bit arithmetic moves the loss.
        keras.mixed_precision.set_global_policy("float32")
        reference = build(builder, kind)
        reference.set_weights(vae.get_weights())
        row["float32_elbo"] = evaluate.elbo(reference, x, seed=0)
        # Saved under the policy, loaded under float32: the same layers, the same outputs.
        path = f"{folder}/{builder}_{kind}.keras"
        vae.save(path)
        loaded = keras.saving.load_model(path)
        row["reload_max_difference"] = float(np.abs(ops.convert_to_numpy(loaded.decode(z))
                                                    - ops.convert_to_numpy(vae.decode(z))).max())
        row["reload_decoder_output"] = dtype(loaded.decoder(ops.convert_to_tensor(z)))
        row["reload_loss"] = loaded.fit(x, epochs=1, batch_size=16, verbose=0).history["loss"]
        results["vae"][f"{builder}/{kind}"] = row

    # A float32 model saved and loaded under the policy stays float32.
    keras.mixed_precision.set_global_policy("float32")
    plain = build("conv_vae", "bce")
    plain.save(f"{folder}/float32.keras")
    keras.mixed_precision.set_global_policy(policy)
    loaded = keras.saving.load_model(f"{folder}/float32.keras")
    z = np.zeros((3, 2), "float32")
    results["float32_reloaded"] = {
        "decoder_output": dtype(loaded.decoder(ops.convert_to_tensor(z))),
        "max_difference": float(np.abs(ops.convert_to_numpy(loaded.decode(z))
                                       - ops.convert_to_numpy(plain.decode(z))).max())}

    # The plots, fed what the models give under the policy (decoders and encoders called directly).
    keras.utils.set_random_seed(0)
    vae = build("conv_vae", "continuous_bernoulli")
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = on_device.fit_on_device(vae, x, epochs=2, batch_size=16, verbose=0, seed=0).history
    codes = vae.encoder.predict(x, verbose=0)[0]
    reconstruction = vae.decoder.predict(codes, verbose=0)
    encode = lambda images: vae.encoder(images)[0]
    figures = [
        plots.plot_reconstructions(x, reconstruction, n=4),
        plots.plot_latent_scatter(codes, labels=np.arange(64) % 3),
        plots.plot_latent_grid(vae.decoder, n=4, codes=codes),
        plots.plot_prior_samples(vae.decoder, n=4, seed=0),
        plots.show_images([plots.interpolate(encode, vae, x[0], x[1], steps=4)]),
        plots.show_images(list(plots.latent_traversal(vae, codes[0], dims=[0, 1], values=(-1.0, 0.0, 1.0)))),
        plots.plot_prior_samples(vae, n=4, seed=0),  # a VAE: its distribution means
        plots.plot_history(history),
    ]
    results["plots"] = {
        "figures": sum(figure is not None for figure in figures),
        "encoder_output": str(codes.dtype), "decoder_output": str(reconstruction.dtype),
        "sample_prior": str(plots.sample_prior(vae.decoder, 4, seed=0).dtype),
        "fit_on_device_loss": history["loss"],
    }
    plots.save_figure(figures[2], f"{folder}/grid.png")

    # The autoencoders, with vaekit's loss and with Keras' own.
    for name, loss in (("conv_autoencoder", vaekit.reconstruction_loss), ("fc_autoencoder", "mse"),
                       ("strided_conv_autoencoder", "mse"), ("fcn_autoencoder", "mse"), ("deterministic", "bce")):
        keras.utils.set_random_seed(0)
        if name == "deterministic":
            model = vaekit.deterministic_autoencoder(build("conv_vae", "bce"))
            loss, data = vaekit.reconstruction_loss, x
        elif name in ("strided_conv_autoencoder", "fcn_autoencoder"):
            model = getattr(vaekit, name)(input_shape=(8, 8, 3), **({"filters": (4, 4)} if name.startswith("strided")
                                                                   else {"hidden_units": (8,), "latent_dim": 2}))
            data = np.concatenate([x, x, x], axis=-1) * 2 - 1  # these two take images in [-1, 1]
        else:
            model = getattr(vaekit, name)(input_shape=(8, 8, 1), **({"filters": 4} if name.startswith("conv")
                                                                   else {"hidden_units": (8,), "latent_dim": 2}))
            data = x
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
        try:
            history = model.fit(data, data, epochs=3, batch_size=16, verbose=0).history
        except RuntimeError as error:  # PyTorch's CPU float16 kernels: some CPUs lack a convolution backward pass
            if "slow_conv2d" not in str(error):
                raise
            results["autoencoders"][name] = {"unsupported": str(error).splitlines()[0]}
            continue
        output = model.predict(data[:4], verbose=0)
        results["autoencoders"][name] = {"loss": history["loss"], "output": str(output.dtype),
                                         "optimizer": type(model.optimizer).__name__,
                                         "metrics": evaluate.reconstruction_metrics(x[:4], output[..., :1] * 0.5 + 0.5
                                                                                   if data.shape[-1] == 3 else output)}
        path = f"{folder}/{name}.keras"
        model.save(path)
        keras.mixed_precision.set_global_policy("float32")
        reloaded = keras.saving.load_model(path, compile=False)  # Keras cannot find a plain function loss by name
        results["autoencoders"][name]["reload_max_difference"] = float(np.abs(
            np.asarray(reloaded.predict(data[:4], verbose=0), "float32") - np.asarray(output, "float32")).max())
        keras.mixed_precision.set_global_policy(policy)
    print("RESULTS" + json.dumps(results))
""")


# --- In this process: the pieces the fix touched, on the backend the suite runs on -----------------
# First in the file: these take a second and catch a 16-bit KL or loss at once; the subprocess tests
# below take minutes.

@pytest.fixture
def bfloat16_policy():
    """mixed_bfloat16 for the test, float32 again afterwards whatever happens."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_sampling_draws_its_noise_in_the_dtype_of_z(bfloat16_policy):
    import keras
    from keras import ops

    from vaekit.vae import Sampling

    z_mean = ops.cast(ops.zeros((4, 3)), "bfloat16")
    z = Sampling(seed=0)([z_mean, z_mean])  # float32 noise times a bfloat16 sigma fails on TensorFlow
    assert keras.backend.standardize_dtype(z.dtype) == "bfloat16"
    assert 0 < float(ops.convert_to_numpy(ops.std(ops.cast(z, "float32")))) < 2


@pytest.mark.parametrize("kind", ["bce", "mse", "continuous_bernoulli", "gaussian"])
def test_losses_of_16_bit_reconstructions_are_summed_in_float32(kind):
    import keras
    from keras import ops

    from vaekit.vae import reconstruction_loss

    rng = np.random.default_rng(0)
    x = rng.random((3, 28, 28, 1)).astype("float32")
    reconstruction = ops.cast(rng.uniform(0.05, 0.95, (3, 28, 28, 1)).astype("float32"), "bfloat16")
    log_var = ops.cast(ops.full((), -1.5), "bfloat16") if kind == "gaussian" else None
    loss = reconstruction_loss(x, reconstruction, kind, log_var)
    # The same bfloat16 values, upcast first: float32 arithmetic all the way gives the same sums.
    expected = reconstruction_loss(x, ops.cast(reconstruction, "float32"), kind,
                                   None if log_var is None else ops.cast(log_var, "float32"))
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(loss), ops.convert_to_numpy(expected), rtol=1e-6)


def test_kl_mean_image_and_importance_weights_of_16_bit_inputs_are_float32():
    import keras
    from keras import ops

    from vaekit.evaluate import log_importance_weights
    from vaekit.vae import distribution_mean, kl_divergence

    rng = np.random.default_rng(1)
    z_mean, z_log_var = (ops.cast(rng.normal(size=(5, 16)).astype("float32"), "bfloat16") for _ in range(2))
    kl = kl_divergence(z_mean, z_log_var)
    assert keras.backend.standardize_dtype(kl.dtype) == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(kl), ops.convert_to_numpy(
        kl_divergence(ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32"))), rtol=1e-6)
    mean = distribution_mean("continuous_bernoulli", ops.cast(ops.full((2, 4), 0.9), "bfloat16"))
    assert keras.backend.standardize_dtype(mean.dtype) == "float32"
    # lambda = 0.9 rounds to 0.8984375 in bfloat16; its mean in float32 (in bfloat16 it would be 0.668 or 0.672)
    lam = 0.8984375
    np.testing.assert_allclose(ops.convert_to_numpy(mean), lam / (2 * lam - 1) + 1 / (2 * np.arctanh(1 - 2 * lam)),
                               rtol=1e-5)
    z = ops.cast(rng.normal(size=(5, 3, 16)).astype("float32"), "bfloat16")
    log_weights = log_importance_weights(ops.full((5, 3), -100.0), z, z_mean, z_log_var)
    assert keras.backend.standardize_dtype(log_weights.dtype) == "float32"
    assert np.all(np.isfinite(ops.convert_to_numpy(log_weights)))


# --- In a fresh interpreter per backend and policy: training, evaluation, saving, plots ---------------

@pytest.fixture(scope="module")
def results(tmp_path_factory, real_data_dir, run_on_backend):
    """Each backend and policy's results, run once per (backend, policy) on first use."""
    cache = {}

    def get(backend, policy):
        if (backend, policy) not in cache:
            folder = tmp_path_factory.mktemp(f"{backend}-{policy}")
            cache[backend, policy] = run_on_backend.results(backend, SCRIPT, policy, folder,
                                                            env={"VAEKIT_DATA_DIR": real_data_dir})
        return cache[backend, policy]

    return get


CASES = [(backend, policy) for backend in sorted(BACKEND_MODULES) for policy in POLICIES]
# 16-bit arithmetic moves a loss summed over an 8 x 8 image by far less than this: bfloat16 keeps
# 8 bits, about 0.4 % of each value, and vaekit sums the per-pixel terms in float32.
SAME_WEIGHTS_TOLERANCE_NATS = 0.004 * 64


def compute_dtype(policy: str) -> str:
    return policy.split("_")[1]


@pytest.mark.parametrize("backend, policy", CASES)
def test_vae_trains_under_the_policy_and_reports_float32(results, backend, policy):
    for name, row in results(backend, policy)["vae"].items():
        where = f"{name} on {backend} under {policy}"
        assert row["decoder_output"] == compute_dtype(policy), where  # the policy is in force
        # Keras adds loss scaling under mixed_float16 (float16 gradients underflow without it), not under bfloat16.
        assert row["optimizer"] == ("LossScaleOptimizer" if policy == "mixed_float16" else "Adam"), where
        assert row["compute_loss"] == "float32" and row["decode"] == "float32", where
        assert set(row["predict"].values()) == {"float32"}, where
        if name.endswith("gaussian"):
            assert row["decoder_log_var"] == "float32", where
        losses = row["loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], f"{where}: {losses}"
        assert min(row["kl_loss"]) >= 0, where


@pytest.mark.parametrize("backend, policy", CASES)
def test_elbo_and_iwae_under_the_policy_match_float32_arithmetic(results, backend, policy):
    for name, row in results(backend, policy)["vae"].items():
        where = f"{name} on {backend} under {policy}"
        mixed, reference = row["elbo"], row["float32_elbo"]
        for term in ("negative_elbo", "reconstruction_loss", "kl_loss"):
            assert abs(mixed[term] - reference[term]) < SAME_WEIGHTS_TOLERANCE_NATS, f"{where}, {term}: {mixed} {reference}"
        assert mixed["negative_elbo"] == pytest.approx(mixed["reconstruction_loss"] + mixed["kl_loss"], abs=1e-4)
        assert row["iwae_dtype"] == "float32" and np.all(np.isfinite(row["iwae"])), where
        # k = 20 importance samples: within a few nats of the one-sample bound on these images
        assert abs(np.mean(row["iwae"]) - mixed["negative_elbo"]) < 2.0, where
        assert 0 <= row["active_units"] <= 2, where


@pytest.mark.parametrize("backend, policy", CASES)
def test_models_saved_under_one_policy_reload_under_another(results, backend, policy):
    result = results(backend, policy)
    for name, row in result["vae"].items():
        where = f"{name} on {backend}, saved under {policy}, loaded under float32"
        assert row["reload_max_difference"] == 0.0, where
        assert row["reload_decoder_output"] == compute_dtype(policy), where  # each layer keeps its saved policy
        assert np.all(np.isfinite(row["reload_loss"])), where
    assert result["float32_reloaded"] == {"decoder_output": "float32", "max_difference": 0.0}
    for name, row in result["autoencoders"].items():
        if "unsupported" not in row:  # not trained (see test_autoencoders_train_under_the_policy)
            assert row["reload_max_difference"] == 0.0, f"{name} on {backend} under {policy}"


@pytest.mark.parametrize("backend, policy", CASES)
def test_plots_and_fit_on_device_take_16_bit_outputs(results, backend, policy):
    plots = results(backend, policy)["plots"]
    assert plots["figures"] == 8
    # what the encoder and decoder give under the policy, drawn all the same; vaekit's own arrays are float32
    assert plots["encoder_output"] == plots["decoder_output"] == compute_dtype(policy)
    assert plots["sample_prior"] == "float32"
    assert np.all(np.isfinite(plots["fit_on_device_loss"]))


@pytest.mark.parametrize("backend, policy", CASES)
def test_autoencoders_train_under_the_policy(results, backend, policy):
    for name, row in results(backend, policy)["autoencoders"].items():
        where = f"{name} on {backend} under {policy}"
        if "unsupported" in row:  # only where PyTorch itself has no float16 kernel for it on this CPU
            assert (backend, policy) == ("torch", "mixed_float16") and "slow_conv2d" in row["unsupported"], where
            continue
        assert row["optimizer"] == ("LossScaleOptimizer" if policy == "mixed_float16" else "Adam"), where
        assert np.all(np.isfinite(row["loss"])) and row["loss"][-1] < row["loss"][0], f"{where}: {row['loss']}"
        assert row["output"] == compute_dtype(policy), where  # Keras' predict gives the last layer's dtype
        assert 0 < row["metrics"]["bce_per_pixel"] < 1.5 and 0 <= row["metrics"]["mse_per_pixel"] <= 1, where
