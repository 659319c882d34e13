"""The variational autoencoder, top to bottom: the file to copy.

* `Sampling` draws z = mu + sigma * eps (the reparameterisation trick),
* `reconstruction_loss` and `kl_divergence` are the two terms of the negative ELBO,
* `VAE.compute_loss` adds them up; Keras' own `fit` calls it on every backend,
* `distribution_mean` (and `VAE.decode`) turn the decoder's output into the image to show,
* `Autoencoder` is the plain autoencoder every autoencoder builder returns.

Both model classes check their data in `fit`, `evaluate` and `predict`, and `VAE.fit`
stops at the first NaN loss: those guards are in `guards.py`. Model code uses `keras.ops`
and `keras.random` only, so it runs unchanged on TensorFlow, JAX and PyTorch. The file
imports only Keras, NumPy, the standard library and `guards.py`: to use it without
vaekit, paste `guards.py`, this file (without its `from vaekit.guards import` line) and
any builder of `vaekit/models.py` into a file of your own.
"""

import inspect
import math
import numbers

import keras
from keras import ops

from vaekit.guards import ChecksItsData, StopOnNonFiniteLoss, check_batches


RECONSTRUCTION_LOSSES = ("bce", "mse", "continuous_bernoulli", "gaussian")
LOG_2PI = math.log(2.0 * math.pi)
CB_TAYLOR_RADIUS = 0.1  # within |1 - 2 lambda| < this the continuous Bernoulli uses Taylor series

# exp(0.5 * log_var) overflows float32 a little above log_var = 177; a diverging
# encoder would then turn the loss into NaN. sigma in [e^-15, e^10] is far wider than
# any trained model uses, so clipping here changes nothing for a healthy model.
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 20.0


# `VAE.compile`'s default: 32 steps per call on TensorFlow from Keras 3.15 (see `VAE.compile`), else Keras' 1.
DEFAULT_STEPS_PER_EXECUTION = (
    32 if keras.backend.backend() == "tensorflow" and tuple(map(int, keras.__version__.split(".")[:2])) >= (3, 15) else 1
)


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
        # In z's dtype (float16/bfloat16 under mixed precision): float32 noise would not multiply with z.
        epsilon = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype, seed=self.seed_generator)
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
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"`kind` must be one of {list(RECONSTRUCTION_LOSSES)}, got {kind!r}.")
    # One row of pixels per image before any per-pixel arithmetic: the same numbers, but XLA on a
    # CPU (JAX) runs elementwise ops on (n, 28, 28, 1) tensors several times slower than on (n, 784).
    # float32 whatever the decoder's dtype: in bfloat16 a sum over 784 pixels would be off by a nat or more.
    x = ops.cast(ops.reshape(x, (ops.shape(x)[0], -1)), "float32")
    reconstruction = ops.cast(ops.reshape(reconstruction, (ops.shape(reconstruction)[0], -1)), "float32")
    if kind == "bce":
        per_pixel = ops.binary_crossentropy(x, reconstruction)
    elif kind == "mse":
        per_pixel = ops.square(x - reconstruction)
    elif kind == "continuous_bernoulli":
        per_pixel = ops.binary_crossentropy(x, reconstruction) - continuous_bernoulli_log_norm(reconstruction)
    else:
        if log_var is None:
            raise ValueError('reconstruction_loss(kind="gaussian") needs `log_var`, the decoder\'s log-variance.')
        log_var = ops.clip(ops.cast(ops.convert_to_tensor(log_var), "float32"), LOG_VAR_MIN, LOG_VAR_MAX)
        if len(log_var.shape):  # one per pixel: laid out like the image rows
            log_var = ops.reshape(log_var, (-1,))
        return -log_normal_diag(x, reconstruction, log_var)
    return ops.sum(per_pixel, axis=-1)


def log_normal_diag(x, mean, log_var):
    """log N(x; mean, diag(exp(log_var))), summed over the last axis, in nats (log_var broadcasts)."""
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(x - mean) * ops.exp(-log_var), axis=-1)


