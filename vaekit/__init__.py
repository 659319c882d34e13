"""vaekit: Keras 3 autoencoders and variational autoencoders, one builder per model.

Where things are:

* `vaekit.vae`: the file to copy: `Sampling`, the likelihoods, the KL, `VAE` (its loss
  in `compute_loss`) and `Autoencoder`.
* `vaekit.guards`: the checks every model and builder runs (data, arguments, devices)
  and the stop at the first NaN loss; pasted above `vae.py` in a copy. The two import
  only Keras, NumPy, the standard library and each other.
* `vaekit.models`: one builder per architecture; `vaekit.conv_vae is vaekit.models.conv_vae`.
* `vaekit.cvae`: the conditional VAE (`ConditionalVAE`, `conditional_conv_vae`,
  `generate`), the file to copy with `guards.py` and `vae.py`.
* `vaekit.training`: `fit_resumable`, runs that survive a stop (one folder per run).
* `vaekit.runs`: which folder holds a run, and whether it is a finished run (shipped or fetched).
* `vaekit.on_device`: `fit_on_device`, one compiled program per epoch on JAX.
* `data`, `evaluate`, `plots`, `export`, `experiments` (a notebook's plumbing) do what
  their names say; `explorer.explore_latent` puts sliders over a latent code in a notebook.

All are imported with the package: `import vaekit` then `vaekit.data.load_mnist()`.
The encoder of every model is `model.get_layer("encoder")` (VAEs also have `.encoder`).
"""

from vaekit import (cvae, data, evaluate, experiments, explorer, export, guards, models, on_device, plots, runs, training,
                    vae)
from vaekit.cvae import ConditionalVAE, conditional_conv_vae
from vaekit.models import (conv_autoencoder, conv_vae, deterministic_autoencoder, fc_autoencoder, fc_vae,
                           fcn_autoencoder, strided_conv_autoencoder)
from vaekit.vae import VAE, Autoencoder, Sampling, kl_divergence, reconstruction_loss

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Autoencoder",
    "ConditionalVAE",
    "Sampling",
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
    "guards",
    "kl_divergence",
    "models",
    "on_device",
    "plots",
    "reconstruction_loss",
    "runs",
    "strided_conv_autoencoder",
    "training",
    "vae",
]
