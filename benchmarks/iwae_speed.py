"""How long `vaekit.evaluate.iwae_nll` takes: the k = 5000 log-likelihood on 10,000 test images.

The model is notebook 08's, Burda et al.'s one-stochastic-layer VAE
(`fc_vae(latent_dim=50, hidden_units=(200, 200))`), or the keras.io example's conv VAE with
`--model conv`; the time does not depend on the weights, so it is not trained. The
test images are binarised, as for a published log-likelihood. The first call compiles;
the script times a warm-up on one batch apart from the full run.

    python benchmarks/iwae_speed.py --k 50 --test-limit 200     # seconds on a CPU
    KERAS_BACKEND=jax python benchmarks/iwae_speed.py           # k = 5000 on 10,000 images, on a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import vaekit  # noqa: E402
from vaekit.data import binarize, load_mnist  # noqa: E402
from vaekit.evaluate import iwae_nll  # noqa: E402

MODELS = {"burda": "fc_vae(latent_dim=50, hidden_units=(200, 200))", "conv": "conv_vae()"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="burda", help="which VAE (default: %(default)s)")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image (default %(default)s)")
    parser.add_argument("--test-limit", type=int, default=10_000, help="test images (default: all %(default)s)")
    parser.add_argument("--batch-size", type=int, default=100, help="images per batch, as in iwae_nll (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", help="also append the result to this file as a Markdown table")
    parser.add_argument("--data-dir", help="folder with mnist.npz (default: $VAEKIT_DATA_DIR, then keras.datasets)")
    args = parser.parse_args(argv)
    for name in ("k", "test_limit", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    _, (x_test, _) = load_mnist(args.data_dir, limit=args.test_limit)
    x_test = binarize(x_test[:args.test_limit], seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    vae = (vaekit.fc_vae(latent_dim=50, hidden_units=(200, 200), seed=args.seed) if args.model == "burda"
           else vaekit.conv_vae(seed=args.seed))
    batch_size = min(args.batch_size, len(x_test))
    start = time.perf_counter()
    iwae_nll(vae, x_test[:batch_size], k=min(args.k, 10), batch_size=batch_size, seed=args.seed)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    nll = iwae_nll(vae, x_test, k=args.k, batch_size=batch_size, seed=args.seed)
    seconds = time.perf_counter() - start
    device = vaekit_device()
    print(f"backend {keras.backend.backend()} on {device}; model {MODELS[args.model]} (untrained), "
          f"{len(x_test)} binarised test images, k={args.k}, batch {batch_size}")
    print(f"iwae_nll: {seconds:.2f} s ({1000 * seconds / len(x_test):.2f} ms/image; warm-up call {warm_up:.2f} s), "
          f"-log p(x) {nll:.2f} nats (untrained weights)")
    if args.markdown:
        with open(args.markdown, "a") as file:
            file.write("| evaluation | model | k | test images | seconds | ms/image | device |\n"
                       "|---|---|---|---|---|---|---|\n"
                       f"| `iwae_nll` | `{MODELS[args.model]}` | {args.k} | {len(x_test)} | {seconds:.2f} | "
                       f"{1000 * seconds / len(x_test):.2f} | {keras.backend.backend()} on {device} |\n\n")
    return {"seconds": seconds, "nll": nll}


def vaekit_device() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return ", ".join(sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()}))
    if backend == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


if __name__ == "__main__":
    main()