def _split_at_half(probability):
    """(t = 1 - 2 lambda, |t| < CB_TAYLOR_RADIUS, lambda or 0.25 there), lambda in float32, clipped as in BCE.

    Near 1/2 the closed forms divide two numbers that both go to 0, so they are evaluated
    at 0.25 there: where() picks values, but a NaN in the unused branch poisons the gradient.
    """
    probability = ops.clip(ops.cast(probability, "float32"), keras.config.epsilon(), 1.0 - keras.config.epsilon())
    t = 1.0 - 2.0 * probability
    near_half = ops.abs(t) < CB_TAYLOR_RADIUS
    return t, near_half, ops.where(near_half, ops.zeros_like(probability) + 0.25, probability)


def continuous_bernoulli_log_norm(probability):
    """log C(lambda), the continuous Bernoulli's log-normaliser, elementwise.

    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) = (log(1 - lambda) - log(lambda)) / (1 - 2 lambda),
    with C(1/2) = 2. Near lambda = 1/2 both top and bottom vanish, so there, with
    t = 1 - 2 lambda, the series artanh(t) / t = 1 + t^2/3 + t^4/5 + t^6/7 + ... is used
    (error below 1e-9 for |t| < 0.1). lambda is clipped like BCE's probabilities.
    """
    t, near_half, far = _split_at_half(probability)
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
    t, near_half, far = _split_at_half(ops.convert_to_tensor(reconstruction))
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
    z_mean = ops.cast(z_mean, "float32")  # float32 under mixed precision too, as the loss it enters
    z_log_var = ops.clip(ops.cast(z_log_var, "float32"), LOG_VAR_MIN, LOG_VAR_MAX)
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)



