"""The variational autoencoder: sampling layer, loss and training step.

Everything a VAE needs beyond its encoder and decoder is in this file:

* `Sampling` draws z = mu + sigma * eps (the reparameterisation trick),
* `reconstruction_loss` and `kl_divergence` are the two terms of the negative ELBO,
* `VAE.compute_loss` adds them up; Keras' own `fit` calls it on every backend,
* `distribution_mean` (and `VAE.decode`) turn the decoder's output into the image to show.

Model code uses `keras.ops` and `keras.random` only, so it runs unchanged on
TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from vaekit import _checks

RECONSTRUCTION_LOSSES = ("bce", "mse", "continuous_bernoulli", "gaussian")

LOG_2PI = math.log(2.0 * math.pi)
# Within |1 - 2 lambda| < this, log C(lambda) comes from its Taylor series: the closed
# form divides two numbers that both go to 0 at lambda = 1/2.
CB_TAYLOR_RADIUS = 0.1

# exp(0.5 * log_var) overflows float32 a little above log_var = 177; a diverging
# encoder would then turn the loss into NaN. sigma in [e^-15, e^10] is far wider than
# any trained model uses, so clipping here changes nothing for a healthy model.
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 20.0


@keras.saving.register_keras_serializable(package="vaekit")
class Sampling(keras.layers.Layer):
    """Draws z ~ N(z_mean, exp(z_log_var)) as z_mean + exp(z_log_var / 2) * eps."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        z_log_var = ops.clip(z_log_var, LOG_VAR_MIN, LOG_VAR_MAX)
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def reconstruction_loss(x, reconstruction, kind: str = "bce", log_var=None):
    """Per-image reconstruction loss, summed over pixels.

    `reconstruction` is the decoder's output; what it means depends on `kind`:

    * "bce": Bernoulli probabilities p; the loss is -log p(x | z) in nats, a
      log-likelihood only where x is binary (0 or 1). On grey-level pixels BCE is not
      the log of any normalised density, so its "nats" are not a likelihood.
    * "mse": the summed squared error. It is not a log-density either: it equals
      -log N(x; x_hat, I/2) less the constant (D/2) log(pi) for D pixels.
    * "continuous_bernoulli": the parameter lambda of the continuous Bernoulli
      (Loaiza-Ganem & Cunningham 2019), a density on [0, 1]:
      -log p(x | lambda) = BCE(x, lambda) - log C(lambda) per pixel, in nats.
      lambda is not the mean; see `distribution_mean`.
    * "gaussian": the mean mu of N(x; mu, exp(log_var)), with `log_var` the decoder's
      log-variance (a scalar, or one per pixel; `VAE` learns it). The loss is
      -log N(x; mu, sigma^2) in nats, normalising constant included.

    Summing (not averaging) over pixels keeps the term on the same per-image scale as
    the KL, as in Kingma & Welling (2014); averaging would make the KL ~784 times too
    heavy and the latent code collapse.
    """
    _checks.one_of("kind", kind, RECONSTRUCTION_LOSSES)
    if kind == "bce":
        per_pixel = ops.binary_crossentropy(x, reconstruction)
    elif kind == "mse":
        per_pixel = ops.square(x - reconstruction)
    elif kind == "continuous_bernoulli":
        per_pixel = ops.binary_crossentropy(x, reconstruction) - continuous_bernoulli_log_norm(reconstruction)
    else:
        if log_var is None:
            raise ValueError('reconstruction_loss(kind="gaussian") needs `log_var`, the decoder\'s log-variance.')
        log_var = ops.clip(ops.convert_to_tensor(log_var, dtype=reconstruction.dtype), LOG_VAR_MIN, LOG_VAR_MAX)
        per_pixel = 0.5 * (LOG_2PI + log_var + ops.square(x - reconstruction) * ops.exp(-log_var))
    return ops.sum(ops.reshape(per_pixel, (ops.shape(x)[0], -1)), axis=-1)


