"""Likelihood evaluation: the IWAE estimator against answers known in closed form."""

import math
import warnings

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

import vaekit
from vaekit import evaluate

pytestmark = pytest.mark.oldest_versions  # .ci/run's stage on the oldest Keras and TensorFlow

LOG_2PI = math.log(2 * math.pi)


# --- A linear-Gaussian model: x = W z + b + noise, z ~ N(0, I) -----------------------------
# Its marginal p(x) = N(b, W W^T + s^2 I) and its posterior p(z|x) are Gaussian in closed
# form. W has orthogonal columns, so the posterior covariance is diagonal and a diagonal
# q(z|x), which is what a VAE's encoder outputs, can match it exactly.

def linear_gaussian_model(n_images=6, x_dim=5, noise=0.5, seed=0, scales=(1.5, 0.7), offset=None):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(x_dim, 2)))
    scales = np.asarray(scales)
    w, b = basis * scales, rng.normal(size=x_dim)
    if offset is not None:
        b = offset + 0.1 * b
    z = rng.normal(size=(n_images, 2))
    x = z @ w.T + b + noise * rng.normal(size=(n_images, x_dim))
    covariance = w @ w.T + noise**2 * np.eye(x_dim)
    residual = x - b
    log_px = -0.5 * (x_dim * LOG_2PI + np.linalg.slogdet(covariance)[1]
                     + np.einsum("ni,ij,nj->n", residual, np.linalg.inv(covariance), residual))
    posterior_var = 1.0 / (1.0 + scales**2 / noise**2)
    posterior_mean = posterior_var * (residual @ w) / noise**2
    return {"x": x, "w": w, "b": b, "noise": noise, "log_px": log_px,
            "posterior_mean": posterior_mean, "posterior_log_var": np.log(posterior_var) * np.ones_like(posterior_mean)}


def log_px_given_z(model, x, z):
    """log N(x; W z + b, s^2 I) for x of shape (n, x_dim) and z of shape (n, k, 2); returns (n, k)."""
    residual = x[:, None, :] - (z @ model["w"].T + model["b"])
    return -0.5 * (x.shape[1] * (LOG_2PI + 2 * math.log(model["noise"])) + np.sum(residual**2, axis=-1) / model["noise"]**2)


def iwae_estimates(model, q_mean, q_log_var, k, repeats=1, seed=0):
    """The estimator under test on k draws from the diagonal Gaussian q, `repeats` times.

    Returns (repeats, n). The repeats run as extra rows of one call, so averaging
    many of them stays cheap.
    """
    n = len(q_mean)
    tile = lambda a: np.tile(a, (repeats, 1))  # noqa: E731 - row r * n + i is repeat r of image i
    x, q_mean, q_log_var = tile(model["x"]), tile(q_mean), tile(q_log_var)
    z = q_mean[:, None, :] + np.exp(0.5 * q_log_var)[:, None, :] * np.random.default_rng(seed).normal(size=(len(x), k, 2))
    pieces = [np.asarray(a, dtype="float32") for a in (log_px_given_z(model, x, z), z, q_mean, q_log_var)]
    estimate = ops.convert_to_numpy(evaluate.log_mean_exp(evaluate.log_importance_weights(*pieces), axis=1)).astype("float64")
    return estimate.reshape(repeats, n)


def kl_between_diagonal_gaussians(mean_q, log_var_q, mean_p, log_var_p):
    return 0.5 * np.sum(log_var_p - log_var_q - 1
                        + (np.exp(log_var_q) + (mean_q - mean_p) ** 2) / np.exp(log_var_p), axis=-1)


def test_iwae_matches_closed_form_marginal_of_linear_gaussian_model():
    model = linear_gaussian_model()
    for k in (1, 7, 500):
        estimate = iwae_estimates(model, model["posterior_mean"], model["posterior_log_var"], k, seed=k)[0]
        # With q equal to the posterior every weight equals p(x): exact for any k.
        np.testing.assert_allclose(estimate, model["log_px"], atol=1e-3)


