"""Training speed against PyTorch: vaekit's `compile` + `fit` next to the PyTorch loop a user would write.

Two models, each in two implementations with the same layers, loss (BCE summed over
pixels + KL, in nats per image), optimiser (Adam 1e-3), batch size (128) and data
(the same MNIST subset, grey-level pixels in [0, 1]):

* fc: PyTorch's examples/vae (784-400-20, `F.binary_cross_entropy(reduction="sum")` + KL,
  an eager loop over a `DataLoader`) against `vaekit.fc_vae(latent_dim=20, hidden_units=400)`;
* conv: the keras.io example's conv VAE, `vaekit.conv_vae()`, against the same eager loop around
  PyTorch layers that mirror it (Conv2d / ConvTranspose2d with padding 1 for Keras' "same").

vaekit trains exactly as in the README's quick start: `vae.compile(optimizer=Adam(1e-3))`
then one `vae.fit(x, epochs=N, batch_size=128)` call. Its epochs are timed by a callback
that, between two vaekit epochs, runs one epoch of the PyTorch loop (before the vaekit
epoch on odd epochs, after it on even ones), so a busy machine slows both alike. The
first epoch includes tracing and compilation and is left out of the medians. Besides
wall-clock seconds the script prints the process's CPU time per epoch (all threads):
on a machine shared with other jobs it varies far less than the wall clock, and with
`--threads 1` it is close to the arithmetic each framework does per epoch.

Both frameworks use the same number of CPU threads (`--threads`, default all cores):
`torch.set_num_threads` and TensorFlow's intra-op pool. The test loss is the negative
ELBO (one posterior sample per image, as in training) on the same test images.

Two frameworks in one process disturb each other (on a 2-core CPU, TensorFlow epochs
that follow a PyTorch epoch took about twice as long), so `--separate-processes ROUNDS`
times each trainer in its own fresh process instead, one process per trainer and round,
the order alternating between rounds, and round r seeded with `--seed` + r.

`--precision mixed_bfloat16` trains both sides in mixed precision: vaekit under Keras'
policy (`keras.mixed_precision.set_global_policy("mixed_bfloat16")` before building; the
weights stay float32, the layers compute in bfloat16, vaekit's losses are float32), the PyTorch
peer with its forward passes under `torch.autocast(device, torch.bfloat16)` and its loss in
float32, as PyTorch's AMP recipe does. "mixed_float16" is the same in float16 (PyTorch adds its
`GradScaler`, Keras its `LossScaleOptimizer`). Several comma-separated precisions run one after
the other, each model's lines labelled "conv/mixed_bfloat16" and so on (float32: "conv").

On JAX, `--fit-on-device` adds "vaekit-device": the same vaekit model trained with
`vaekit.on_device.fit_on_device` (one compiled program per epoch), the path meant for GPUs.
Without torch installed the script times vaekit alone and says so.

    python benchmarks/vs_pytorch.py --quick                    # a few minutes on a 2-core CPU
    python benchmarks/vs_pytorch.py --models fc --epochs 6     # full MNIST, FC only
    python benchmarks/vs_pytorch.py --separate-processes 2 --epochs 4 --loss-every-epoch
    KERAS_BACKEND=jax python benchmarks/vs_pytorch.py --fit-on-device --markdown table.md
    python benchmarks/vs_pytorch.py --models conv --train-limit 10000 --precision float32,mixed_bfloat16
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark, however this file is loaded

import vaekit  # noqa: E402
from vaekit.data import load_mnist  # noqa: E402
from vaekit.evaluate import elbo  # noqa: E402
from train_speed import describe_device  # noqa: E402

BATCH_SIZE = 128
LEARNING_RATE = 1e-3
MODELS = ("fc", "conv")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
WORKER_MARK = "WORKER RESULT "  # the line a --worker process prints its numbers on
QUICK = {"epochs": 3, "train_limit": 6000, "test_limit": 1000}
FULL = {"epochs": 6, "train_limit": 60_000, "test_limit": 10_000}


# --- The PyTorch peers, written as a PyTorch user would ---------------------------------

def torch_models():
    """The two PyTorch models (imported lazily: torch is a test extra, not a vaekit dependency)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class FcVAE(nn.Module):
        """PyTorch's examples/vae/main.py, layer for layer."""

        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, 20)
            self.fc22 = nn.Linear(400, 20)
            self.fc3 = nn.Linear(20, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std

        def decode(self, z):
            h3 = F.relu(self.fc3(z))
            return torch.sigmoid(self.fc4(h3))

        def forward(self, x):
            mu, logvar = self.encode(x.view(-1, 784))
            z = self.reparameterize(mu, logvar)
            return self.decode(z).view(-1, 1, 28, 28), mu, logvar

    class ConvVAE(nn.Module):
        """vaekit.conv_vae() in PyTorch: Conv(32, s2)-Conv(64, s2)-Dense(16)-(mu, logvar), mirrored decoder."""

        def __init__(self, latent_dim: int = 2):
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                nn.Flatten(), nn.Linear(64 * 7 * 7, 16), nn.ReLU())
            self.fc_mu = nn.Linear(16, latent_dim)
            self.fc_logvar = nn.Linear(16, latent_dim)
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                nn.ConvTranspose2d(32, 1, 3, padding=1), nn.Sigmoid())

        def forward(self, x):
            h = self.encoder(x)
            mu, logvar = self.fc_mu(h), self.fc_logvar(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return self.decoder(z), mu, logvar

    return {"fc": FcVAE, "conv": ConvVAE}


def torch_loss_per_image(recon_x, x, mu, logvar):
    """examples/vae's loss, kept per image: BCE summed over pixels + KL, in nats."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy(recon_x, x, reduction="none").flatten(1).sum(1)
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    return bce + kld


class TorchPeer:
    """One PyTorch model, its Adam and its DataLoader; `train_epoch` is examples/vae's `train`."""

    def __init__(self, model_name: str, x_train: np.ndarray, seed: int, precision: str = "float32"):
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # Mixed precision as PyTorch's AMP recipe has it: the forward pass under autocast, the loss in
        # float32, and for float16 a GradScaler against gradients that underflow.
        self.autocast_dtype = {"float32": None, "mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}[precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "mixed_float16" else None
        torch.manual_seed(seed)
        self.model = torch_models()[model_name]().to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        images = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=BATCH_SIZE,
                                                  shuffle=True, generator=torch.Generator().manual_seed(seed))

    def train_epoch(self) -> float:
        import torch.nn.functional as F

        self.model.train()
        train_loss = 0.0
        for (data,) in self.loader:
            data = data.to(self.device)
            self.optimizer.zero_grad()
            with self.autocast():
                recon_batch, mu, logvar = self.model(data)
            recon_batch, mu, logvar = recon_batch.float(), mu.float(), logvar.float()  # no-ops in float32
            loss = (F.binary_cross_entropy(recon_batch, data, reduction="sum")
                    - 0.5 * self.torch.sum(1 + logvar - mu.pow(2) - logvar.exp()))
            if self.scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            train_loss += loss.item()
        return train_loss / len(self.loader.dataset)

    def test_loss(self, x_test: np.ndarray, seed: int, batch_size: int = 500) -> float:
        """Negative ELBO in nats per image, one posterior sample per image.

        Its own random stream: training's noise continues afterwards as if it had not run.
        """
        torch = self.torch
        images = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))
        total = 0.0
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            self.model.eval()
            for start in range(0, len(images), batch_size):
                data = images[start:start + batch_size].to(self.device)
                with self.autocast():
                    recon, mu, logvar = self.model(data)
                total += torch_loss_per_image(recon.float(), data, mu.float(), logvar.float()).sum().item()
        self.model.train()
        return total / len(images)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def autocast(self):
        """`torch.autocast` to the peer's 16-bit dtype; nothing in float32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.autocast_dtype)


# --- vaekit, as in the README's quick start ---------------------------------------------

def build_vaekit(model_name: str, seed: int, steps_per_execution: int | None = None,
                 precision: str = "float32") -> vaekit.VAE:
    """The model as a user builds it; under `precision`, the one-line Keras policy set before building."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision)
    try:  # the layers keep the policy they were built under; compile adds loss scaling for mixed_float16
        vae = vaekit.fc_vae(latent_dim=20, hidden_units=400) if model_name == "fc" else vaekit.conv_vae()
        # vaekit's defaults for everything else; `steps_per_execution` only when asked for.
        options = {} if steps_per_execution is None else {"steps_per_execution": steps_per_execution}
        vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), **options)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return vae