def _clip_probability(probability):
    """Clip to [eps, 1 - eps] as `ops.binary_crossentropy` does, so that logs stay finite."""
    epsilon = keras.config.epsilon()
    return ops.clip(probability, epsilon, 1.0 - epsilon)


def continuous_bernoulli_log_norm(probability):
    """log C(lambda), the continuous Bernoulli's log-normaliser, elementwise.

    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) = (log(1 - lambda) - log(lambda)) / (1 - 2 lambda),
    with C(1/2) = 2. Near lambda = 1/2 both top and bottom vanish, so there, with
    t = 1 - 2 lambda, the series artanh(t) / t = 1 + t^2/3 + t^4/5 + t^6/7 + ... is used
    (error below 1e-9 for |t| < 0.1). lambda is clipped like BCE's probabilities.
    """
    probability = _clip_probability(probability)
    t = 1.0 - 2.0 * probability
    near_half = ops.abs(t) < CB_TAYLOR_RADIUS
    # The closed form is evaluated at a harmless lambda where the series is used: where()
    # picks values, but a NaN or inf in the unused branch would still poison the gradient.
    far = ops.where(near_half, ops.zeros_like(probability) + 0.25, probability)
    closed_form = ops.log((ops.log1p(-far) - ops.log(far)) / (1.0 - 2.0 * far))
    t2 = ops.square(t)
    series = math.log(2.0) + ops.log1p(t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 / 7.0)))
    return ops.where(near_half, series, closed_form)


def distribution_mean(kind: str, reconstruction):
    """The mean image of the decoder's distribution, from its output `reconstruction`.

    For "bce" (p), "mse" and "gaussian" (mu) that is the output itself. The continuous
    Bernoulli's mean is not lambda: E[x] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)),
    1/2 at lambda = 1/2, pulled towards 1/2 from lambda (lambda = 0.9 has mean 0.67).
    Plots of such a model should show this mean, not lambda.
    """
    if not isinstance(kind, str) or kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"`kind` must be one of {list(RECONSTRUCTION_LOSSES)}, got {kind!r}.")
    if kind != "continuous_bernoulli":
        return reconstruction
    probability = _clip_probability(ops.convert_to_tensor(reconstruction))
    t = 1.0 - 2.0 * probability
    near_half = ops.abs(t) < CB_TAYLOR_RADIUS
    far = ops.where(near_half, ops.zeros_like(probability) + 0.25, probability)
    closed_form = far / (2.0 * far - 1.0) + 1.0 / (ops.log1p(-far) - ops.log(far))
    # 1/2 - t/6 - 2 t^3/45 - 22 t^5/945 - ...: the series of the same expression in t.
    t2 = ops.square(t)
    series = 0.5 - t * (1.0 / 6.0 + t2 * (2.0 / 45.0 + t2 * 22.0 / 945.0))
    return ops.where(near_half, series, closed_form)