def test_iwae_with_mismatched_q_rises_from_the_elbo_towards_log_px():
    model = linear_gaussian_model()
    q_mean, q_log_var = model["posterior_mean"] + 0.3, model["posterior_log_var"] + 0.5
    # ELBO = log p(x) - KL(q || posterior), closed form for Gaussians.
    elbo = model["log_px"] - kl_between_diagonal_gaussians(q_mean, q_log_var, model["posterior_mean"], model["posterior_log_var"])
    mean_bound = {k: iwae_estimates(model, q_mean, q_log_var, k, repeats=repeats, seed=k).mean(axis=0)
                  for k, repeats in ((1, 20000), (10, 2000), (1000, 20))}
    np.testing.assert_allclose(mean_bound[1], elbo, atol=0.03)  # k = 1 is the ELBO
    assert np.all(mean_bound[10] > elbo + 0.05)
    assert np.all(mean_bound[1000] > mean_bound[10])
    # The ELBO is 0.73 nats short here; 1000 samples close all but sampling noise of it.
    assert np.all(np.abs(mean_bound[1000] - model["log_px"]) < 0.03)


def test_log_mean_exp_is_stable_far_from_zero():
    values = np.array([[-1000.0, -1000.0 + math.log(3.0)], [800.0, 800.0]], dtype="float32")
    result = ops.convert_to_numpy(evaluate.log_mean_exp(values, axis=1))
    np.testing.assert_allclose(result, [-1000.0 + math.log(2.0), 800.0], rtol=1e-6)


# --- The full VAE path -------------------------------------------------------------------

def binary_images(n=5, seed=0):
    return (np.random.default_rng(seed).random((n, 28, 28, 1)) < 0.3).astype("float32")


def vae_with_fixed_q_and_constant_decoder(z_mean=0.0, z_log_var=0.0, seed=0):
    """A tiny fc_vae whose q(z|x) = N(z_mean, exp(z_log_var)) and whose decoder ignores z."""
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8)
    for name, value in (("z_mean", z_mean), ("z_log_var", z_log_var)):
        layer = vae.encoder.get_layer(name)
        layer.set_weights([np.zeros_like(w) + (value if i else 0.0) for i, w in enumerate(layer.get_weights())])
    output_layer = vae.decoder.layers[-2]  # Dense(784, sigmoid) before the Reshape
    logits = np.random.default_rng(seed).normal(size=784).astype("float32")
    output_layer.set_weights([np.zeros_like(output_layer.get_weights()[0]), logits])
    return vae, 1.0 / (1.0 + np.exp(-logits.astype("float64")))


def bernoulli_nll(x, probabilities):
    x = x.reshape(len(x), -1)
    return -np.sum(x * np.log(probabilities) + (1 - x) * np.log1p(-probabilities), axis=1)


def test_decoder_that_ignores_z_gives_exactly_the_bernoulli_log_likelihood():
    vae, probabilities = vae_with_fixed_q_and_constant_decoder()
    x = binary_images(5)
    expected = bernoulli_nll(x, probabilities)
    # Batch and chunk sizes that divide neither n nor k exercise the ragged ends.
    for k, batch_size, chunk_size in ((1, 5, 100), (37, 2, 10), (6, 3, 1)):
        nll = evaluate.iwae_nll_terms(vae, x, k=k, batch_size=batch_size, chunk_size=chunk_size, seed=1)
        assert nll.shape == (5,)
        np.testing.assert_allclose(nll, expected, rtol=1e-5)


def test_iwae_nll_is_below_the_negative_elbo_and_above_the_true_nll():
    # q is off-centre and wide, so the negative ELBO overshoots -log p(x) by KL(q || p(z)),
    # about 0.97 nats, and the importance weights p(z) / q(z) stay bounded.
    vae, probabilities = vae_with_fixed_q_and_constant_decoder(z_mean=0.5, z_log_var=1.0)
    x = binary_images(6)
    true_nll = bernoulli_nll(x, probabilities).mean()
    negative_elbo = evaluate.elbo(vae, x)["negative_elbo"]
    iwae = evaluate.iwae_nll(vae, x, k=200, seed=0)
    kl = 2 * 0.5 * (0.5**2 + math.exp(1.0) - 1 - 1.0)
    assert negative_elbo == pytest.approx(true_nll + kl, rel=1e-6)
    assert iwae == pytest.approx(true_nll, abs=0.1)
    assert iwae < negative_elbo - 0.8


def test_iwae_nll_is_reproducible_with_a_seed():
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8, seed=0)
    x = binary_images(3)
    first = evaluate.iwae_nll_terms(vae, x, k=8, seed=3)
    np.testing.assert_array_equal(first, evaluate.iwae_nll_terms(vae, x, k=8, seed=3))