def label(model_name: str, precision: str) -> str:
    """How the printout names a model trained in `precision`: "conv", "conv/mixed_bfloat16"."""
    return model_name if precision == "float32" else f"{model_name}/{precision}"


class InterleavedEpochs(keras.callbacks.Callback):
    """Times each epoch of the `fit` it is passed to and runs the other trainers' epochs in between.

    The others run outside the timed window: after vaekit's epoch on even epochs, before
    it on odd ones (reversed order), so none always runs on a warmer or busier machine.
    """

    def __init__(self, others: dict[str, Callable[[], object]], seconds: dict[str, list[float]],
                 cpu_seconds: dict[str, list[float]],
                 epoch_losses: dict[str, tuple[Callable[[], float], list[float]]] | None = None):
        super().__init__()
        self.others, self.seconds, self.cpu_seconds = others, seconds, cpu_seconds
        self.epoch_losses = epoch_losses  # name -> (test loss function, values): measured after each epoch, untimed

    def _measure_loss(self, name: str) -> None:
        if self.epoch_losses is not None:
            test_loss, values = self.epoch_losses[name]
            values.append(test_loss())

    def _run_others(self, names) -> None:
        for name in names:
            start, cpu_start = time.perf_counter(), time.process_time()
            self.others[name]()
            self.seconds[name].append(time.perf_counter() - start)
            self.cpu_seconds[name].append(time.process_time() - cpu_start)
            self._measure_loss(name)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch % 2 == 1:
            self._run_others(reversed(list(self.others)))
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds["vaekit"].append(time.perf_counter() - self.start)
        self.cpu_seconds["vaekit"].append(time.process_time() - self.cpu_start)
        self._measure_loss("vaekit")
        if epoch % 2 == 0:
            self._run_others(list(self.others))


