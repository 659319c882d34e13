"""Train notebook 08's VAE at Burda et al.'s length, 3,280 epochs, resuming wherever it stopped.

The run takes hours on a CPU (3-5 s an epoch on one core of a 2-core machine), so it can
go on in the background, over several sittings: its folder,
`runs/08_burda_vae_paper_length/`, holds the last finished epoch in `checkpoint.npz`
(weights and optimizer state, about 7 MB, not committed) and `history.csv`, the log of
every finished epoch (committed). Notebook 08 trains through the same folder, so a run
finished here is only loaded there, and a run stopped in either goes on in the other.

    python scripts/burda_paper_length.py              # go on from the last finished epoch
    python scripts/burda_paper_length.py --epochs 600 # stop after epoch 600 (extend later)

The model, data and training settings are notebook 08's (Burda et al. 2016: 784-200-200-50,
dynamically binarised MNIST, batch 100, Adam 1e-3, random seed 0); the run's `config.json`
must match them, so a changed setting is refused rather than resumed.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # dense layers only: faster than TensorFlow on a CPU

import keras

import vaekit
from vaekit import data, experiments, training

SEED = 0
LATENT_DIM = 50
HIDDEN_UNITS = (200, 200)
PAPER_EPOCHS = 3280
BATCH_SIZE = 100
LEARNING_RATE = 1e-3
RUN_NAME = "08_burda_vae_paper_length"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=PAPER_EPOCHS,
                        help=f"train up to this epoch (default {PAPER_EPOCHS}, the paper's length)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(SEED)
    (x_train, _), (x_test, _) = data.load_mnist()
    x_test_binary = data.binarize(x_test, seed=SEED)
    train_batches = data.DynamicBinarization(x_train, batch_size=BATCH_SIZE, seed=SEED)
    vae = vaekit.fc_vae(latent_dim=LATENT_DIM, hidden_units=HIDDEN_UNITS, seed=SEED)
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE))
    config = dict(latent_dim=LATENT_DIM, hidden_units=HIDDEN_UNITS, seed=SEED, batch_size=BATCH_SIZE,
                  learning_rate=LEARNING_RATE, train_images=len(x_train))
    history = training.fit_resumable(vae, train_batches, run_dir=experiments.run_dir(RUN_NAME), config=config,
                                     epochs=args.epochs, validation_data=(x_test_binary,), verbose=0)
    print(f"{RUN_NAME}: {len(history['loss'])} of {PAPER_EPOCHS} epochs; last test negative ELBO "
          f"{history['val_loss'][-1]:.2f} nats (one sample)")


if __name__ == "__main__":
    main()