def test_elbo_is_reproducible_with_a_seed_and_draws_anew_without_one():
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8, seed=0)
    x = binary_images(4)
    first = evaluate.elbo_terms(vae, x, seed=3)
    np.testing.assert_allclose(first["kl_loss"], evaluate.elbo_terms(vae, x, batch_size=3, seed=3)["kl_loss"],
                               rtol=1e-5, atol=1e-6)  # a KL near 0 differs by float rounding between batch sizes
    np.testing.assert_array_equal(first["negative_elbo"], evaluate.elbo_terms(vae, x, seed=3)["negative_elbo"])
    assert not np.array_equal(first["reconstruction_loss"], evaluate.elbo_terms(vae, x, seed=4)["reconstruction_loss"])
    # Without a seed the VAE's own sampling layer draws, and its state moves on between calls.
    assert evaluate.elbo(vae, x)["reconstruction_loss"] != evaluate.elbo(vae, x)["reconstruction_loss"]
    assert evaluate.elbo(vae, x, seed=3) == {name: pytest.approx(float(values.mean()), rel=1e-6)
                                             for name, values in first.items()}


def test_negative_elbo_weights_the_kl_by_one_whatever_the_training_beta():
    # fit's "loss" is reconstruction + beta * KL; the evaluation key says what it is: the negative ELBO.
    x = binary_images(4)
    for beta in (0.0, 4.0):
        vae = vaekit.fc_vae(latent_dim=2, hidden_units=8, seed=0, beta=beta)
        terms = evaluate.elbo(vae, x, seed=1)
        assert terms["negative_elbo"] == pytest.approx(terms["reconstruction_loss"] + terms["kl_loss"], rel=1e-6)
        assert terms["kl_loss"] > 0.0
        assert set(terms) == {"reconstruction_loss", "kl_loss", "negative_elbo"}  # no "loss": that is fit's objective


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("0", TypeError)])
def test_elbo_rejects_a_bad_seed(value, error):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8)
    with pytest.raises(error, match="seed"):
        evaluate.elbo(vae, binary_images(2), seed=value)


def grey_images(n=5, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28, 1)).astype("float32")


@pytest.mark.parametrize("evaluate_images", [
    lambda vae, x: evaluate.elbo(vae, x), lambda vae, x: evaluate.elbo_terms(vae, x),
    lambda vae, x: evaluate.iwae_nll(vae, x, k=2), lambda vae, x: evaluate.iwae_nll_terms(vae, x, k=2),
], ids=["elbo", "elbo_terms", "iwae_nll", "iwae_nll_terms"])
def test_the_not_a_likelihood_warning_points_at_the_callers_line(evaluate_images):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8)
    with pytest.warns(UserWarning, match="not binary") as caught:
        evaluate_images(vae, grey_images(2))
    assert [record.filename for record in caught if "not binary" in str(record.message)] == [__file__]


@pytest.mark.parametrize("evaluation", ["elbo", "iwae_nll"])
def test_bce_evaluation_warns_once_on_grey_images_and_not_on_binary_ones(evaluation):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8)
    measure = (lambda x: evaluate.elbo(vae, x, batch_size=2)) if evaluation == "elbo" \
        else (lambda x: evaluate.iwae_nll(vae, x, k=2, batch_size=2))
    with pytest.warns(UserWarning, match="not binary") as caught:
        measure(grey_images(5))
    assert len([w for w in caught if "not binary" in str(w.message)]) == 1  # once, not once per batch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        measure(binary_images(5))


@pytest.mark.parametrize("evaluation", ["elbo", "iwae_nll"])
def test_mse_evaluation_warns_that_it_is_not_a_log_likelihood(evaluation):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8, reconstruction="mse")
    with pytest.warns(UserWarning, match="not a log-likelihood"):
        result = evaluate.elbo(vae, binary_images(2)) if evaluation == "elbo" else evaluate.iwae_nll(vae, binary_images(2), k=2)
    assert result is not None


@pytest.mark.parametrize("kind", ["continuous_bernoulli", "gaussian"])
def test_proper_densities_evaluate_on_grey_images_without_a_warning(kind):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8, reconstruction=kind, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(evaluate.elbo(vae, grey_images(3))["negative_elbo"])
        assert np.isfinite(evaluate.iwae_nll(vae, grey_images(3), k=4, seed=0))


# --- Every kind of decoder: a decoder that ignores z has a known likelihood -----------------

def log_norm_float64(lam):
    return np.where(lam == 0.5, np.log(2.0), np.log((np.log1p(-lam) - np.log(lam)) / (1 - 2 * lam)))


def exact_nll(kind, x, decoder_output, log_var=None):
    """-log p(x) in float64 when p(x|z) does not depend on z, for each density kind."""
    x, out = x.reshape(len(x), -1).astype(np.float64), decoder_output.reshape(1, -1)
    if kind == "gaussian":
        return -stats.norm.logpdf(x, loc=out, scale=np.exp(0.5 * log_var)).sum(axis=1)
    nll = bernoulli_nll(x, out[0])
    if kind == "continuous_bernoulli":
        nll = nll - log_norm_float64(out[0]).sum()
    return nll