# --- The benchmark -------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)} (default: both)")
    parser.add_argument("--epochs", type=int, help=f"epochs per trainer, at least 2 (default {FULL['epochs']})")
    parser.add_argument("--train-limit", type=int, help="training images (default: all 60,000)")
    parser.add_argument("--test-limit", type=int, help="test images for the final loss (default: all 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, sampling and shuffling")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads for both TensorFlow and PyTorch (default: all cores, %(default)s here)")
    parser.add_argument("--quick", action="store_true",
                        help=f"small run: {QUICK['train_limit']} train / {QUICK['test_limit']} test images, "
                             f"{QUICK['epochs']} epochs (explicit flags still win)")
    parser.add_argument("--steps-per-execution", type=int,
                        help="pass this to vaekit's compile (default: vaekit's own default, 32 on TensorFlow, else 1)")
    parser.add_argument("--fit-on-device", action="store_true",
                        help="JAX only: also time vaekit.fit_on_device (\"vaekit-device\")")
    parser.add_argument("--loss-every-epoch", action="store_true",
                        help="also measure each trainer's test loss after every epoch (untimed) and print the "
                             "time each needs to reach the test loss that all of them reach")
    parser.add_argument("--separate-processes", type=int, metavar="ROUNDS",
                        help="time each trainer in its own process instead of interleaving epochs in one: ROUNDS "
                             "rounds of one process per trainer, the order alternating, round r with seed SEED + r; "
                             "test losses are means over the rounds")
    parser.add_argument("--precision", default="float32",
                        help=f"comma-separated, from {', '.join(PRECISIONS)}: train both sides in each, one after "
                             "the other (default float32)")
    parser.add_argument("--worker", choices=("vaekit", "pytorch"), help=argparse.SUPPRESS)
    parser.add_argument("--no-torch", action="store_true", help="time vaekit alone, without the PyTorch peers")
    parser.add_argument("--markdown", help="also append the results to this file as a Markdown table")
    parser.add_argument("--data-dir", help="folder with mnist.npz (default: $VAEKIT_DATA_DIR, then keras.datasets)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        parser.error(f"--models takes a comma-separated list from {', '.join(MODELS)}; got {unknown or 'none'}")
    args.precisions = [name.strip() for name in args.precision.split(",") if name.strip()]
    unknown = sorted(set(args.precisions) - set(PRECISIONS))
    if unknown or not args.precisions:
        parser.error(f"--precision takes a comma-separated list from {', '.join(PRECISIONS)}; "
                     f"got {unknown or 'none'}")
    args.precision = args.precisions[0]  # the one being run; main() moves it along the list
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch (compilation) is not timed")
    for name in ("train_limit", "test_limit", "threads", "steps_per_execution", "separate_processes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.separate_processes and args.fit_on_device:
        parser.error("--fit-on-device is timed interleaved only; leave out --separate-processes")
    if args.fit_on_device and keras.backend.backend() != "jax":
        parser.error("--fit-on-device needs KERAS_BACKEND=jax (elsewhere fit_on_device is fit)")
    return args


def set_threads(threads: int, torch_available: bool) -> str:
    """Give both frameworks the same CPU thread count; returns a description for the header."""
    described = []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already started (e.g. imported and used by a caller)
            pass
        described.append(f"TensorFlow intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'all'}")
    else:
        described.append(f"{keras.backend.backend()} default")
    if torch_available:
        import torch

        torch.set_num_threads(threads)
        described.append(f"torch {torch.get_num_threads()}")
    return f"CPU threads: {', '.join(described)} (of {os.cpu_count()} cores)"


def torch_is_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def versions(torch_available: bool) -> str:
    parts = [f"keras {keras.__version__}"]
    backend = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    parts.append(f"{backend} {__import__(module).__version__}")
    if torch_available and backend != "torch":
        import torch

        parts.append(f"torch {torch.__version__}" + (f" on {torch.cuda.get_device_name()}"
                                                      if torch.cuda.is_available() else " on CPU"))
    return ", ".join(parts)


def benchmark_model(model_name: str, args, x_train, x_test, use_torch: bool) -> dict[str, dict]:
    """Trains every implementation of one model, interleaved; returns name -> results."""
    vae = build_vaekit(model_name, args.seed, args.steps_per_execution, args.precision)
    others, finals = {}, {}
    epoch_losses = {"vaekit": (lambda: test_loss_vaekit(vae, x_test), [])}
    if args.fit_on_device:
        import jax

        device_vae = build_vaekit(model_name, args.seed, args.steps_per_execution, args.precision)
        device_x = jax.device_put(x_train)  # copied once, as a user calling it once per epoch would
        shuffle_seeds = itertools.count(args.seed)  # a new order each epoch, as fit's shuffle gives
        others["vaekit-device"] = lambda: vaekit.on_device.fit_on_device(device_vae, device_x, epochs=1, batch_size=BATCH_SIZE,
                                                               verbose=0, seed=next(shuffle_seeds))
        finals["vaekit-device"] = lambda: test_loss_vaekit(device_vae, x_test, args.seed)
        epoch_losses["vaekit-device"] = (lambda: test_loss_vaekit(device_vae, x_test), [])
    if use_torch:
        peer = TorchPeer(model_name, x_train, args.seed, args.precision)
        others["pytorch"] = peer.train_epoch
        finals["pytorch"] = lambda: peer.test_loss(x_test, args.seed)
        epoch_losses["pytorch"] = (lambda: peer.test_loss(x_test, args.seed), [])
    seconds = {name: [] for name in ["vaekit", *others]}
    cpu_seconds = {name: [] for name in seconds}
    vae.fit(x_train, epochs=args.epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0,
            callbacks=[InterleavedEpochs(others, seconds, cpu_seconds,
                                         epoch_losses if args.loss_every_epoch else None)])
    finals["vaekit"] = lambda: test_loss_vaekit(vae, x_test, args.seed)

    model_name = label(model_name, args.precision)  # from here on, the name printed
    print(f"{model_name}: {vae.count_params():,} parameters in vaekit (steps_per_execution {vae.steps_per_execution}"
          + (", asked for)" if args.steps_per_execution else ", vaekit's default)")
          + (f", {peer.parameter_count():,} in PyTorch" if use_torch else ""))
    print(f"{model_name} epoch  " + "  ".join(f"{name:>13}" for name in seconds))
    for epoch in range(args.epochs):
        note = "  (includes compilation, not counted)" if epoch == 0 else ""
        print(f"{model_name} {epoch + 1:5d}  " + "  ".join(f"{values[epoch]:12.3f}s" for values in seconds.values())
              + note)
    return summarise(model_name, args, {name: values[1:] for name, values in seconds.items()},
                     {name: values[1:] for name, values in cpu_seconds.items()},
                     {name: final() for name, final in finals.items()},
                     {name: values for name, (_, values) in epoch_losses.items()}, use_torch)


def summarise(model_name: str, args, timed: dict[str, list[float]], cpu_timed: dict[str, list[float]],
              test_losses: dict[str, float], epoch_losses: dict[str, list[float]], use_torch: bool,
              counted: str | None = None) -> dict[str, dict]:
    """Prints each trainer's median epoch time, CPU time and test loss, and the ratios to PyTorch."""
    counted = counted or f"epochs 2-{args.epochs}"
    results = {}
    for name, values in timed.items():
        results[name] = {"seconds_per_epoch": statistics.median(values), "min": min(values), "max": max(values),
                         "cpu_seconds_per_epoch": statistics.median(cpu_timed[name]), "test_loss": test_losses[name]}
    for name, result in results.items():
        print(f"{model_name} {name}: {result['seconds_per_epoch']:.3f} s/epoch (median of {counted}, "
              f"range {result['min']:.3f}-{result['max']:.3f}), test loss {result['test_loss']:.2f} nats/image "
              f"(negative ELBO); CPU time {result['cpu_seconds_per_epoch']:.3f} s/epoch")
    if use_torch:
        for name in (name for name in results if name != "pytorch"):
            result = results[name]
            result["ratio"] = result["seconds_per_epoch"] / results["pytorch"]["seconds_per_epoch"]
            print(f"{model_name} ratio {name}/pytorch: {result['ratio']:.3f} (below 1 means {name} is faster)")
    if args.loss_every_epoch:
        print_equal_loss(model_name, results, epoch_losses, use_torch)
    return results


def print_equal_loss(model_name: str, results: dict[str, dict], epoch_losses: dict[str, list[float]],
                     use_torch: bool) -> None:
    """Time to equal loss: how long each trainer needs to reach the test loss that every one reaches.

    The target is the highest of the final test losses. A trainer's time is the number of
    epochs after which its test loss first was at or below the target, times its median
    seconds per epoch (so compilation counts for none).
    """
    print(f"{model_name} test loss after each epoch (nats/image): " + "; ".join(
        f"{name} " + " ".join(f"{loss:.2f}" for loss in losses) for name, losses in epoch_losses.items()))
    target = max(losses[-1] for losses in epoch_losses.values())
    for name, losses in epoch_losses.items():
        epochs_needed = next(epoch for epoch, loss in enumerate(losses, start=1) if loss <= target)
        results[name]["seconds_to_equal_loss"] = epochs_needed * results[name]["seconds_per_epoch"]
        print(f"{model_name} {name} reaches {target:.2f} nats after {epochs_needed} epochs: "
              f"{results[name]['seconds_to_equal_loss']:.3f} s at its median epoch time")
    if use_torch:
        for name in (name for name in results if name != "pytorch"):
            ratio = results[name]["seconds_to_equal_loss"] / results["pytorch"]["seconds_to_equal_loss"]
            results[name]["ratio_at_equal_loss"] = ratio
            print(f"{model_name} ratio at equal test loss {name}/pytorch: {ratio:.3f} (below 1 means {name} is faster)")


def train_alone(trainer: str, model_name: str, args, x_train, x_test) -> dict[str, list[float] | float]:
    """One trainer, alone in this process (--separate-processes runs this in a child process)."""
    seconds, cpu_seconds, losses = [], [], []
    if trainer == "vaekit":
        vae = build_vaekit(model_name, args.seed, args.steps_per_execution, args.precision)
        timing = InterleavedEpochs({}, {"vaekit": seconds}, {"vaekit": cpu_seconds},
                                   {"vaekit": (lambda: test_loss_vaekit(vae, x_test), losses)}
                                   if args.loss_every_epoch else None)
        vae.fit(x_train, epochs=args.epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0, callbacks=[timing])
        test_loss = test_loss_vaekit(vae, x_test, args.seed)
    else:
        peer = TorchPeer(model_name, x_train, args.seed, args.precision)
        for _ in range(args.epochs):
            start, cpu_start = time.perf_counter(), time.process_time()
            peer.train_epoch()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
            if args.loss_every_epoch:
                losses.append(peer.test_loss(x_test, args.seed))
        test_loss = peer.test_loss(x_test, args.seed)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "epoch_losses": losses, "test_loss": test_loss}


def benchmark_model_in_processes(model_name: str, args, use_torch: bool) -> dict[str, dict]:
    """Each trainer in its own fresh process, `args.separate_processes` rounds, the order alternating.

    Two frameworks in one process disturb each other: on a 2-core CPU, TensorFlow epochs
    that follow a PyTorch epoch in the same process took about twice as long. Here each
    process trains one framework only, as a user's would; the first epoch of each process
    (tracing, warm-up) is not counted. Round r uses the seed `args.seed + r` for both
    trainers: at d = 2 the conv VAE's test loss after a few epochs moves by several nats
    from one seed to another, so losses averaged over rounds compare the frameworks, not
    the luck of one seed.
    """
    trainers = ["vaekit", "pytorch"] if use_torch else ["vaekit"]
    timed = {name: [] for name in trainers}
    cpu_timed = {name: [] for name in trainers}
    runs = {name: [] for name in trainers}
    passed = ["--models", model_name, "--epochs", str(args.epochs), "--train-limit", str(args.train_limit),
              "--test-limit", str(args.test_limit), "--threads", str(args.threads), "--precision", args.precision]
    passed += ["--data-dir", args.data_dir] if args.data_dir else []
    passed += ["--steps-per-execution", str(args.steps_per_execution)] if args.steps_per_execution else []
    passed += ["--loss-every-epoch"] if args.loss_every_epoch else []
    for round_number in range(args.separate_processes):
        for trainer in (trainers if round_number % 2 == 0 else trainers[::-1]):
            seed = args.seed + round_number
            child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", trainer, *passed,
                                    "--seed", str(seed)], capture_output=True, text=True, check=False)
            line = next((line for line in child.stdout.splitlines() if line.startswith(WORKER_MARK)), None)
            if child.returncode != 0 or line is None:
                raise RuntimeError(f"the {trainer} process failed:\n{child.stderr[-3000:]}")
            run = json.loads(line[len(WORKER_MARK):])
            print(f"{label(model_name, args.precision)} round {round_number + 1} {trainer} (seed {seed}): epochs " + " ".join(
                f"{value:.3f}s" for value in run["seconds"]) + f" (the first not counted), "
                f"test loss {run['test_loss']:.2f}")
            timed[trainer] += run["seconds"][1:]
            cpu_timed[trainer] += run["cpu_seconds"][1:]
            runs[trainer].append(run)
    test_losses = {name: statistics.mean(run["test_loss"] for run in runs[name]) for name in trainers}
    epoch_losses = {name: list(np.mean([run["epoch_losses"] for run in runs[name]], axis=0)) for name in trainers}
    return summarise(label(model_name, args.precision), args, timed, cpu_timed, test_losses, epoch_losses, use_torch,
                     counted=f"epochs 2-{args.epochs} of {args.separate_processes} processes")


