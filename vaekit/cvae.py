"""The conditional VAE ("draw me a 7"): the VAE of `vae.py`, told the class of each image.

The encoder sees the image and its label, q(z | x, y); the decoder draws from the code
and the label, p(x | z, y). Because the label already says which digit it is, z is free
to hold what the label does not: slant, stroke width, style. Then

* `ConditionalVAE` is `vae.VAE` whose inputs are `(images, labels)`; its loss is the same
  reconstruction + beta * KL, computed by the same `VAE.compute_loss`,
* `conditional_conv_vae` builds one with the architecture of `vaekit.models.conv_vae`,
  the one-hot label joined to the encoder's dense input and to the decoder's z,
* `generate(model, labels, z)` draws every label with every code: one row per class,
  one column per code, the same code (the same "style") across a column.

Train it with `model.fit(x=(images, labels))` (or `x={"images": ..., "labels": ...}`),
labels being integer classes 0..num_classes - 1. The file imports only Keras, NumPy, the
standard library, `guards.py` and `vae.py`: to use it without vaekit, paste `guards.py`,
`vae.py` and this file below each other, without their `from vaekit... import` statements.
Its `fit`, `evaluate` and `predict` check the images as `VAE`'s do and the labels with
`check_labels`.
"""

import numbers

import keras
import numpy as np
from keras import ops

from vaekit.guards import (PIXEL_RANGE, check_batches, check_image_shape, check_labels, check_positive_int,
                           check_positive_ints, check_seed)
from vaekit.vae import VAE, Sampling, is_functional


@keras.saving.register_keras_serializable(package="vaekit")
class ConditionalVAE(VAE):
    """A VAE whose encoder takes (images, one-hot labels) and decoder (z, one-hot labels).

    Inputs are `(images, labels)` or `{"images": ..., "labels": ...}`, labels being
    integer classes of shape (n,) or (n, 1); the model one-hot encodes them for its two
    parts. Calling it returns the same dict as `VAE`, and `compute_loss` is `VAE`'s,
    given the images: reconstruction_loss(x, x_hat) + beta * KL(q(z|x, y) || N(0, I)).
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, num_classes: int, **kwargs):
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise ValueError(f"`num_classes` must be an integer >= 1, got {num_classes!r}.")
        for name, part in (("encoder", encoder), ("decoder", decoder)):
            if is_functional(part) and (len(part.inputs) != 2 or part.inputs[1].shape[-1] != num_classes):
                raise ValueError(f"`{name}` must take two inputs, the second a one-hot label of {num_classes} "
                                 f"classes; it takes {[tuple(i.shape[1:]) for i in part.inputs]}.")
        super().__init__(encoder, decoder, **kwargs)
        self.num_classes = int(num_classes)

    def call(self, inputs, training=False):
        images, one_hot = self.split_inputs(inputs)
        z_mean, z_log_var, z = self.encoder([images, one_hot], training=training)
        reconstruction = self.decoder([z, one_hot], training=training)
        return {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var, "z": z}

    def split_inputs(self, inputs):
        """(images, one-hot labels) from the model's inputs, a tuple or a dict."""
        if isinstance(inputs, dict):
            inputs = (inputs["images"], inputs["labels"])
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise TypeError("A ConditionalVAE takes (images, labels) or {'images': ..., 'labels': ...}, "
                            f"got {type(inputs).__name__}; train with `fit(x=(images, labels))`.")
        images, labels = inputs
        # As tensors, like the one-hot labels: Keras refuses a call on a mix of arrays and tensors.
        return ops.convert_to_tensor(images, dtype=self.compute_dtype), self.one_hot(labels)

    def one_hot(self, labels):
        """Integer class labels, shape (n,) or (n, 1), as one-hot float rows (n, num_classes)."""
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return ops.one_hot(labels, self.num_classes, dtype=self.compute_dtype)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images = x["images"] if isinstance(x, dict) else x[0]
        return super().compute_loss(images, y, y_pred, sample_weight, training)

    def decode(self, z, labels=None):
        """The decoder's mean image for codes `z` drawn as classes `labels` (one per code), as a tensor."""
        if labels is None:
            raise TypeError("A ConditionalVAE decodes a code together with a label: `model.decode(z, labels)`, "
                            "or `generate(model, labels, z)` for every label with every code.")
        return super().decode([ops.convert_to_tensor(z, dtype=self.compute_dtype), self.one_hot(labels)])

    def data_shape(self):
        """The shape of one image, the encoder's first input (None where a subclassed encoder has not told it)."""
        return tuple(self.encoder.input_shape[0][1:]) if is_functional(self.encoder) else None

    def check_data(self, x, validation_data=None):
        """Check `(images, labels)` as `fit` does; returns (x, validation_data). A dataset passes unchecked."""
        x = self._checked_inputs("x", x)
        if isinstance(validation_data, (tuple, list)):  # ((images, labels),) as Keras reads it
            validation_data = (self._checked_inputs("validation_data[0]", validation_data[0]), *validation_data[1:])
        return x, validation_data

    def _checked_inputs(self, name: str, inputs):
        if not (isinstance(inputs, (dict, tuple, list)) or hasattr(inputs, "shape") or inputs is None):
            return inputs  # a dataset or generator: Keras reads it batch by batch
        names, (images, labels) = image_label_pair(
            name, inputs, fix="`fit(x=(images, labels), validation_data=((val_images, val_labels),))`.")
        images = check_batches(names[0], images, PIXEL_RANGE, self.data_shape())
        labels = check_labels(names[1], labels, self.num_classes, length=len(images))
        # A tuple, never a list: Keras would read [images, labels] as x=images, y=labels.
        return {"images": images, "labels": labels} if isinstance(inputs, dict) else (images, labels)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def image_label_pair(name: str, inputs, fix: str):
    """A ConditionalVAE's `x`, (images, labels) or {"images": ..., "labels": ...}, split for checking.

    Returns ((images_name, labels_name), (images, labels)), the names as an error should
    show them (`x[0]`, `x['labels']`...). Anything else raises TypeError naming `name` and
    ending with `fix`, the call that would work.
    """
    if isinstance(inputs, dict):
        missing = {"images", "labels"} - set(inputs)
        if missing:
            raise ValueError(f"`{name}` must have the keys 'images' and 'labels'; it lacks {sorted(missing)}.")
        return (f"{name}['images']", f"{name}['labels']"), (inputs["images"], inputs["labels"])
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        return (f"{name}[0]", f"{name}[1]"), tuple(inputs)
    raise TypeError(f"`{name}` of a ConditionalVAE must be (images, labels) or {{'images': ..., 'labels': ...}}, "
                    f"got {type(inputs).__name__}: {fix}")


