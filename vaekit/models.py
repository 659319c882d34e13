"""Model builders: one function per architecture in the source documents.

Every builder takes images shaped `input_shape` (flattening inside where the source's
network is fully connected) and returns a named, uncompiled model whose output has the
input's shape: a `VAE` (`latent_dim` first, then `beta` and `reconstruction`) or an
`Autoencoder` (`input_shape` first). Each checks its arguments in one block at its top,
so a wrong size is named (the argument, what was given, what is allowed) before
anything is built; the models check their data in `fit`, `evaluate` and `predict`.

**The encoder of any model** is `model.get_layer("encoder")` (x -> code; for a VAE,
x -> (z_mean, z_log_var, z)) and its decoder `model.get_layer("decoder")`; a VAE also
has them as `vae.encoder` and `vae.decoder`.

**Copying a builder.** `vaekit.conv_vae` is `vaekit.models.conv_vae`: paste
`vaekit/guards.py`, `vaekit/vae.py` and one builder into a file of your own (without
their `from vaekit... import` lines) and it builds, checks and trains exactly as in vaekit.
"""

from __future__ import annotations

import keras

from vaekit.guards import check_image_shape, check_positive_int, check_positive_ints, check_seed
from vaekit.vae import VAE, Autoencoder, Sampling, is_functional


