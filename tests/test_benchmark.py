"""The training-speed benchmark runs end to end in its smallest form and prints its figures."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"


@pytest.fixture(scope="module")
def train_speed():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_small_mnist(folder: Path) -> None:
    """Random digits in keras' mnist.npz layout: the benchmark times, it does not need real data."""
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)  # noqa: E731
    labels = lambda n: rng.integers(0, 10, size=n, dtype=np.uint8)  # noqa: E731
    np.savez(folder / "mnist.npz", x_train=images(128), y_train=labels(128), x_test=images(64), y_test=labels(64))


def test_benchmark_prints_epoch_times_ratio_and_test_losses(train_speed, tmp_path, capsys):
    write_small_mnist(tmp_path)
    results = train_speed.main(["--quick", "--train-limit", "128", "--test-limit", "64", "--epochs", "2",
                                "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "128 train / 64 test images, batch 128, 2 epochs" in out
    # PyTorch has no plain baseline; there the benchmark times vaekit alone.
    names = ["vaekit"] if keras.backend.backend() == "torch" else ["vaekit", "plain"]
    assert list(results) == names
    for name in names:
        match = re.search(rf"^{name}: ([\d.]+) s/epoch .* test loss ([\d.]+) nats/image", out, re.MULTILINE)
        assert match, out
        assert float(match.group(1)) > 0 and 0 < float(match.group(2)) < 2000
    if "plain" in names:
        assert re.search(r"^ratio vaekit/plain: [\d.]+", out, re.MULTILINE), out
    assert "vaekit-device" not in out  # fit_on_device is fit off JAX: nothing to compare


def test_benchmark_refuses_a_single_epoch(train_speed, capsys):
    with pytest.raises(SystemExit):
        train_speed.parse_args(["--epochs", "1"])
    assert "at least 2" in capsys.readouterr().err


def test_benchmark_on_jax_also_times_fit_on_device(tmp_path):
    write_small_mnist(tmp_path)
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(SCRIPT), "--train-limit", "128", "--test-limit", "64", "--epochs", "2",
                          "--data-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "backend jax" in run.stdout
    for name in ("vaekit", "plain", "vaekit-device"):
        assert re.search(rf"^{name}: [\d.]+ s/epoch .* test loss [\d.]+ nats/image", run.stdout, re.MULTILINE), run.stdout
    for name in ("vaekit", "vaekit-device"):
        assert re.search(rf"^ratio {name}/plain: [\d.]+", run.stdout, re.MULTILINE), run.stdout