def kl_divergence(z_mean, z_log_var):
    """Per-image KL(N(z_mean, exp(z_log_var)) || N(0, I)), in nats.

    Closed form from Kingma & Welling (2014), Appendix B:
    -KL = 1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    z_log_var = ops.clip(z_log_var, LOG_VAR_MIN, LOG_VAR_MAX)
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


@keras.saving.register_keras_serializable(package="vaekit")
class VAE(keras.Model):
    """A VAE made of an encoder (x -> z_mean, z_log_var, z) and a decoder (z -> x).

    Calling the model returns a dict with "reconstruction", "z_mean", "z_log_var"
    and "z". The loss, minimised by `fit`, is the negative ELBO per image:

        loss = reconstruction_loss(x, x_hat) + beta * KL(q(z|x) || p(z))

    `beta=1` is the VAE of Kingma & Welling, `beta=0` trains the same network as a
    plain autoencoder (seed-002's "MSE only" run), `beta>1` is a beta-VAE.
    `reconstruction` is one of `RECONSTRUCTION_LOSSES` (see `reconstruction_loss`).
    With "gaussian" the VAE owns one more weight, `decoder_log_var`, the decoder's
    log-variance, trained with the rest: one number shared by all pixels, or one per
    pixel with `per_pixel_variance=True`. `decode(z)` gives the decoder's mean image.

    The training step is Keras' own: for each batch `fit` runs

        outputs = vae(x, training=True)      # encode, sample z, decode
        loss = vae.compute_loss(x, outputs)  # the method below
        gradients of loss -> optimizer.apply

    on TensorFlow, JAX or PyTorch alike. Overriding `compute_loss` rather than
    `train_step` is what keeps the class backend-agnostic, and `evaluate` uses the
    same method, so the validation curves are the same quantities.
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, beta: float = 1.0,
                 reconstruction: str = "bce", per_pixel_variance: bool = False, **kwargs):
        super().__init__(**kwargs)
        _checks.vae_parts(encoder, decoder)
        self.beta = _checks.non_negative_float("beta", beta)
        self.reconstruction = _checks.one_of("reconstruction", reconstruction, RECONSTRUCTION_LOSSES)
        if not isinstance(per_pixel_variance, bool):
            raise TypeError(f"`per_pixel_variance` must be True or False, got {per_pixel_variance!r}.")
        if per_pixel_variance and reconstruction != "gaussian":
            raise ValueError('`per_pixel_variance=True` needs reconstruction="gaussian", '
                             f"got reconstruction={reconstruction!r}.")
        self.per_pixel_variance = per_pixel_variance
        self.encoder = encoder
        self.decoder = decoder
        self.decoder_log_var = None
        if reconstruction == "gaussian":
            if per_pixel_variance and getattr(decoder, "outputs", None) is None:
                raise ValueError("`per_pixel_variance=True` needs a functional decoder, whose output shape is known.")
            # Starts at sigma = 1 (log sigma^2 = 0); training fits it to the squared error,
            # so MSE's fixed weighting of that error against the KL becomes a learned one.
            self.decoder_log_var = self.add_weight(
                shape=tuple(decoder.output_shape[1:]) if per_pixel_variance else (),
                initializer="zeros", name="decoder_log_var")
        # `loss` itself is tracked by Keras; these two show the ELBO's parts.
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        # Functional parts arrive built, so the VAE is too: weights load without a dummy
        # call. A subclassed encoder has no input shape until it is called; Keras builds
        # the VAE on its first call then.
        if _checks.is_functional(encoder):
            self.build(encoder.input_shape)

    def build(self, input_shape):
        pass  # the encoder and decoder arrive built; decoder_log_var is made in __init__

    def call(self, inputs, training=False):
        z_mean, z_log_var, z = self.encoder(inputs, training=training)
        reconstruction = self.decoder(z, training=training)
        return {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var, "z": z}

    def reconstruction_term(self, x, reconstruction):
        """Per-image `reconstruction_loss` of this VAE's kind (with its learned variance)."""
        return reconstruction_loss(x, reconstruction, self.reconstruction, self.decoder_log_var)

    def decode(self, z):
        """The decoder's mean image for latent codes `z` (see `distribution_mean`), as a tensor."""
        return distribution_mean(self.reconstruction, self.decoder(z, training=False))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction_term = ops.mean(self.reconstruction_term(x, y_pred["reconstruction"]))
        kl_term = ops.mean(kl_divergence(y_pred["z_mean"], y_pred["z_log_var"]))
        self.reconstruction_loss_tracker.update_state(reconstruction_term)
        self.kl_loss_tracker.update_state(kl_term)
        return reconstruction_term + self.beta * kl_term

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "beta": self.beta,
            "reconstruction": self.reconstruction,
            "per_pixel_variance": self.per_pixel_variance,
        }

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)
