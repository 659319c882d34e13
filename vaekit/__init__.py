"""vaekit: Keras 3 autoencoders and variational autoencoders, one builder per model.

The model code is in two files: `vaekit.vae` (the `Sampling` layer, the loss and
the `VAE` class with its training step) and `vaekit.models` (one builder per
architecture). `vaekit.training.fit_on_device` is `fit` with a whole epoch compiled
into one program on JAX (for GPUs). Data loading, plots, export, evaluation and experiment helpers
live in their own modules, all imported with the package: `import vaekit` then
`vaekit.data.load_mnist()`.

The encoder of every model is `model.get_layer("encoder")` (VAEs also have `.encoder`).
"""

from vaekit import autoencoder, callbacks, data, evaluate, experiments, export, models, plots, training, vae
from vaekit.models import (
    conv_autoencoder,
    conv_vae,
    deterministic_autoencoder,
    fc_autoencoder,
    fc_vae,
    fcn_autoencoder,
    strided_conv_autoencoder,
)
from vaekit.training import fit_on_device
from vaekit.vae import VAE, Sampling, kl_divergence, reconstruction_loss

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Sampling",
    "autoencoder",
    "callbacks",
    "conv_autoencoder",
    "conv_vae",
    "data",
    "deterministic_autoencoder",
    "evaluate",
    "experiments",
    "export",
    "fc_autoencoder",
    "fc_vae",
    "fcn_autoencoder",
    "fit_on_device",
    "kl_divergence",
    "models",
    "plots",
    "reconstruction_loss",
    "strided_conv_autoencoder",
    "training",
    "vae",
]
