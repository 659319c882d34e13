"""Training speed of the keras.io example's conv VAE: vaekit against the keras.io way of writing it.

Both models have the same layers, loss (summed BCE + KL, nats per image), optimiser
(Adam 1e-3), batch size (128) and data (MNIST, grey-level pixels in [0, 1]). They
train in one process, alternating epoch by epoch (and which goes first), so that a
busy machine slows both alike. The first epoch of each is reported but left out of
the averages, since it includes tracing and compilation.

The plain implementation is the keras.io example's: a `keras.Model` subclass with
three `Mean` trackers and a custom `train_step`, fed numpy arrays through `fit`. On
TensorFlow the step uses `tf.GradientTape` (as in examples/generative/vae.py); on JAX
it uses `stateless_call` and `jax.value_and_grad` (as in the guide "Customizing what
happens in fit() with JAX"). There is no plain baseline for PyTorch; vaekit is then
timed alone.

On JAX a third model, "vaekit-device", is the same vaekit model trained with
`vaekit.on_device.fit_on_device` (the whole epoch compiled into one program, the data on the
device), the path meant for GPUs.

    python benchmarks/train_speed.py --quick                  # a minute on a CPU
    KERAS_BACKEND=jax python benchmarks/train_speed.py        # full MNIST, on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import vaekit  # noqa: E402
from vaekit.data import load_mnist  # noqa: E402
from vaekit.evaluate import elbo  # noqa: E402

BATCH_SIZE = 128
LEARNING_RATE = 1e-3
LATENT_DIM = 2
SAMPLING_SEED = 1337  # keras.io's; giving vaekit the same one also keeps the initial weights equal
QUICK = {"epochs": 3, "train_limit": 2048, "test_limit": 512}
FULL = {"epochs": 10, "train_limit": 60_000, "test_limit": 10_000}


# --- The plain implementation, written as on keras.io ---------------------------------

class PlainSampling(layers.Layer):
    """keras.io's sampling layer: z = z_mean + exp(z_log_var / 2) * epsilon."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(SAMPLING_SEED)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def plain_encoder(latent_dim: int = LATENT_DIM) -> keras.Model:
    """keras.io's encoder, layer for layer."""
    encoder_inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = PlainSampling()([z_mean, z_log_var])
    return keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")


def plain_decoder(latent_dim: int = LATENT_DIM) -> keras.Model:
    """keras.io's decoder, layer for layer."""
    latent_inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(latent_inputs)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(latent_inputs, decoder_outputs, name="decoder")


def plain_losses(data, z_mean, z_log_var, reconstruction):
    """keras.io's loss: BCE summed over pixels plus the closed-form KL, batch means."""
    reconstruction_loss = ops.mean(ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
    kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
    kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
    return reconstruction_loss, kl_loss


class PlainVAE(keras.Model):
    """The keras.io VAE: encoder, decoder, three trackers; subclasses add `train_step`."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]


class PlainTensorFlowVAE(PlainVAE):
    """keras.io's `train_step` for TensorFlow, with `tf.GradientTape`."""

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss, kl_loss = plain_losses(data, z_mean, z_log_var, reconstruction)
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


class PlainJaxVAE(PlainVAE):
    """The keras.io JAX recipe: a pure loss of the variables, `jax.value_and_grad`, new state out."""

    def call(self, data, training=False):
        z_mean, z_log_var, z = self.encoder(data, training=training)
        return z_mean, z_log_var, self.decoder(z, training=training)

    def compute_loss_and_updates(self, trainable_variables, non_trainable_variables, data, training=False):
        # The sampling layer's seed is a non-trainable variable; stateless_call hands back its next value.
        (z_mean, z_log_var, reconstruction), non_trainable_variables = self.stateless_call(
            trainable_variables, non_trainable_variables, data, training=training)
        reconstruction_loss, kl_loss = plain_losses(data, z_mean, z_log_var, reconstruction)
        return reconstruction_loss + kl_loss, (reconstruction_loss, kl_loss, non_trainable_variables)

    def train_step(self, state, data):
        import jax

        trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables = state
        grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
        (total_loss, (reconstruction_loss, kl_loss, non_trainable_variables)), grads = grad_fn(
            trainable_variables, non_trainable_variables, data, training=True)
        trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable_variables)
        logs, new_metrics_variables = {}, []
        for tracker, value in zip(self.metrics, (total_loss, reconstruction_loss, kl_loss)):
            start = len(new_metrics_variables)
            variables = tracker.stateless_update_state(metrics_variables[start:start + len(tracker.variables)], value)
            logs[tracker.name] = tracker.stateless_result(variables)
            new_metrics_variables += variables
        return logs, (trainable_variables, non_trainable_variables, optimizer_variables, new_metrics_variables)


PLAIN_VAES = {"tensorflow": PlainTensorFlowVAE, "jax": PlainJaxVAE}


