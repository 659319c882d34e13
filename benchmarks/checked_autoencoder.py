"""What checking the data costs an autoencoder's `fit`: vaekit's `Autoencoder` against the plain Keras model.

`vaekit.conv_autoencoder()` returns an `Autoencoder`, whose `fit` checks `x` (and `y`,
`validation_data`) once per call before Keras trains; a plain `keras.Model` of the same
architecture (`keras.Model(model.inputs, model.outputs)` of a second build) trains the same
layers unchecked. Both train `--epochs` epochs per `fit` call on the same MNIST images, in
alternating order for `--rounds` rounds, so a busy machine slows both alike. Printed: the
median and range of the per-call `fit` times of each, their ratio, and the time of the check
alone on the training set (what the checked `fit` adds, once per call).

    python benchmarks/checked_autoencoder.py                      # 10,000 images, 2 epochs, 3 rounds
    python benchmarks/checked_autoencoder.py --train-limit 60000  # full MNIST
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np

import vaekit
from vaekit import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-limit", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    def plain_model(model):
        return keras.Model(model.inputs, model.outputs, name="plain_conv_autoencoder")

    (x, _), _ = data.load_mnist(data_dir=args.data_dir, limit=args.train_limit)
    keras.utils.set_random_seed(0)
    models = {"checked (vaekit.conv_autoencoder)": vaekit.conv_autoencoder(),
              "plain (a keras.Model of the same layers)": plain_model(vaekit.conv_autoencoder())}
    for model in models.values():
        model.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy")
        model.fit(x[:512], x[:512], epochs=1, batch_size=args.batch_size, verbose=0)  # tracing, not timed
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.rounds):
        order = list(models) if round_ % 2 == 0 else list(reversed(models))
        for name in order:
            start = time.perf_counter()
            models[name].fit(x, x, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
            times[name].append(time.perf_counter() - start)
    checked = models["checked (vaekit.conv_autoencoder)"]
    check_times = []
    for _ in range(5):
        start = time.perf_counter()
        checked.check_data(x, (x, x))
        check_times.append(time.perf_counter() - start)

    print(f"backend {keras.backend.backend()}, {len(x)} images, {args.epochs} epochs per fit, {args.rounds} rounds")
    for name, values in times.items():
        print(f"{name}: fit {statistics.median(values):.2f} s (range {min(values):.2f}-{max(values):.2f})")
    ratio = statistics.median(times["checked (vaekit.conv_autoencoder)"]) / statistics.median(
        times["plain (a keras.Model of the same layers)"])
    print(f"ratio checked / plain: {ratio:.3f}")
    print(f"the check alone (fit(x, x, validation_data=(x, x)): x and validation_data[0], {len(x)} images each): "
          f"{1000 * statistics.median(check_times):.1f} ms per fit call")


if __name__ == "__main__":
    main()
