"""Train Burda et al.'s VAE at their length, 3,280 epochs, resuming wherever it stopped.

The run takes hours on a CPU (3-5 s an epoch on one core of a 2-core machine), so it can
go on in the background, over several sittings: its folder under `runs/` holds the last
finished epoch in `checkpoint.npz` (weights and optimizer state) and `history.csv`, the
log of every finished epoch (committed). Notebook 08 trains the `paper` run through the same
folder, built by the same functions (`vaekit.training.burda_learning_rate`,
`vaekit.training.set_output_bias_to_mean`), so a run finished here is only loaded there, and a
run stopped in either goes on in the other.

    python scripts/burda_paper_length.py                     # the relu run (`notebook`)
    python scripts/burda_paper_length.py --settings paper    # Burda et al.'s own settings (notebook 08's run)
    python scripts/burda_paper_length.py --epochs 600        # stop after epoch 600 (extend later)

Two sets of settings, each in its own run folder:

* `notebook` (`runs/08_burda_vae_paper_length/`): 784-200-200-50 with ReLU, dynamically
  binarised MNIST, batch 100, Adam 1e-3 (Keras' defaults otherwise), random seed 0: notebook 08's
  earlier settings; the notebook now sets its committed records (`history.csv`,
  `figures/08_log_likelihood.csv`) beside the `paper` run.
* `paper` (`runs/08_burda_vae_paper_settings/`): Burda et al. (2016), section 5.1 and
  their published code: tanh units; Adam with beta_1 0.9, beta_2 0.999, epsilon 1e-4;
  batches of 20; 3^i passes at learning rate 0.001 * 10^(-i/7) for i = 0..7 (3,280
  epochs); the output layer's bias started at the logit of the training pixels' mean.

A run's `config.json` and `run.json` must match its settings: a changed setting trains in a
sibling folder of its own (`vaekit.training.fit_resumable`) rather than resuming this one.
"""

from __future__ import annotations

import argparse
import math
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # dense layers only: faster than TensorFlow on a CPU

import keras
import numpy as np

import vaekit
from vaekit import data, experiments, training

SEED = 0
LATENT_DIM = 50
HIDDEN_UNITS = (200, 200)
PAPER_EPOCHS = 3280
TRAIN_IMAGES = 60_000
SETTINGS = {
    "notebook": dict(run_name="08_burda_vae_paper_length", activation="relu", batch_size=100),
    "paper": dict(run_name="08_burda_vae_paper_settings", activation="tanh", batch_size=20),
}


def build(settings: str, x_train: np.ndarray) -> tuple[vaekit.VAE, dict]:
    """The compiled VAE of `settings` and the run's config."""
    chosen = SETTINGS[settings]
    vae = vaekit.fc_vae(latent_dim=LATENT_DIM, hidden_units=HIDDEN_UNITS, seed=SEED, activation=chosen["activation"])
    config = dict(latent_dim=LATENT_DIM, hidden_units=HIDDEN_UNITS, seed=SEED, batch_size=chosen["batch_size"],
                  learning_rate=1e-3, train_images=len(x_train))
    if settings == "notebook":
        vae.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3))
        return vae, config
    steps_per_epoch = math.ceil(len(x_train) / chosen["batch_size"])
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate=training.burda_learning_rate(steps_per_epoch),
                                                beta_1=0.9, beta_2=0.999, epsilon=1e-4))
    training.set_output_bias_to_mean(vae, x_train)  # sigmoid(bias) = the training images' mean pixel
    config.update(activation="tanh", learning_rate="0.001 * 10^(-i/7) for 3^i epochs, i = 0..7",
                  adam=dict(beta_1=0.9, beta_2=0.999, epsilon=1e-4), output_bias="logit of the training mean")
    return vae, config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="notebook",
                        help="the relu run, notebook 08's earlier settings (default), or Burda et al.'s own")
    parser.add_argument("--epochs", type=int, default=PAPER_EPOCHS,
                        help=f"train up to this epoch (default {PAPER_EPOCHS}, the paper's length)")
    parser.add_argument("--train-limit", type=int, default=None, help="training images (default: all 60,000)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")
    keras.utils.set_random_seed(SEED)
    (x_train, _), (x_test, _) = data.load_mnist(limit=args.train_limit)
    x_test_binary = data.binarize(x_test, seed=SEED)
    vae, config = build(args.settings, x_train)
    run_name = SETTINGS[args.settings]["run_name"]
    train_batches = data.DynamicBinarization(x_train, batch_size=config["batch_size"], seed=SEED)
    history = training.fit_resumable(vae, train_batches, run_dir=experiments.run_dir(run_name), config=config,
                                     epochs=args.epochs, validation_data=(x_test_binary,), verbose=0)
    print(f"{run_name}: {len(history['loss'])} of {PAPER_EPOCHS} epochs; last test negative ELBO "
          f"{history['val_loss'][-1]:.2f} nats (one sample)")


if __name__ == "__main__":
    main()
