"""vaekit: Keras 3 autoencoders and variational autoencoders, one builder per model.

Where things are:

* `vaekit.vae`: the model, the file to copy (`Sampling`, the likelihoods, the KL,
  `VAE` with `compute_loss`); it imports only Keras.
* `vaekit.models`: one builder per architecture, plain Keras functions.
* `vaekit.cvae`: the conditional VAE (`ConditionalVAE`, `conditional_conv_vae`,
  `generate`), the file to copy with `vae.py`.
* `vaekit.training`: how vaekit trains: `VAE` with its data checks and NaN stop,
  `fit_resumable` (runs that survive a stop), `fit_on_device` (a JAX fast path).
* `vaekit.autoencoder`: `Autoencoder`, the checked model vaekit's autoencoder builders return.
* `vaekit.checks`: the argument and data checks; `data`, `evaluate`, `plots`,
  `export`, `experiments` (a notebook's plumbing) do what their names say;
  `explorer.explore_latent` puts sliders over a latent code in a notebook.

All are imported with the package: `import vaekit` then `vaekit.data.load_mnist()`.
The encoder of every model is `model.get_layer("encoder")` (VAEs also have `.encoder`).
"""

from vaekit import (autoencoder, checks, cvae, data, evaluate, experiments, explorer, export, models, plots,
                    training, vae)
from vaekit.autoencoder import checking_data
from vaekit.training import VAE, ConditionalVAE
from vaekit.vae import Sampling, kl_divergence, reconstruction_loss

# The builders as vaekit exports them: `vaekit.models`' plain functions, each called with
# its arguments checked first (`vaekit.checks.builder_arguments`), so that a wrong size
# is named before anything is built; an autoencoder comes back as an `Autoencoder`
# (the same layers), whose `fit`, `evaluate` and `predict` check the data in the range of
# its output layer (sigmoid: [0, 1], tanh: [-1, 1]). A copied builder leaves all that to Keras.
conv_autoencoder = checks.checked(checking_data(models.conv_autoencoder, (0.0, 1.0)))
conv_vae = checks.checked(models.conv_vae)
# The conditional VAE's builder is `vaekit.cvae`'s, returning vaekit's guarded class.
conditional_conv_vae = checks.checked(training.with_checks(cvae.conditional_conv_vae))
deterministic_autoencoder = checks.checked(checking_data(models.deterministic_autoencoder, (0.0, 1.0)))
fc_autoencoder = checks.checked(checking_data(models.fc_autoencoder, (0.0, 1.0)))
fc_vae = checks.checked(models.fc_vae)
fcn_autoencoder = checks.checked(checking_data(models.fcn_autoencoder, (-1.0, 1.0)))
strided_conv_autoencoder = checks.checked(checking_data(models.strided_conv_autoencoder, (-1.0, 1.0)))

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "ConditionalVAE",
    "Sampling",
    "autoencoder",
    "checks",
    "conditional_conv_vae",
    "conv_autoencoder",
    "conv_vae",
    "cvae",
    "data",
    "deterministic_autoencoder",
    "evaluate",
    "experiments",
    "explorer",
    "export",
    "fc_autoencoder",
    "fc_vae",
    "fcn_autoencoder",
    "kl_divergence",
    "models",
    "plots",
    "reconstruction_loss",
    "strided_conv_autoencoder",
    "training",
    "vae",
]
