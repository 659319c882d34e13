"""The variational autoencoder: sampling layer, loss and training step.

Everything a VAE needs beyond its encoder and decoder is in this file:

* `Sampling` draws z = mu + sigma * eps (the reparameterisation trick),
* `reconstruction_loss` and `kl_divergence` are the two terms of the negative ELBO,
* `VAE.compute_loss` adds them up; Keras' own `fit` calls it on every backend,
* `distribution_mean` (and `VAE.decode`) turn the decoder's output into the image to show.

At the bottom, the safety checks `VAE.fit` runs: `check_images` (is this data a
model can train on?) and `StopOnNonFiniteLoss` (stop at the first NaN loss).

Model code uses `keras.ops` and `keras.random` only, so it runs unchanged on
TensorFlow, JAX and PyTorch. The file imports only Keras, so it can be copied into
a project of its own together with any builder of `vaekit/models.py`.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings

import keras
import numpy as np
from keras import ops

RECONSTRUCTION_LOSSES = ("bce", "mse", "continuous_bernoulli", "gaussian")
# The pixel values each reconstruction loss is meant for; `VAE.fit` refuses data outside.
# (The Gaussian is a density on all reals, but its decoder's mean is a sigmoid in [0, 1].)
PIXEL_RANGES = {kind: (0.0, 1.0) for kind in RECONSTRUCTION_LOSSES}

LOG_2PI = math.log(2.0 * math.pi)
# Within |1 - 2 lambda| < this, log C(lambda) comes from its Taylor series: the closed
# form divides two numbers that both go to 0 at lambda = 1/2.
CB_TAYLOR_RADIUS = 0.1

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
# Older Keras (3.6 tested) loses the logs of an epoch run in groups of steps: `fit` then
# returns no `loss`. The default above is used only from the Keras it was tested with.
STEPS_PER_EXECUTION_SINCE_KERAS = (3, 15)


def default_steps_per_execution() -> int:
    """What `VAE.compile` uses when not told: 32 on TensorFlow with Keras >= 3.15, else 1."""
    if keras.backend.backend() != "tensorflow":
        return 1
    major, minor = (int(part) for part in keras.__version__.split(".")[:2])
    return TENSORFLOW_STEPS_PER_EXECUTION if (major, minor) >= STEPS_PER_EXECUTION_SINCE_KERAS else 1


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
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"`kind` must be one of {list(RECONSTRUCTION_LOSSES)}, got {kind!r}.")
    # One row of pixels per image before any per-pixel arithmetic: the same numbers, but XLA on a
    # CPU (JAX) runs elementwise ops on (n, 28, 28, 1) tensors several times slower than on (n, 784).
    x = ops.reshape(x, (ops.shape(x)[0], -1))
    reconstruction = ops.reshape(reconstruction, (ops.shape(reconstruction)[0], -1))
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
        if len(log_var.shape):  # one per pixel: laid out like the image rows
            log_var = ops.reshape(log_var, (-1,))
        per_pixel = 0.5 * (LOG_2PI + log_var + ops.square(x - reconstruction) * ops.exp(-log_var))
    return ops.sum(per_pixel, axis=-1)


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
        _check_parts(encoder, decoder)
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"`beta` must be a non-negative number, got {beta!r} ({type(beta).__name__}).")
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(f"`beta` must be a finite number >= 0, got {beta}.")
        if reconstruction not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"`reconstruction` must be one of {list(RECONSTRUCTION_LOSSES)}, got {reconstruction!r}.")
        if not isinstance(per_pixel_variance, bool):
            raise TypeError(f"`per_pixel_variance` must be True or False, got {per_pixel_variance!r}.")
        if per_pixel_variance and reconstruction != "gaussian":
            raise ValueError('`per_pixel_variance=True` needs reconstruction="gaussian", '
                             f"got reconstruction={reconstruction!r}.")
        self.beta = float(beta)
        self.reconstruction = reconstruction
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
        if _is_functional(encoder):
            self.build(encoder.input_shape)

    def build(self, input_shape):
        pass  # the encoder and decoder arrive built; decoder_log_var is made in __init__

    def call(self, inputs, training=False):
        z_mean, z_log_var, z = self.encoder(inputs, training=training)
        reconstruction = self.decoder(z, training=training)
        return {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var, "z": z}

    def compile(self, *args, steps_per_execution: int | None = None, **kwargs):
        """Keras' `compile`; on TensorFlow `steps_per_execution` defaults to 32 instead of 1.

        (With Keras 3.15 or newer; see `default_steps_per_execution`.)

        Several batches per call make `fit` faster on TensorFlow (see
        `TENSORFLOW_STEPS_PER_EXECUTION`); the steps and their results are the same, but
        batch-level callbacks then run once every 32 batches. JAX unrolls that loop (so
        compiling takes longer) and PyTorch accepts only 1, so there the default stays 1.
        Pass `steps_per_execution=1` for Keras' own behaviour.
        """
        self._requested_steps_per_execution = steps_per_execution
        if steps_per_execution is None:
            steps_per_execution = default_steps_per_execution()
        super().compile(*args, steps_per_execution=steps_per_execution, **kwargs)

    def get_compile_config(self):
        # A saved model records what the caller asked for (None: the backend's default),
        # so a model saved on TensorFlow still loads and trains on PyTorch.
        config = super().get_compile_config()
        if config and "steps_per_execution" in config:
            config["steps_per_execution"] = getattr(self, "_requested_steps_per_execution", None)
        return config

    def compile_from_config(self, config):
        # Keras does not compile a loaded model whose class overrides `compile`; this is
        # what it does otherwise.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def reconstruction_term(self, x, reconstruction):
        """Per-image `reconstruction_loss` of this VAE's kind (with its learned variance)."""
        return reconstruction_loss(x, reconstruction, self.reconstruction, self.decoder_log_var)

    def decode(self, z):
        """The decoder's mean image for latent codes `z` (see `distribution_mean`), as a tensor."""
        return distribution_mean(self.reconstruction, self.decoder(z, training=False))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction_term = ops.mean(self.reconstruction_term(x, y_pred["reconstruction"]))
        kl_term = ops.mean(kl_divergence(y_pred["z_mean"], y_pred["z_log_var"]))
        # Weighted by the batch's size, as Keras weighs its `loss`, so that over an epoch with a
        # short last batch the logged loss still equals reconstruction + beta * KL.
        batch_size = ops.shape(x)[0]
        self.reconstruction_loss_tracker.update_state(reconstruction_term, sample_weight=batch_size)
        self.kl_loss_tracker.update_state(kl_term, sample_weight=batch_size)
        return reconstruction_term + self.beta * kl_term

    def fit(self, *args, stop_on_nonfinite: bool = True, **kwargs):
        """`keras.Model.fit`, after checking the data, and stopping at the first NaN loss.

        Takes `fit`'s arguments. Before training, `x` and `validation_data` are checked
        (`check_images`: arrays in full, a dataset or generator on its first batch), so
        0-255 pixels, NaN or a missing channel axis are refused with a message saying
        how to fix them. With `stop_on_nonfinite=True` (the default) a NaN or infinite
        loss stops training, puts back the weights from the start of that epoch and
        raises `NonFiniteLossError` naming the epoch and batch; pass False to let
        training run on.
        """
        bound = inspect.signature(super().fit).bind(*args, **kwargs)
        arguments = bound.arguments
        arguments["x"], arguments["validation_data"] = self.check_data(
            arguments.get("x"), arguments.get("validation_data"))
        if stop_on_nonfinite:  # first, so that no later callback saves a NaN epoch
            arguments["callbacks"] = [StopOnNonFiniteLoss(), *(arguments.get("callbacks") or [])]
        self._data_checked = True  # fit's own validation calls `evaluate`: checked already
        try:
            return super().fit(*bound.args, **bound.kwargs)
        finally:
            self._data_checked = False

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`, after checking `x` as `fit` does."""
        bound = inspect.signature(super().evaluate).bind(*args, **kwargs)
        if not getattr(self, "_data_checked", False):
            bound.arguments["x"], _ = self.check_data(bound.arguments.get("x"))
        return super().evaluate(*bound.args, **bound.kwargs)

    def predict(self, *args, **kwargs):
        """`keras.Model.predict`, after checking `x` as `fit` does."""
        bound = inspect.signature(super().predict).bind(*args, **kwargs)
        bound.arguments["x"], _ = self.check_data(bound.arguments.get("x"))
        return super().predict(*bound.args, **bound.kwargs)

    def check_data(self, x, validation_data=None):
        """Check training data as `fit` does (see `check_images`); returns (x, validation_data)."""
        image_shape = tuple(self.encoder.input_shape[1:]) if _is_functional(self.encoder) else None
        value_range = PIXEL_RANGES.get(self.reconstruction)
        x = check_batches(x, "x", image_shape, value_range)
        if isinstance(validation_data, (tuple, list)):  # (x_val,) or (x_val, y_val[, weights])
            x_val = check_batches(validation_data[0], "validation_data[0]", image_shape, value_range)
            validation_data = (x_val, *validation_data[1:])
        elif validation_data is not None:  # a dataset or generator
            validation_data = check_batches(validation_data, "validation_data", image_shape, value_range)
        return x, validation_data

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


def _is_functional(model) -> bool:
    """True for a functional keras.Model, whose inputs and outputs are known before any call."""
    return isinstance(model, keras.Model) and getattr(model, "outputs", None) is not None


def _check_parts(encoder, decoder) -> None:
    """Check that `encoder` maps x -> (z_mean, z_log_var, z) and `decoder` takes z.

    Functional models are checked for shapes; subclassed ones only for type, since
    their shapes are unknown until they are called.
    """
    for name, part in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(part, keras.layers.Layer):
            raise TypeError(f"`{name}` must be a keras.Model or keras layer, got {type(part).__name__}.")
    if not _is_functional(encoder):
        return
    if len(encoder.outputs) != 3:
        raise ValueError(f"`encoder` must return three tensors (z_mean, z_log_var, z), got {len(encoder.outputs)} outputs.")
    latent_shape = tuple(encoder.outputs[2].shape[1:])
    if _is_functional(decoder) and tuple(decoder.inputs[0].shape[1:]) != latent_shape:
        raise ValueError(f"`decoder` takes inputs of shape {tuple(decoder.inputs[0].shape[1:])} but the encoder's z "
                         f"has shape {latent_shape}; they must match.")


# ---------------------------------------------------------------- checks run by VAE.fit

def check_images(x, name: str = "x", image_shape=None, value_range=(0.0, 1.0), floats_only: bool = True):
    """Raise a clear error if `x` is not a batch of images a model can use; return it.

    In this order: a real numeric array (lists become NumPy arrays); a non-empty batch
    (n, ...); images of `image_shape`, e.g. (28, 28, 1), if given; a float dtype if
    `floats_only`; no NaN or infinity; values inside `value_range` (None: any). Each
    message names `name` and the usual fix. Backend tensors are checked where they are.
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`{name}` must be a numeric array of images, got {type(x).__name__}.")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"`{name}` must be a rectangular array of images ({error}).") from error
    is_numpy = isinstance(x, np.ndarray)
    dtype = x.dtype.name if is_numpy else keras.backend.standardize_dtype(x.dtype)
    is_float = dtype.startswith(("float", "bfloat"))
    if dtype == "bool":
        raise TypeError(f"`{name}` must be a real numeric array, got dtype bool; use `x.astype(\"float32\")`.")
    if not (is_float or dtype.startswith(("int", "uint"))):
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {dtype}.")
    shape = tuple(x.shape)
    if len(shape) < 2 or 0 in shape:
        raise ValueError(f"`{name}` must be a non-empty batch (n, ...) of images, got shape {shape}.")
    if image_shape is not None and not _shape_matches(shape[1:], image_shape):
        hint = ""
        if _shape_matches((*shape[1:], 1), image_shape):
            hint = " Add the channel axis with `x[..., None]`."
        elif None not in image_shape and math.prod(shape[1:]) == math.prod(image_shape):
            hint = f" Reshape with `x.reshape(-1, {', '.join(map(str, image_shape))})`."
        raise ValueError(f"`{name}` must hold images of shape {tuple(image_shape)}, got batch shape {shape}.{hint}")
    if is_numpy:
        low, high = x.min(), x.max()  # NaN and infinities show in the minimum or maximum
        finite = bool(np.isfinite(low) and np.isfinite(high))
    else:  # a backend tensor: reduce it on its device rather than copy it
        low, high = ops.convert_to_numpy(ops.min(x)), ops.convert_to_numpy(ops.max(x))
        finite = not is_float or bool(ops.convert_to_numpy(ops.all(ops.isfinite(x))))
    if floats_only and not is_float:
        fix = "x.astype(\"float32\") / 255" if high > 1 else "x.astype(\"float32\")"
        low_end, high_end = value_range if value_range is not None else (0.0, 1.0)
        if (low_end, high_end) == (-1.0, 1.0) and high > 1:  # a tanh model's range
            fix = "x.astype(\"float32\") / 127.5 - 1"
        raise TypeError(f"`{name}` has dtype {dtype}; the model trains on floats in [{low_end:g}, {high_end:g}]: "
                        f"use `{fix}`.")
    if not finite:
        count = int(np.sum(~np.isfinite(ops.convert_to_numpy(x))))
        raise ValueError(f"`{name}` contains NaN or infinite values ({count} of {math.prod(shape)}); "
                         "remove those images or replace the values (`np.nan_to_num(x)`).")
    if value_range is not None and (low < value_range[0] or high > value_range[1]):
        raise ValueError(f"`{name}` values must lie in [{value_range[0]}, {value_range[1]}], "
                         f"got [{float(low):.4g}, {float(high):.4g}].{_range_hint(low, high, value_range)}")
    return x