def conv_autoencoder(input_shape=(28, 28, 1), filters: int = 32) -> Autoencoder:
    """The AE-vs-VAE report's convolutional autoencoder (MaxPool down, UpSampling up).

    Encoder Conv(32)-Pool-Conv(32)-Pool to a 7x7x32 code, decoder Conv(32)-Up-Conv(32)-Up
    -Conv(1, sigmoid); 3x3 kernels, ReLU, "same" padding. 28,353 parameters by default.
    Train with binary cross-entropy, Adam, batch 256, 10 epochs.
    """
    input_shape = check_image_shape("input_shape", input_shape, divisible_by=4)  # two 2x poolings
    filters = check_positive_int("filters", filters)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(filters, 3, activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    code = keras.layers.MaxPooling2D(2)(x)
    encoder = keras.Model(inputs, code, name="encoder")

    code_inputs = keras.Input(shape=code.shape[1:])
    x = keras.layers.Conv2D(filters, 3, activation="relu", padding="same")(code_inputs)
    x = keras.layers.UpSampling2D(2)(x)
    x = keras.layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    x = keras.layers.UpSampling2D(2)(x)
    outputs = keras.layers.Conv2D(input_shape[-1], 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(code_inputs, outputs, name="decoder")

    return Autoencoder(inputs, decoder(encoder(inputs)), value_range=(0.0, 1.0), name="conv_autoencoder")


def conv_vae(latent_dim: int = 2, hidden_units: int = 16, input_shape=(28, 28, 1), filters=(32, 64),
             seed: int | None = None, beta: float = 1.0, reconstruction: str = "bce") -> VAE:
    """The AE-vs-VAE report's convolutional VAE, the keras.io example's architecture.

    Encoder Conv(32, s2)-Conv(64, s2)-Flatten-Dense(hidden_units)-(z_mean, z_log_var)-Sampling;
    decoder Dense(7*7*64)-Reshape-ConvT(64, s2)-ConvT(32, s2)-ConvT(channels, sigmoid).
    Defaults give 69,076 + 65,089 = 134,165 parameters. `hidden_units=128` is the ablation study's
    ablation model; `input_shape=(32, 32, 3), hidden_units=1024, latent_dim=200` is
    the CNN-VAE report's SVHN model. `beta` and `reconstruction` go to `VAE`.
    Train with Adam 1e-3, batch 128, 20 epochs.
    """
    filters = check_positive_ints("filters", filters)
    height, width, channels = check_image_shape("input_shape", input_shape, divisible_by=2 ** len(filters))
    latent_dim, hidden_units = check_positive_int("latent_dim", latent_dim), check_positive_int("hidden_units", hidden_units)
    seed = check_seed("seed", seed)
    inputs = keras.Input(shape=(height, width, channels))
    x = inputs
    for n in filters:
        x = keras.layers.Conv2D(n, 3, strides=2, activation="relu", padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(hidden_units, activation="relu")(x)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")

    scale = 2 ** len(filters)  # each strided convolution halves the height and width
    latent_inputs = keras.Input(shape=(latent_dim,))
    x = keras.layers.Dense((height // scale) * (width // scale) * filters[-1], activation="relu")(latent_inputs)
    x = keras.layers.Reshape((height // scale, width // scale, filters[-1]))(x)
    for n in reversed(filters):
        x = keras.layers.Conv2DTranspose(n, 3, strides=2, activation="relu", padding="same")(x)
    outputs = keras.layers.Conv2DTranspose(channels, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(latent_inputs, outputs, name="decoder")

    return VAE(encoder, decoder, beta=beta, reconstruction=reconstruction, name="conv_vae")


def deterministic_autoencoder(vae: VAE, name: str = "deterministic_autoencoder") -> Autoencoder:
    """A VAE's own layers as a plain autoencoder: x -> z_mean -> decoder, no sampling, no KL.

    The like-for-like baseline of the ablation study: compile it with `reconstruction_loss` and the
    same optimizer, and the only difference from the VAE is the noise and the KL term.
    The layers are shared with `vae`, not copied. The log-variance head is left out, so
    the optimizer does not look for gradients it can never have. `vae.encoder` must be
    a functional model whose first output is z_mean, as every vaekit VAE's is.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"`vae` must be a VAE (from conv_vae or fc_vae), got {type(vae).__name__}.")
    if not is_functional(vae.encoder):
        raise TypeError("`vae.encoder` must be a functional keras.Model (one whose first output is z_mean); "
                        f"got a subclassed {type(vae.encoder).__name__}.")
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string, got {name!r}.")
    mean_encoder = keras.Model(vae.encoder.inputs, vae.encoder.outputs[0], name="encoder")
    inputs = keras.Input(shape=vae.encoder.input_shape[1:])
    return Autoencoder(inputs, vae.decoder(mean_encoder(inputs)), value_range=(0.0, 1.0), name=name)


def fc_autoencoder(input_shape=(28, 28, 1), hidden_units=(144, 72), latent_dim: int = 48) -> Autoencoder:
    """The tutorial's fully connected autoencoder (the Keras one).

    784-144(relu)-72(relu)-48(tanh) and back 72(tanh)-144(tanh)-784(sigmoid);
    254,704 parameters by default. Train with MSE, Adam 1.5e-3, batch 300, 12 epochs.
    """
    height, width, channels = input_shape = check_image_shape("input_shape", input_shape)
    hidden_units, latent_dim = check_positive_ints("hidden_units", hidden_units), check_positive_int("latent_dim", latent_dim)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    code = keras.layers.Dense(latent_dim, activation="tanh")(x)
    encoder = keras.Model(inputs, code, name="encoder")

    code_inputs = keras.Input(shape=(latent_dim,))
    x = code_inputs
    for units in reversed(hidden_units):
        x = keras.layers.Dense(units, activation="tanh")(x)
    x = keras.layers.Dense(height * width * channels, activation="sigmoid")(x)
    decoder = keras.Model(code_inputs, keras.layers.Reshape(input_shape)(x), name="decoder")

    return Autoencoder(inputs, decoder(encoder(inputs)), value_range=(0.0, 1.0), name="fc_autoencoder")


def fcn_autoencoder(input_shape=(64, 64, 3), hidden_units=(1024, 256), latent_dim: int = 64) -> Autoencoder:
    """The tutorial's PyTorch `fcn_autoencoder` for 64x64x3 images in [-1, 1], in Keras.

    12288-1024-256-64 (ReLU throughout, the code included) and back 256-1024-12288 (tanh);
    25,737,792 parameters by default. The reconstruction error is the anomaly score.
    """
    height, width, channels = input_shape = check_image_shape("input_shape", input_shape)
    hidden_units, latent_dim = check_positive_ints("hidden_units", hidden_units), check_positive_int("latent_dim", latent_dim)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for units in (*hidden_units, latent_dim):
        x = keras.layers.Dense(units, activation="relu")(x)
    encoder = keras.Model(inputs, x, name="encoder")

    code_inputs = keras.Input(shape=(latent_dim,))
    x = code_inputs
    for units in reversed(hidden_units):
        x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dense(height * width * channels, activation="tanh")(x)
    decoder = keras.Model(code_inputs, keras.layers.Reshape(input_shape)(x), name="decoder")

    return Autoencoder(inputs, decoder(encoder(inputs)), value_range=(-1.0, 1.0), name="fcn_autoencoder")


def strided_conv_autoencoder(input_shape=(64, 64, 3), filters=(12, 24, 48)) -> Autoencoder:
    """The tutorial's PyTorch `conv_autoencoder` for 64x64x3 images in [-1, 1], in Keras.

    Conv(12, 4, s2)-Conv(24, 4, s2)-Conv(48, 4, s2) down to 8x8x48, mirrored transposed
    convolutions up, ReLU, tanh output; 47,355 parameters by default. PyTorch's
    padding=1 with kernel 4 and stride 2 is Keras' "same".
    """
    filters = check_positive_ints("filters", filters)
    input_shape = check_image_shape("input_shape", input_shape, divisible_by=2 ** len(filters))
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for n in filters:
        x = keras.layers.Conv2D(n, 4, strides=2, activation="relu", padding="same")(x)
    encoder = keras.Model(inputs, x, name="encoder")

    code_inputs = keras.Input(shape=x.shape[1:])
    x = code_inputs
    for n in reversed(filters[:-1]):
        x = keras.layers.Conv2DTranspose(n, 4, strides=2, activation="relu", padding="same")(x)
    outputs = keras.layers.Conv2DTranspose(input_shape[-1], 4, strides=2, activation="tanh", padding="same")(x)
    decoder = keras.Model(code_inputs, outputs, name="decoder")

    return Autoencoder(inputs, decoder(encoder(inputs)), value_range=(-1.0, 1.0), name="strided_conv_autoencoder")


def fc_vae(latent_dim: int = 20, hidden_units: int | tuple[int, ...] = 400, input_shape=(28, 28, 1),
           seed: int | None = None, beta: float = 1.0, reconstruction: str = "bce", kl_warmup_steps: int = 0,
           free_bits: float = 0.0, activation: str = "relu") -> VAE:
    """The MSE-vs-KL project's fully connected VAE.

    Encoder 784-hidden_units(relu)-(z_mean, z_log_var); decoder latent-hidden_units(relu)
    -784(sigmoid). The project leaves the sizes open; the defaults (400, 20) are those of
    PyTorch's examples/vae, 652,824 parameters. The project trains with
    `reconstruction="mse"`, once with `beta=0` (an autoencoder) and once with `beta=1`;
    Adam 1e-3, batch 128, 50 epochs.

    `hidden_units` may be a sequence, one Dense layer each, mirrored in the decoder:
    `fc_vae(latent_dim=50, hidden_units=(200, 200))` is the one-stochastic-layer VAE of
    Burda et al. (2016), the usual baseline for binarised-MNIST likelihoods (notebook 08).
    `kl_warmup_steps` and `free_bits` are `VAE`'s two KL schedules, off by default (notebook 12).
    `activation` is the hidden layers' (Burda et al. use "tanh").
    """
    height, width, channels = input_shape = check_image_shape("input_shape", input_shape)
    hidden_units, latent_dim = check_positive_ints("hidden_units", hidden_units), check_positive_int("latent_dim", latent_dim)
    seed = check_seed("seed", seed)
    try:
        keras.activations.get(activation)
    except ValueError:
        raise ValueError(f"`activation` must be a Keras activation such as 'relu' or 'tanh', got {activation!r}.") from None
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for units in hidden_units:
        x = keras.layers.Dense(units, activation=activation)(x)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")

    latent_inputs = keras.Input(shape=(latent_dim,))
    x = latent_inputs
    for units in reversed(hidden_units):
        x = keras.layers.Dense(units, activation=activation)(x)
    x = keras.layers.Dense(height * width * channels, activation="sigmoid")(x)
    decoder = keras.Model(latent_inputs, keras.layers.Reshape(input_shape)(x), name="decoder")

    return VAE(encoder, decoder, beta=beta, reconstruction=reconstruction, kl_warmup_steps=kl_warmup_steps,
               free_bits=free_bits, name="fc_vae")