def conditional_conv_vae(num_classes: int = 10, latent_dim: int = 2, hidden_units: int = 16,
                         input_shape=(28, 28, 1), filters=(32, 64), seed: int | None = None,
                         beta: float = 1.0, reconstruction: str = "bce") -> ConditionalVAE:
    """`conv_vae`'s network, conditioned on the class: the one-hot label joins both halves.

    Encoder Conv(32, s2)-Conv(64, s2)-Flatten, joined with the one-hot label, then
    Dense(hidden_units)-(z_mean, z_log_var)-Sampling; decoder [z, label]-Dense(7*7*64)
    -Reshape-ConvT(64, s2)-ConvT(32, s2)-ConvT(channels, sigmoid). The defaults add
    10 * 16 + 10 * 3136 weights to conv_vae's 134,165: 165,685 parameters.
    """
    num_classes, filters = check_positive_int("num_classes", num_classes), check_positive_ints("filters", filters)
    height, width, channels = check_image_shape("input_shape", input_shape, divisible_by=2 ** len(filters))
    latent_dim, hidden_units = check_positive_int("latent_dim", latent_dim), check_positive_int("hidden_units", hidden_units)
    seed = check_seed("seed", seed)
    images = keras.Input(shape=(height, width, channels))
    labels = keras.Input(shape=(num_classes,))
    x = images
    for n in filters:
        x = keras.layers.Conv2D(n, 3, strides=2, activation="relu", padding="same")(x)
    x = keras.layers.Concatenate()([keras.layers.Flatten()(x), labels])
    x = keras.layers.Dense(hidden_units, activation="relu")(x)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    encoder = keras.Model([images, labels], [z_mean, z_log_var, z], name="encoder")

    scale = 2 ** len(filters)  # each strided convolution halves the height and width
    latent_inputs, label_inputs = keras.Input(shape=(latent_dim,)), keras.Input(shape=(num_classes,))
    x = keras.layers.Concatenate()([latent_inputs, label_inputs])
    x = keras.layers.Dense((height // scale) * (width // scale) * filters[-1], activation="relu")(x)
    x = keras.layers.Reshape((height // scale, width // scale, filters[-1]))(x)
    for n in reversed(filters):
        x = keras.layers.Conv2DTranspose(n, 3, strides=2, activation="relu", padding="same")(x)
    outputs = keras.layers.Conv2DTranspose(channels, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model([latent_inputs, label_inputs], outputs, name="decoder")

    return ConditionalVAE(encoder, decoder, num_classes=num_classes, beta=beta, reconstruction=reconstruction,
                          name="conditional_conv_vae")


def generate(model: ConditionalVAE, labels, z=None, num_codes: int = 8, seed: int | None = None) -> np.ndarray:
    """Draw every label in `labels` with every code in `z`: images (len(labels), len(z), h, w, c).

    Row r holds class labels[r], column c code z[c], so a column shows one "style" in
    every class. `z` (shape (k, latent_dim)) defaults to `num_codes` draws from the prior
    N(0, I) (`seed` makes them repeatable); pass encoded images' `z_mean` to redraw
    their style as other classes. Images are the decoder's means (`VAE.decode`).

        generate(model, range(10), num_codes=8)   # a grid: one row per digit
        generate(model, [7])[0]                   # eight 7s
    """
    labels = check_labels("labels", labels, model.num_classes)
    seed = check_seed("seed", seed)
    latent_dim = model.decoder.inputs[0].shape[-1] if is_functional(model.decoder) else None
    if z is None:
        num_codes = check_positive_int("num_codes", num_codes)
        z = np.random.default_rng(seed).standard_normal((num_codes, latent_dim)).astype("float32")
    z = np.asarray(z, dtype="float32")
    if z.ndim != 2 or (latent_dim is not None and z.shape[1] != latent_dim):
        raise ValueError(f"`z` must have shape (k, {latent_dim}), one code per column, got {z.shape}.")
    # Every (label, code) pair, label-major, decoded as one batch.
    images = model.decode(np.tile(z, (len(labels), 1)), np.repeat(labels, len(z)))
    images = ops.convert_to_numpy(images)
    return images.reshape(len(labels), len(z), *images.shape[1:])

