"""The variational autoencoder: sampling layer, loss and training step.

Everything a VAE needs beyond its encoder and decoder is in this file:

* `Sampling` draws z = mu + sigma * eps (the reparameterisation trick),
* `reconstruction_loss` and `kl_divergence` are the two terms of the negative ELBO,
* `VAE.compute_loss` adds them up; Keras' own `fit` calls it on every backend.

Model code uses `keras.ops` and `keras.random` only, so it runs unchanged on
TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import keras
from keras import ops

from vaekit import _checks

RECONSTRUCTION_LOSSES = ("bce", "mse")

# exp(0.5 * log_var) overflows float32 a little above log_var = 177; a diverging
# encoder would then turn the loss into NaN. sigma in [e^-15, e^10] is far wider than
# any trained model uses, so clipping here changes nothing for a healthy model.
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 20.0

# `VAE.compile`'s `steps_per_execution` on TensorFlow when the caller gives none. On a
# 2-core CPU a `fit` step of `fc_vae()` is about 9 ms of arithmetic plus 1.5 ms of
# per-step work outside it (one `tf.function` call and the logs handed back to Python);
# 32 steps per call, in one `tf.while_loop`, removed most of the latter: 14 to 18 % less
# CPU time per step, 0.70 instead of 0.85 CPU seconds per 10,000 images on one thread,
# against 0.95 for PyTorch's examples/vae loop (benchmarks/vs_pytorch.py,
# benchmarks/README.md). It changes no step or result.
TENSORFLOW_STEPS_PER_EXECUTION = 32


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


def reconstruction_loss(x, reconstruction, kind: str = "bce"):
    """Per-image reconstruction loss, summed over pixels (nats for "bce").

    "bce" is -log p(x | z) under independent Bernoulli pixels; "mse" is the summed
    squared error. Summing (not averaging) over pixels keeps the term on the same
    per-image scale as the KL, as in Kingma & Welling (2014); averaging would make
    the KL ~784 times too heavy and the latent code collapse.
    """
    _checks.one_of("kind", kind, RECONSTRUCTION_LOSSES)
    if kind == "bce":
        per_pixel = ops.binary_crossentropy(x, reconstruction)
    else:
        per_pixel = ops.square(x - reconstruction)
    return ops.sum(ops.reshape(per_pixel, (ops.shape(x)[0], -1)), axis=-1)


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

    The training step is Keras' own: for each batch `fit` runs

        outputs = vae(x, training=True)      # encode, sample z, decode
        loss = vae.compute_loss(x, outputs)  # the method below
        gradients of loss -> optimizer.apply

    on TensorFlow, JAX or PyTorch alike. Overriding `compute_loss` rather than
    `train_step` is what keeps the class backend-agnostic, and `evaluate` uses the
    same method, so the validation curves are the same quantities.
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, beta: float = 1.0,
                 reconstruction: str = "bce", **kwargs):
        super().__init__(**kwargs)
        _checks.vae_parts(encoder, decoder)
        self.beta = _checks.non_negative_float("beta", beta)
        self.reconstruction = _checks.one_of("reconstruction", reconstruction, RECONSTRUCTION_LOSSES)
        self.encoder = encoder
        self.decoder = decoder
        # `loss` itself is tracked by Keras; these two show the ELBO's parts.
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        # Functional parts arrive built, so the VAE is too: weights load without a dummy
        # call. A subclassed encoder has no input shape until it is called; Keras builds
        # the VAE on its first call then.
        if _checks.is_functional(encoder):
            self.build(encoder.input_shape)

    def build(self, input_shape):
        pass  # all variables live in the already-built encoder and decoder

    def call(self, inputs, training=False):
        z_mean, z_log_var, z = self.encoder(inputs, training=training)
        reconstruction = self.decoder(z, training=training)
        return {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var, "z": z}

    def compile(self, *args, steps_per_execution: int | None = None, **kwargs):
        """Keras' `compile`; on TensorFlow `steps_per_execution` defaults to 32 instead of 1.

        Several batches per call make `fit` faster on TensorFlow (see
        `TENSORFLOW_STEPS_PER_EXECUTION`); the steps and their results are the same, but
        batch-level callbacks then run once every 32 batches. JAX unrolls that loop (so
        compiling takes longer) and PyTorch accepts only 1, so there the default stays 1.
        Pass `steps_per_execution=1` for Keras' own behaviour.
        """
        requested = steps_per_execution
        if steps_per_execution is None:
            steps_per_execution = TENSORFLOW_STEPS_PER_EXECUTION if keras.backend.backend() == "tensorflow" else 1
        super().compile(*args, steps_per_execution=steps_per_execution, **kwargs)
        # A saved model records what the caller asked for, so it loads on any backend.
        self._compile_config.config["steps_per_execution"] = requested

    def compile_from_config(self, config):
        # Keras does not compile a loaded model whose class overrides `compile`; this is
        # what it does otherwise.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction_term = ops.mean(reconstruction_loss(x, y_pred["reconstruction"], self.reconstruction))
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
        }

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)
