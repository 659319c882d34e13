"""Data-parallel training speed on 1..N devices (`keras.distribution.DataParallel`, JAX).

For each device count k (1, 2, 4, ... up to every device JAX sees, and that number itself;
or those of `--device-counts`) the script sets `DataParallel` over the first k devices, builds
a fresh model (the same seed each time) and trains it `--epochs` epochs on the same data,
with `fit` and with `vaekit.on_device.fit_on_device` (`--trainer`). The first epoch (tracing
and compiling) is not timed; the others give examples per second (median epoch). The batch
is `--batch-size` per device, k times that in all, so each device does the same work at
every k and perfect scaling is k times one device's examples per second: the "x" column,
the ratio to the smallest device count (1: the plain single-device run, no distribution). `--global-batch-size` keeps the batch fixed
instead (each device then gets 1/k of it). Each epoch uses the largest whole number of
batches that the examples make.

One host, several GPUs (every GPU JAX sees):

    KERAS_BACKEND=jax python benchmarks/multi_device.py                      # conv_vae, all of MNIST
    KERAS_BACKEND=jax python benchmarks/multi_device.py --model fc_vae --batch-size 256 --epochs 5
    KERAS_BACKEND=jax python benchmarks/multi_device.py --quick              # 1,024 images, 3 epochs: does it run?

On a CPU, to try it out: `--virtual-cpu-devices 2` splits the CPU into two JAX devices (the
flag must be set before JAX starts, which the script does). They share the CPU's cores, so
expect no speed-up there; the figures are for GPUs. `python benchmarks/multi_device.py --quick
--virtual-cpu-devices 2 --model fc_vae` takes a minute or two on a CPU; the conv models are slow
there on JAX.

Several hosts, one process per host, all their devices in one mesh (`jax.distributed.initialize`
with the first host's address; every process runs the same command with its own id):

    python benchmarks/multi_device.py --coordinator HOST0:1234 --num-processes 2 --process-id 0   # host 0
    python benchmarks/multi_device.py --coordinator HOST0:1234 --num-processes 2 --process-id 1   # host 1

There each process trains on its own share of the examples (`--batch-size` per device, so
its local batch is that times its devices), only k = every device is timed, only with `fit`
(`fit_on_device` runs in one process), and process 0 prints.

MNIST is read with `vaekit.data.load_mnist` ($VAEKIT_DATA_DIR/mnist.npz); `--data random`
trains on random images instead (the speed is the same).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

MODELS = ("conv_vae", "fc_vae", "conditional_conv_vae", "conv_autoencoder")
TRAINERS = {"fit": ("fit",), "fit_on_device": ("fit_on_device",), "both": ("fit", "fit_on_device")}
QUICK = {"examples": 1024, "epochs": 3}  # a check that it runs, not a measurement
FULL = {"examples": 60_000, "epochs": 4}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="conv_vae", help="the vaekit builder, at its default size")
    parser.add_argument("--batch-size", type=int, default=128, help="examples per device and step (default 128)")
    parser.add_argument("--global-batch-size", type=int, default=None,
                        help="a fixed batch over all devices instead (strong scaling)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run, the first not timed "
                        f"(default {FULL['epochs']}, --quick {QUICK['epochs']})")
    parser.add_argument("--examples", type=int, default=None, help="training examples "
                        f"(default {FULL['examples']:,}, --quick {QUICK['examples']:,})")
    parser.add_argument("--quick", action="store_true", help="a small run: fewer examples and epochs")
    parser.add_argument("--device-counts", default=None, help="comma-separated device counts (default 1, 2, 4, ..., all)")
    parser.add_argument("--trainer", choices=list(TRAINERS), default="both", help="fit, fit_on_device or both")
    parser.add_argument("--data", choices=("mnist", "random"), default="mnist")
    parser.add_argument("--virtual-cpu-devices", type=int, default=None,
                        help="split the CPU into this many JAX devices (to try the script without GPUs)")
    parser.add_argument("--coordinator", default=None, help="HOST:PORT of process 0, for several processes")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    args.epochs = defaults["epochs"] if args.epochs is None else args.epochs
    args.examples = defaults["examples"] if args.examples is None else args.examples
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch (compiling) is not timed")
    for name in ("batch_size", "examples", "num_processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.global_batch_size is not None and args.global_batch_size < 1:
        parser.error("--global-batch-size must be at least 1")
    if (args.coordinator is None) != (args.num_processes == 1):
        parser.error("--coordinator and --num-processes > 1 go together")
    if args.virtual_cpu_devices is not None and args.virtual_cpu_devices < 1:
        parser.error("--virtual-cpu-devices must be at least 1")
    return args


def start_jax(args) -> None:
    """Set the environment JAX and Keras read when they start, then start JAX (and join the processes)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ["KERAS_BACKEND"] != "jax":
        sys.exit(f"keras.distribution trains on several devices on JAX only; KERAS_BACKEND is "
                 f"{os.environ['KERAS_BACKEND']}: run with KERAS_BACKEND=jax.")
    if args.virtual_cpu_devices:
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.virtual_cpu_devices}").strip()
    import jax

    if args.coordinator:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)