def _shape_matches(shape, expected) -> bool:
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


def _range_hint(low, high, value_range) -> str:
    if tuple(value_range) == (-1.0, 1.0) and high > 1.5:  # a tanh model's range
        return " Scale 0-255 pixel values with `x / 127.5 - 1`."
    if tuple(value_range) != (0.0, 1.0):
        return ""
    if high > 1.5:
        return " Divide 0-255 pixel values by 255: `x / 255`."
    if low >= -1 and high <= 1:
        return " Map [-1, 1] images to [0, 1] with `(x + 1) / 2`."
    return ""


def check_batches(data, name: str = "x", image_shape=None, value_range=(0.0, 1.0)):
    """`check_images` for anything `fit` takes; returns `data`, ready to pass on.

    An array is checked in full (cheap next to an epoch). A `keras.utils.PyDataset`,
    `tf.data.Dataset`, generator or other iterable of batches is checked on its
    first batch (its inputs, for batches of (x, y)); a generator is returned as a new
    generator that still yields that first batch.
    """
    if hasattr(data, "shape") or isinstance(data, (list, np.ndarray)) or data is None:
        return check_images(data, name, image_shape, value_range)
    if isinstance(data, keras.utils.PyDataset):
        first = data[0]
    elif inspect.isgenerator(data):
        first = next(data, None)
        data = _generator_from(first, data)
    elif hasattr(data, "__iter__"):  # tf.data.Dataset, torch DataLoader
        first = next(iter(data), None)
    else:
        return check_images(data, name, image_shape, value_range)  # refuses it with a clear message
    if first is None:
        raise ValueError(f"`{name}` yields no batches.")
    inputs = first[0] if isinstance(first, (tuple, list)) else first
    try:
        check_images(inputs, name, image_shape, value_range)
    except (TypeError, ValueError) as error:
        raise type(error)(f"In the first batch: {error}") from None
    return data