@keras.saving.register_keras_serializable(package="vaekit")
class VAE(ChecksItsData, keras.Model):
    """A VAE made of an encoder (x -> z_mean, z_log_var, z) and a decoder (z -> x).

    Calling the model returns a dict with "reconstruction", "z_mean", "z_log_var"
    and "z". The loss, minimised by `fit`, is per image

        loss = reconstruction_loss(x, x_hat) + beta * KL(q(z|x) || p(z)),

    the negative ELBO when `beta=1` (Kingma & Welling); `beta=0` trains the same
    network as a plain autoencoder, `beta>1` is a beta-VAE. `reconstruction` is one of
    `RECONSTRUCTION_LOSSES` (see `reconstruction_loss`). With "gaussian" the VAE owns
    one more weight, `decoder_log_var`, trained with the rest: one number shared by all
    pixels, or one per pixel with `per_pixel_variance=True`. Two KL schedules: with
    `kl_warmup_steps=N` the KL's weight rises linearly from 0 to `beta` over the first N
    training steps (Sønderby et al. 2016); with `free_bits=lambda` each latent dimension's
    batch-mean KL counts as at least lambda nats (Kingma et al. 2016), so the optimiser
    gains nothing by pushing a dimension below it. `kl_loss` always logs the plain KL.

    The training step is Keras' own: for each batch `fit` runs

        outputs = vae(x, training=True)      # encode, sample z, decode
        loss = vae.compute_loss(x, outputs)  # the method below
        gradients of loss -> optimizer.apply

    on TensorFlow, JAX or PyTorch alike: overriding `compute_loss` rather than
    `train_step` keeps the class backend-agnostic, and `evaluate` uses it too.
    `fit`, `evaluate` and `predict` check the images first (`check_data`), and `fit`
    stops at the first NaN loss (`StopOnNonFiniteLoss`).
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, beta: float = 1.0,
                 reconstruction: str = "bce", per_pixel_variance: bool = False, kl_warmup_steps: int = 0,
                 free_bits: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        _check_parts(encoder, decoder)
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"`beta` must be a number >= 0, got {beta!r} ({type(beta).__name__}).")
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(f"`beta` must be a finite number >= 0, got {beta}.")
        if reconstruction not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"`reconstruction` must be one of {list(RECONSTRUCTION_LOSSES)}, got {reconstruction!r}.")
        if not isinstance(per_pixel_variance, bool):
            raise TypeError(f"`per_pixel_variance` must be True or False, got {per_pixel_variance!r}.")
        if per_pixel_variance and reconstruction != "gaussian":
            raise ValueError(f'`per_pixel_variance=True` needs reconstruction="gaussian", got {reconstruction!r}.')
        if not (isinstance(kl_warmup_steps, numbers.Integral) and kl_warmup_steps >= 0 and isinstance(
                free_bits, numbers.Real) and math.isfinite(free_bits) and free_bits >= 0) or isinstance(free_bits, bool):
            raise ValueError("`kl_warmup_steps` must be an integer >= 0 and `free_bits` a number >= 0, "
                             f"got {kl_warmup_steps!r} and {free_bits!r}.")
        self.encoder, self.decoder, self.beta = encoder, decoder, float(beta)
        self.reconstruction, self.per_pixel_variance = reconstruction, per_pixel_variance
        self.kl_warmup_steps, self.free_bits = int(kl_warmup_steps), float(free_bits)
        # The warm-up's step count is a weight, so that a saved or resumed model carries on from it.
        self.training_steps = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                              name="training_steps") if kl_warmup_steps else None
        self.decoder_log_var = None
        if reconstruction == "gaussian":
            if per_pixel_variance and not is_functional(decoder):
                raise ValueError("`per_pixel_variance=True` needs a functional decoder, whose output shape is known.")
            # Starts at sigma = 1 (log sigma^2 = 0); training fits it to the squared error,
            # so MSE's fixed weighting of that error against the KL becomes a learned one.
            self.decoder_log_var = self.add_weight(
                shape=tuple(decoder.output_shape[1:]) if per_pixel_variance else (),
                initializer="zeros", name="decoder_log_var")
        # `loss` itself is tracked by Keras; these two show the ELBO's parts.
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        if is_functional(encoder):  # built parts: weights load without a dummy call
            self.build(encoder.input_shape)

    def build(self, input_shape):
        pass  # the encoder and decoder arrive built; decoder_log_var is made in __init__

    def call(self, inputs, training=False):
        z_mean, z_log_var, z = self.encoder(inputs, training=training)
        reconstruction = self.decoder(z, training=training)
        outputs = {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var, "z": z}
        # float32 under mixed precision too (a no-op otherwise): NumPy has no bfloat16, matplotlib no ml_dtypes.
        return {name: ops.cast(value, "float32") for name, value in outputs.items()}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction_term = ops.mean(self.reconstruction_term(x, y_pred["reconstruction"]))
        kl_term = ops.mean(kl_divergence(y_pred["z_mean"], y_pred["z_log_var"]))
        # Weighted by batch size, as Keras weighs `loss`: with a short last batch, loss = recon + beta * KL still.
        batch_size = ops.shape(x)[0]
        self.reconstruction_loss_tracker.update_state(reconstruction_term, sample_weight=batch_size)
        self.kl_loss_tracker.update_state(kl_term, sample_weight=batch_size)
        beta, kl_objective = self.beta, kl_term
        if self.free_bits:  # each dimension's KL, averaged over the batch, floored at free_bits
            per_dimension = kl_divergence(y_pred["z_mean"][..., None], y_pred["z_log_var"][..., None])
            kl_objective = ops.sum(ops.maximum(ops.mean(per_dimension, axis=0), self.free_bits))
        if self.training_steps is not None:
            if training:
                self.training_steps.assign_add(1.0)
            beta = self.beta * ops.minimum(1.0, self.training_steps / self.kl_warmup_steps)
        return reconstruction_term + beta * kl_objective

    def reconstruction_term(self, x, reconstruction):
        """Per-image `reconstruction_loss` of this VAE's kind (with its learned variance)."""
        return reconstruction_loss(x, reconstruction, self.reconstruction, self.decoder_log_var)

    def decode(self, z):
        """The decoder's mean image for latent codes `z` (see `distribution_mean`), as a tensor."""
        return ops.cast(distribution_mean(self.reconstruction, self.decoder(z, training=False)), "float32")

    def compile(self, *args, steps_per_execution: int | None = None, **kwargs):
        """Keras' `compile`, with `steps_per_execution` 32 on TensorFlow when not given.

        32 batches per call spare TensorFlow most of its per-step work outside the
        arithmetic: 14 to 18 % less CPU time per step of `fc_vae()`, with the same steps
        and results (benchmarks/README.md); batch-level callbacks then run every 32
        batches. JAX would unroll the loop and PyTorch takes only 1, and Keras before
        3.15 loses the epoch's logs with it: there the default stays 1. Pass
        `steps_per_execution=1` for Keras' own behaviour.
        """
        # The compile config keeps None, so a default stays a default reloaded on another backend.
        super().compile(*args, steps_per_execution=steps_per_execution, **kwargs)
        if steps_per_execution is None:
            self.steps_per_execution = DEFAULT_STEPS_PER_EXECUTION

    def compile_from_config(self, config):
        # Keras skips loading the compile state of a class that overrides `compile`.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, *args, stop_on_nonfinite: bool = True, **kwargs):
        """`keras.Model.fit`, after checking the data, and stopping at the first NaN loss.

        Before training, `x` and `validation_data` are checked (`check_batches`: arrays in
        full, a dataset or generator on its first batch), so 0-255 pixels, NaN or a missing
        channel axis are refused with a message saying how to fix them. With
        `stop_on_nonfinite=True` (the default) a NaN or infinite loss stops training, puts
        back the weights from the start of that epoch and raises `NonFiniteLossError`
        naming the epoch and batch; pass False to let training run on.
        """
        bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
        if stop_on_nonfinite:  # first, so that no later callback saves a NaN epoch
            bound.arguments["callbacks"] = [StopOnNonFiniteLoss(), *(bound.arguments.get("callbacks") or [])]
        return super().fit(*bound.args[1:], **bound.kwargs)

    def data_shape(self):
        """The shape of one image (None where a subclassed encoder has not told it)."""
        return tuple(self.encoder.input_shape[1:]) if is_functional(self.encoder) else None

    def get_config(self):
        parts = {name: keras.saving.serialize_keras_object(getattr(self, name)) for name in ("encoder", "decoder")}
        return {**super().get_config(), **parts, "beta": self.beta, "reconstruction": self.reconstruction,
                "per_pixel_variance": self.per_pixel_variance, "kl_warmup_steps": self.kl_warmup_steps,
                "free_bits": self.free_bits}

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def is_functional(model) -> bool:
    """True for a functional keras.Model, whose inputs and outputs are known before any call."""
    return isinstance(model, keras.Model) and getattr(model, "outputs", None) is not None