def test_loss_vaekit(vae: vaekit.VAE, x_test: np.ndarray, seed: int | None = None) -> float:
    """Negative ELBO in nats per image (`seed`: reseed first; None, during training, leaves the seeds alone)."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    with warnings.catch_warnings():  # BCE on grey pixels is not a likelihood: known, and the same for both
        warnings.simplefilter("ignore")
        return elbo(vae, x_test)["negative_elbo"]


def markdown_table(all_results: dict[str, dict[str, dict]], header: str) -> str:
    lines = [f"{header}", "", "| model | trainer | s/epoch (median) | range | CPU s/epoch | test −ELBO (nats) "
             "| ratio to PyTorch | at equal test loss |", "|---|---|---|---|---|---|---|---|"]
    for model_name, results in all_results.items():
        for name, result in results.items():
            ratios = [f"{result[key]:.3f}" if key in result else ("1" if name == "pytorch" else "—")
                      for key in ("ratio", "ratio_at_equal_loss")]
            lines.append(f"| {model_name} | {name} | {result['seconds_per_epoch']:.3f} | {result['min']:.3f}–"
                         f"{result['max']:.3f} | {result['cpu_seconds_per_epoch']:.3f} | {result['test_loss']:.2f} "
                         f"| {' | '.join(ratios)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict[str, dict[str, dict]]:
    args = parse_args(argv)
    use_torch = not args.no_torch and torch_is_available()
    threads = set_threads(args.threads, use_torch)
    (x_train, _), (x_test, _) = load_mnist(args.data_dir, limit=max(args.train_limit, args.test_limit))
    x_train, x_test = x_train[:args.train_limit], x_test[:args.test_limit]
    if args.worker:
        print(WORKER_MARK + json.dumps(train_alone(args.worker, args.models[0], args, x_train, x_test)))
        return {}
    header = (f"backend {keras.backend.backend()} on {describe_device()}; {versions(use_torch)}; {threads}; "
              f"{len(x_train)} train / {len(x_test)} test images, batch {BATCH_SIZE}, {args.epochs} epochs, "
              f"seed {args.seed}" + ("" if args.precisions == ["float32"] else f"; precision {', '.join(args.precisions)}"))
    print(header)
    if not use_torch:
        print("PyTorch peers left out (" + ("--no-torch" if args.no_torch else "torch is not installed")
              + "): timing vaekit alone")
    if args.separate_processes:
        print(f"each trainer in its own process: {args.separate_processes} rounds, the order alternating")
    all_results = {}
    for precision in args.precisions:
        args.precision = precision
        if precision != "float32":
            print(f"{precision}: vaekit under keras.mixed_precision.set_global_policy({precision!r})"
                  + (f", PyTorch under torch.autocast with {precision.split('_')[1]}" if use_torch else ""))
        for name in args.models:
            all_results[label(name, precision)] = (
                benchmark_model_in_processes(name, args, use_torch) if args.separate_processes
                else benchmark_model(name, args, x_train, x_test, use_torch))
    if args.markdown:
        with open(args.markdown, "a") as file:
            file.write(markdown_table(all_results, header) + "\n")
    return all_results


if __name__ == "__main__":
    main()