@pytest.mark.parametrize("kind, images", [("bce", binary_images), ("continuous_bernoulli", grey_images),
                                          ("gaussian", grey_images)])
def test_iwae_and_elbo_of_every_density_kind_against_the_exact_likelihood(kind, images):
    # q(z|x) = N(0.5, e) for every x, and the decoder ignores z: p(x) = p(x|z) exactly, the
    # negative ELBO exceeds -log p(x) by KL(q || p(z)) exactly, and the IWAE estimate
    # approaches -log p(x) from above as k grows.
    vae, probabilities = vae_with_fixed_q_and_constant_decoder(z_mean=0.5, z_log_var=1.0)
    vae = vaekit.VAE(vae.encoder, vae.decoder, reconstruction=kind)
    if kind == "gaussian":
        vae.decoder_log_var.assign(-2.5)
    x = images(6)
    true_nll = exact_nll(kind, x, probabilities, -2.5)
    kl = 2 * 0.5 * (0.5**2 + math.exp(1.0) - 1 - 1.0)
    negative_elbo = evaluate.elbo_terms(vae, x)
    np.testing.assert_allclose(negative_elbo["reconstruction_loss"], true_nll, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(negative_elbo["negative_elbo"], true_nll + kl, rtol=1e-5, atol=1e-3)
    # k = 1 is the one-sample ELBO: the same in expectation. Its noise, log p(z) - log q(z),
    # has a standard deviation of about 3 nats here; 500 draws per image leave ~0.05 on the mean.
    k1 = evaluate.iwae_nll_terms(vae, np.repeat(x, 500, axis=0), k=1, batch_size=500, seed=0)
    assert k1.mean() == pytest.approx((true_nll + kl).mean(), abs=0.25)
    iwae = evaluate.iwae_nll(vae, x, k=200, seed=0)
    assert iwae == pytest.approx(true_nll.mean(), abs=0.1)
    assert iwae < negative_elbo["negative_elbo"].mean() - 0.8


@pytest.mark.parametrize("kind", ["bce", "continuous_bernoulli", "gaussian"])
def test_iwae_nll_of_an_untrained_conv_vae_is_at_most_its_negative_elbo_for_every_kind(kind):
    vae = vaekit.conv_vae(latent_dim=2, hidden_units=8, filters=(4, 8), reconstruction=kind, seed=0)
    x = binary_images(4) if kind == "bce" else grey_images(4)
    negative_elbo = evaluate.elbo(vae, np.concatenate([x] * 25), seed=0)["negative_elbo"]
    iwae = evaluate.iwae_nll(vae, x, k=64, seed=0)
    # Both are Monte-Carlo estimates and the order holds in expectation. An untrained decoder
    # hardly depends on z, so the expected gap, KL(q(z|x) || p(z|x)), is only thousandths of a
    # nat and the sampling noise can exceed it; an error in the estimator would cost nats.
    assert np.isfinite(iwae) and iwae <= negative_elbo + 0.05


def test_gaussian_vae_on_linear_gaussian_data_gives_the_closed_form_marginal():
    # The linear-Gaussian model of the first tests, scaled to live in [0, 1], written as a
    # VAE: a linear decoder with reconstruction="gaussian" and the noise variance as its
    # learned log-variance, and a linear encoder that outputs the exact posterior. Then
    # every importance weight equals p(x), so the IWAE estimate through evaluate() gives the
    # closed-form -log p(x) for any k, and the ELBO (whose KL is the closed form, so one
    # sample is noisy) does in expectation.
    model = linear_gaussian_model(n_images=8, noise=0.05, scales=(0.15, 0.07), offset=0.5)
    x = model["x"].astype("float32")
    assert x.min() > 0 and x.max() < 1
    w, b, noise = model["w"], model["b"], model["noise"]
    posterior_var = np.exp(model["posterior_log_var"][0])
    inputs = keras.Input(shape=(x.shape[1],))
    z_mean = keras.layers.Dense(2, name="z_mean")(inputs)
    z_log_var = keras.layers.Dense(2, name="z_log_var")(inputs)
    encoder = keras.Model(inputs, [z_mean, z_log_var, vaekit.Sampling(seed=0)([z_mean, z_log_var])])
    mean_kernel = w * posterior_var / noise**2  # z_mean = posterior_var * W^T (x - b) / noise^2
    encoder.get_layer("z_mean").set_weights([mean_kernel, -b @ mean_kernel])
    encoder.get_layer("z_log_var").set_weights([np.zeros((x.shape[1], 2)), np.log(posterior_var)])
    latent = keras.Input(shape=(2,))
    decoder = keras.Model(latent, keras.layers.Dense(x.shape[1], name="linear")(latent))
    decoder.get_layer("linear").set_weights([w.T, b])
    vae = vaekit.VAE(encoder, decoder, reconstruction="gaussian")
    vae.decoder_log_var.assign(2 * math.log(noise))
    np.testing.assert_allclose(evaluate.iwae_nll_terms(vae, x, k=50, seed=0), -model["log_px"], atol=2e-3)
    repeats = 2000
    negative_elbo = evaluate.elbo_terms(vae, np.tile(x, (repeats, 1)))["negative_elbo"].reshape(repeats, len(x)).mean(axis=0)
    np.testing.assert_allclose(negative_elbo, -model["log_px"], atol=0.1)


@pytest.mark.parametrize("argument, value, error", [
    ("k", 0, ValueError),
    ("k", 2.5, TypeError),
    ("k", True, TypeError),
    ("batch_size", -1, ValueError),
    ("chunk_size", "10", TypeError),
])
def test_iwae_nll_rejects_bad_arguments(argument, value, error):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8)
    with pytest.raises(error, match=argument):
        evaluate.iwae_nll(vae, binary_images(2), **{"k": 2, argument: value})