def _generator_from(first, rest):
    yield first
    yield from rest


LIKELY_CAUSES = (
    "Likely causes: the learning rate is too high (try 10x smaller); inputs are not "
    "scaled to [0, 1] (divide 0-255 pixel values by 255); the data contain NaN or "
    "infinite values (check_images finds them)."
)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message says where and why."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first NaN or infinite loss and say where it happened.

    `VAE.fit` adds this callback itself; other models take it from `callbacks=`:

        model.fit(x, x, callbacks=[StopOnNonFiniteLoss()])

    At the start of each epoch it keeps a copy of the weights and the optimizer state
    (one copy per epoch: cheap next to the epoch). At the first non-finite value of
    `monitor` it asks `fit` to stop; at the end of that epoch it puts the copy back, so
    the model is as it was before the failing epoch instead of full of NaN, and then
    raises `NonFiniteLossError` (`raise_error=True`, the default) or warns and lets
    `fit` return (`raise_error=False`, with `self.message` set).
    """

    # Not `async_safe`: from a worker thread (JAX) the batch's loss array can already be
    # freed by the next step when it is read ("Array has been deleted"). The batch hook
    # only records where the loss went bad; `on_epoch_end` acts on it.

    def __init__(self, monitor: str = "loss", raise_error: bool = True, restore_weights: bool = True):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a metric name such as 'loss', got {monitor!r}.")
        self.monitor = monitor
        self.raise_error = bool(raise_error)
        self.restore_weights = bool(restore_weights)
        self.message: str | None = None
        self._saved = None
        self._epoch = 0
        self._failure: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.restore_weights:
            self._saved = [(variable, ops.convert_to_numpy(variable)) for variable in self._state_variables()]

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self._failure is None and value is not None and not math.isfinite(float(value)):
            # With steps_per_execution = n > 1 (the VAE's default on TensorFlow) Keras calls this
            # once every n batches, with the group's last index, which can lie past the epoch's end.
            steps_per_execution = getattr(self.model, "steps_per_execution", 1) or 1
            last = min(batch + 1, (self.params or {}).get("steps") or batch + 1)
            note = f" (checked every {steps_per_execution} batches)" if steps_per_execution > 1 else ""
            self._failure = f"became {float(value)} at epoch {self._epoch + 1}, batch {last}{note}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)  # `val_loss` is only seen here
        if self._failure is None and value is not None and not math.isfinite(float(value)):
            self._failure = f"became {float(value)} at the end of epoch {epoch + 1}"
        if self._failure is None:
            return
        restored = ""
        if self.restore_weights and self._saved is not None:
            for variable, value in self._saved:
                variable.assign(value)
            restored = f" The weights from the start of epoch {epoch + 1} have been restored."
        self.message = f"`{self.monitor}` {self._failure}; training stopped.{restored} {LIKELY_CAUSES}"
        self._failure = None
        self.model.stop_training = True
        if self.raise_error:
            raise NonFiniteLossError(self.message)
        warnings.warn(self.message, RuntimeWarning, stacklevel=2)

    def _state_variables(self) -> list:
        optimizer = getattr(self.model, "optimizer", None)
        return [*self.model.weights, *(optimizer.variables if optimizer is not None else [])]