def _check_parts(encoder, decoder) -> None:
    """Refuse an encoder and decoder that do not fit together, naming both shapes.

    Subclassed models are checked only for type: their shapes are unknown until called.
    """
    for name, part in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(part, keras.layers.Layer):
            raise TypeError(f"`{name}` must be a keras.Model or keras layer, got {type(part).__name__}.")
    if not (is_functional(encoder) and is_functional(decoder)):
        return
    if len(encoder.outputs) != 3:
        raise ValueError(f"`encoder` must return three tensors (z_mean, z_log_var, z), got {len(encoder.outputs)}.")
    latent_shape, decoder_input = tuple(encoder.outputs[2].shape[1:]), tuple(decoder.inputs[0].shape[1:])
    if decoder_input != latent_shape:
        raise ValueError(f"`decoder` takes inputs of shape {decoder_input} but the encoder's z has shape "
                         f"{latent_shape}; they must match.")
    image_shape, output_shape = tuple(encoder.inputs[0].shape[1:]), tuple(decoder.outputs[0].shape[1:])
    if output_shape != image_shape:
        raise ValueError(f"`decoder` outputs images of shape {output_shape} but the encoder takes {image_shape}; "
                         "a VAE reconstructs its input, so they must match (check the decoder's upsampling).")


@keras.saving.register_keras_serializable(package="vaekit")
class Autoencoder(ChecksItsData, keras.Model):
    """A functional autoencoder (inputs -> reconstruction) whose `fit`, `evaluate`, `predict` check their images.

    Built like any functional model, `Autoencoder(inputs, outputs, value_range=(0, 1), name=...)`.
    `value_range` is the pixel range the output layer covers and the data must lie in:
    (0, 1) for a sigmoid output, (-1, 1) for tanh; None checks shape and finiteness only.
    0-255 pixels, NaN, a missing channel axis or images of another size are then refused
    with the message and fix `VAE.fit` gives, instead of a loss of -66,705 or Keras'
    generic input error.
    """

    def __init__(self, *args, value_range: tuple[float, float] | None = (0.0, 1.0), **kwargs):
        super().__init__(*args, **kwargs)
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        value_range = config.pop("value_range", (0.0, 1.0))
        model = super().from_config(config, custom_objects=custom_objects)  # Keras' functional rebuild
        model.value_range = None if value_range is None else tuple(value_range)
        return model

    def data_shape(self):
        return tuple(self.input_shape[1:])

    def check_targets(self, y, name: str = "y"):
        """Check reconstruction targets: images of the output's shape in the model's range; None passes."""
        return None if y is None else check_batches(name, y, self.value_range, tuple(self.output_shape[1:]))