# --- Active units -----------------------------------------------------------------------

def vae_using_latent_dims(used, latent_dim=4, seed=0):
    """A tiny fc_vae whose posterior mean depends on x only in the dimensions `used`."""
    vae = vaekit.fc_vae(latent_dim=latent_dim, hidden_units=16, seed=seed)
    layer = vae.encoder.get_layer("z_mean")
    kernel, bias = layer.get_weights()
    kernel = 3.0 * np.random.default_rng(seed).normal(size=kernel.shape).astype("float32")
    unused = [i for i in range(latent_dim) if i not in used]
    kernel[:, unused] = 0.0  # these means are the bias alone, the same for every image
    layer.set_weights([kernel, bias + 0.7])
    return vae


@pytest.mark.parametrize("batch_size", [1, 7, 50, 500])
def test_latent_means_are_the_encoders_first_output_whatever_the_batch_size(batch_size):
    vae = vae_using_latent_dims((0, 2))
    x = binary_images(50)
    expected = vae.encoder.predict(x, verbose=0)[0]
    means = evaluate.latent_means(vae, x, batch_size=batch_size)
    assert isinstance(means, np.ndarray) and means.shape == (50, 4)
    np.testing.assert_allclose(means, expected, rtol=1e-4, atol=1e-5)  # float32 kernels differ by batch size


@pytest.mark.parametrize("argument, value, error", [
    ("vae", "a model", TypeError),
    ("x", np.full((3, 28, 28, 1), 2.0, "float32"), ValueError),
    ("batch_size", 0, ValueError),
])
def test_latent_means_rejects_bad_arguments(argument, value, error):
    arguments = {"vae": vaekit.fc_vae(latent_dim=2, hidden_units=8), "x": binary_images(2), "batch_size": 10}
    arguments[argument] = value
    with pytest.raises(error, match=argument):
        evaluate.latent_means(**arguments)


@pytest.mark.parametrize("used", [(), (2,), (0, 3), (0, 1, 2, 3)])
def test_active_units_counts_the_dimensions_whose_mean_varies_with_x(used):
    vae = vae_using_latent_dims(used)
    assert evaluate.active_units(vae, binary_images(50), batch_size=7) == len(used)


def test_active_units_threshold_is_on_the_variance_of_the_mean():
    vae = vae_using_latent_dims((0, 1))
    x = binary_images(50)
    z_mean = vae.encoder.predict(x, verbose=0)[0]
    variances = np.sort(np.var(z_mean, axis=0)[:2])
    between = float(variances.mean())
    assert evaluate.active_units(vae, x, threshold=between) == 1
    assert evaluate.active_units(vae, x, threshold=float(variances[1]) * 2) == 0


@pytest.mark.parametrize("argument, value, error", [
    ("threshold", -0.1, ValueError),
    ("threshold", "0.01", TypeError),
    ("batch_size", 0, ValueError),
])
def test_active_units_rejects_bad_arguments(argument, value, error):
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8)
    with pytest.raises(error, match=argument):
        evaluate.active_units(vae, binary_images(2), **{argument: value})