def device_counts(args, total: int) -> list[int]:
    if args.num_processes > 1:
        return [total]  # a mesh over some devices of several processes is not what a user runs
    if args.device_counts:
        counts = sorted({int(count) for count in args.device_counts.split(",")})
        if counts[0] < 1 or counts[-1] > total:
            sys.exit(f"--device-counts must lie in 1..{total} (the devices JAX sees), got {args.device_counts}")
        return counts
    counts, k = [], 1
    while k < total:
        counts.append(k)
        k *= 2
    return counts + [total]


def load_data(args, n: int):
    import numpy as np

    if args.data == "random":
        rng = np.random.default_rng(0)
        return rng.random((n, 28, 28, 1)).astype("float32"), rng.integers(0, 10, n)
    from vaekit.data import load_mnist

    try:
        (x, y), _ = load_mnist(limit=n)
    except Exception as error:  # offline, no mnist.npz
        sys.exit(f"MNIST could not be read ({type(error).__name__}: {error}); set VAEKIT_DATA_DIR to the folder "
                 "of mnist.npz, or pass --data random")
    if len(x) < n:
        x, y = np.concatenate([x] * -(-n // len(x)))[:n], np.concatenate([y] * -(-n // len(y)))[:n]
    return x.astype("float32"), y


def build(model_name: str):
    import keras

    import vaekit

    keras.utils.set_random_seed(0)
    seed = {} if model_name == "conv_autoencoder" else {"seed": 1}
    model = getattr(vaekit, model_name)(**seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="binary_crossentropy" if model_name == "conv_autoencoder" else None)
    return model


def train(model, model_name: str, trainer: str, x, labels, batch_size: int, epochs: int) -> tuple[list[float], float]:
    """Epoch times in seconds and the last epoch's loss."""
    import keras

    from vaekit.on_device import fit_on_device

    times, losses = [], []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            losses.append(float(logs["loss"]))  # float(): waits for the epoch's last step
            times.append(time.perf_counter() - self.start)

    if model_name == "conditional_conv_vae":
        data = ((x, labels),)
    elif model_name == "conv_autoencoder":
        data = (x, x)
    else:
        data = (x,)
    if trainer == "fit":
        model.fit(*data, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[EpochTimes()])
    else:
        if model_name == "conditional_conv_vae":
            sys.exit("fit_on_device takes arrays x (and y): the conditional VAE's (images, labels) "
                     "trains with --trainer fit")
        fit_on_device(model, *data, batch_size=batch_size, epochs=epochs, verbose=0, seed=0, callbacks=[EpochTimes()])
    return times, losses[-1]


def main(argv=None) -> dict:
    args = parse_args(argv)
    start_jax(args)
    import jax
    import keras
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    devices = jax.devices()
    processes, process = jax.process_count(), jax.process_index()
    trainers = ("fit",) if processes > 1 else TRAINERS[args.trainer]
    counts = device_counts(args, len(devices))
    x, labels = load_data(args, args.examples)
    if processes > 1:  # each process its own share
        x, labels = x[process::processes], labels[process::processes]
    say = print if process == 0 else (lambda *a, **k: None)
    batch_words = (f"batch {args.global_batch_size} over all devices" if args.global_batch_size
                   else f"batch {args.batch_size} per device")
    say(f"backend {keras.backend.backend()}, {len(devices)} devices ({devices[0].platform}), {processes} "
        f"process{'es' if processes > 1 else ''}; model {args.model}, {args.examples} examples ({args.data}), "
        f"{batch_words}, {args.epochs} epochs (the first not timed)")
    results = {}
    for k in counts:
        mesh_devices = devices[:k]
        local_devices = sum(device.process_index == process for device in mesh_devices)
        batch = args.global_batch_size // processes if args.global_batch_size else args.batch_size * local_devices
        if batch % local_devices:
            sys.exit(f"the batch ({batch} per process) must divide by the {local_devices} devices of a process")
        used = len(x) // batch * batch
        if used == 0:
            sys.exit(f"{len(x)} examples per process make no batch of {batch}: pass more --examples")
        # One device is the plain single-device run (no distribution: a DataParallel over one device makes
        # Keras' fit compile its step twice); more are a DataParallel over the first k.
        keras.distribution.set_distribution(None if k == 1 else keras.distribution.DataParallel(
            devices=mesh_devices, **({"auto_shard_dataset": False} if processes > 1 else {})))
        for trainer in trainers:
            model = build(args.model)
            times, loss = train(model, args.model, trainer, x[:used], labels[:used], batch, args.epochs)
            per_second = used * processes / statistics.median(times[1:])
            results[(k, trainer)] = {"examples_per_second": per_second, "loss": loss, "epoch_seconds": times}
            base = results[(counts[0], trainer)]["examples_per_second"]
            say(f"{k} device{'s' if k > 1 else ' '} {trainer:<14} {per_second:10.1f} examples/s "
                f"{per_second / k:10.1f} per device   x{per_second / base:.2f}   loss {loss:.3f}")
        keras.distribution.set_distribution(None)
    if len(counts) > 1:
        for trainer in trainers:
            ratios = ", ".join(f"{k} devices x{results[(k, trainer)]['examples_per_second'] / results[(counts[0], trainer)]['examples_per_second']:.2f}"
                               for k in counts[1:])
            say(f"speed-up of {trainer} over {counts[0]} device{'s' if counts[0] > 1 else ''}: {ratios} "
                f"(perfect: x{counts[-1] // counts[0]} at {counts[-1]})")
    return results


if __name__ == "__main__":
    main()