# --- The benchmark -------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, help=f"epochs per model, at least 2 (default {FULL['epochs']})")
    parser.add_argument("--train-limit", type=int, help="training images (default: all 60,000)")
    parser.add_argument("--test-limit", type=int, help="test images for the final loss (default: all 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, sampling and shuffling")
    parser.add_argument("--quick", action="store_true",
                        help=f"small run: {QUICK['train_limit']} train / {QUICK['test_limit']} test images, "
                             f"{QUICK['epochs']} epochs (explicit flags still win)")
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto",
                        help="vaekit's compile(jit_compile=...); the plain model keeps Keras' default")
    parser.add_argument("--steps-per-execution", type=int,
                        help="vaekit's compile(steps_per_execution=...) (default: vaekit's own, 32 on TensorFlow, "
                             "else 1); the plain model keeps 1")
    parser.add_argument("--data-dir", help="folder with mnist.npz (default: $VAEKIT_DATA_DIR, then keras.datasets)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch (compilation) is not timed")
    for name in ("train_limit", "test_limit", "steps_per_execution"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    return args


def build_vaekit(args) -> keras.Model:
    keras.utils.set_random_seed(args.seed)
    # A fixed sampling seed draws nothing from the global generator, so the decoder's
    # initial weights come out equal to the plain model's.
    model = vaekit.conv_vae(latent_dim=LATENT_DIM, seed=SAMPLING_SEED)
    jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    options = {} if args.steps_per_execution is None else {"steps_per_execution": args.steps_per_execution}
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), jit_compile=jit_compile, **options)
    return model


def build_plain(args) -> keras.Model | None:
    plain_class = PLAIN_VAES.get(keras.backend.backend())
    if plain_class is None:
        return None
    # Same seed as vaekit's model: the same layers in the same order get the same weights.
    keras.utils.set_random_seed(args.seed)
    model = plain_class(plain_encoder(), plain_decoder())
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    return model


def fit_epoch(model: keras.Model, x_train) -> None:
    model.fit(x_train, epochs=1, batch_size=BATCH_SIZE, shuffle=True, verbose=0)


def fit_on_device_epoch(model: keras.Model, x_train) -> None:
    vaekit.on_device.fit_on_device(model, x_train, epochs=1, batch_size=BATCH_SIZE, shuffle=True, verbose=0)


def time_epoch(train_one_epoch, model: keras.Model, x_train) -> float:
    start = time.perf_counter()
    train_one_epoch(model, x_train)
    return time.perf_counter() - start


def test_loss(model: keras.Model, x_test: np.ndarray, seed: int) -> float:
    """Negative ELBO in nats per image, through vaekit.evaluate for both models alike."""
    if not isinstance(model, vaekit.VAE):
        model = vaekit.VAE(model.encoder, model.decoder)
    keras.utils.set_random_seed(seed)
    return elbo(model, x_test)["negative_elbo"]


def describe_device() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return ", ".join(sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()}))
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"{len(gpus)} GPU(s)" if gpus else "CPU"
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def main(argv=None) -> dict:
    args = parse_args(argv)
    (x_train, _), (x_test, _) = load_mnist(args.data_dir, limit=max(args.train_limit, args.test_limit))
    x_train, x_test = x_train[:args.train_limit], x_test[:args.test_limit]
    # name -> (model, how it trains one epoch, its training data)
    trainers = {"vaekit": (build_vaekit(args), fit_epoch, x_train)}
    plain = build_plain(args)
    if plain is not None:
        trainers["plain"] = (plain, fit_epoch, x_train)
    if keras.backend.backend() == "jax":
        import jax

        # Copied to the device once, as a user calling fit_on_device once per epoch would.
        trainers["vaekit-device"] = (build_vaekit(args), fit_on_device_epoch, jax.device_put(x_train))
    print(f"backend {keras.backend.backend()} on {describe_device()}; {len(x_train)} train / {len(x_test)} test "
          f"images, batch {BATCH_SIZE}, {args.epochs} epochs, seed {args.seed}; vaekit compile: "
          f"jit_compile={args.jit_compile}, steps_per_execution={trainers['vaekit'][0].steps_per_execution}")
    if plain is None:
        print(f"no plain baseline for the {keras.backend.backend()} backend: timing vaekit alone")

    seconds = {name: [] for name in trainers}
    print("epoch  " + "  ".join(f"{name:>13}" for name in trainers))
    for epoch in range(args.epochs):
        # Alternate who goes first, so none always runs on a warmer (or busier) machine.
        for name in (list(trainers) if epoch % 2 == 0 else reversed(list(trainers))):
            model, train_one_epoch, data = trainers[name]
            seconds[name].append(time_epoch(train_one_epoch, model, data))
        note = "  (includes compilation, not counted)" if epoch == 0 else ""
        print(f"{epoch + 1:5d}  " + "  ".join(f"{seconds[name][-1]:12.3f}s" for name in trainers) + note)

    results = {name: {"seconds_per_epoch": statistics.median(values[1:]),
                      "test_loss": test_loss(trainers[name][0], x_test, args.seed)}
               for name, values in seconds.items()}
    for name, result in results.items():
        print(f"{name}: {result['seconds_per_epoch']:.3f} s/epoch (median of epochs 2-{args.epochs}), "
              f"test loss {result['test_loss']:.2f} nats/image (negative ELBO)")
    if plain is not None:
        for name in (name for name in results if name != "plain"):
            ratio = results[name]["seconds_per_epoch"] / results["plain"]["seconds_per_epoch"]
            print(f"ratio {name}/plain: {ratio:.3f} (below 1 means {name} is faster)")
    return results


if __name__ == "__main__":
    main()
