"""Finished runs that ship with the repository: the manifest, a folder without its checkpoint, and fetching.

The fetch tests serve a finished run from a local HTTP server on 127.0.0.1, as the
repository's `Runs` address would serve it to a notebook in Colab.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading

import keras
import numpy as np
import pytest

import tiny
import vaekit
from vaekit import training

X = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")
ship_runs = tiny.load_script("scripts/ship_runs.py")


def tiny_vae():
    keras.utils.set_random_seed(0)
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae


def fit(vae, run_dir, x=X):
    return training.fit_resumable(vae, x, run_dir=run_dir, epochs=2, batch_size=8, verbose=0)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run's folder with its checkpoints removed (as a checkout ships it), the model and its history."""
    runs = tmp_path_factory.mktemp("served") / "runs"
    vae = tiny_vae()
    history = fit(vae, runs / "tiny")
    for checkpoint in (runs / "tiny").glob("checkpoint*.npz"):
        checkpoint.unlink()
    return runs, vae, history


def test_the_committed_manifest_matches_the_runs_folders_and_the_budget():
    assert ship_runs.main(["--check"]) == 0
    manifest = vaekit.runs.manifest()
    assert ship_runs.weights_bytes(manifest) <= ship_runs.BUDGET_BYTES
    for name, entry in manifest.items():
        assert set(entry["files"]) == set(vaekit.runs.FILES), name


def test_the_manifest_script_lists_each_file_with_its_hash_and_size(finished):
    runs, _, _ = finished
    entry = ship_runs.shipped_runs(runs)["tiny"]
    weights = runs / "tiny" / "model.weights.h5"
    assert entry["epochs"] == 2 and entry["batch_size"] == 8 and entry["data"]["x"].startswith("sha256:")
    assert entry["files"]["model.weights.h5"] == ship_runs.describe(weights)
    assert entry["files"]["model.weights.h5"]["bytes"] == weights.stat().st_size > 0


def test_a_run_larger_than_the_cap_does_not_ship(finished, monkeypatch):
    runs, _, _ = finished
    size = (runs / "tiny" / "model.weights.h5").stat().st_size
    monkeypatch.setattr(ship_runs, "LARGEST_RUN_BYTES", size - 1)
    assert "tiny" not in ship_runs.shipped_runs(runs)
    monkeypatch.setattr(ship_runs, "LARGEST_RUN_BYTES", size)
    assert "tiny" in ship_runs.shipped_runs(runs)

def test_a_finished_run_without_its_checkpoint_is_loaded_not_trained(finished, tmp_path):
    runs, trained, history = finished
    shutil.copytree(runs / "tiny", tmp_path / "tiny")
    loaded = tiny_vae()
    assert fit(loaded, tmp_path / "tiny") == history
    assert int(loaded.optimizer.iterations) == 0  # nothing trained
    for a, b in zip(trained.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The random streams stand where the trained run left them: the same sampled codes.
    np.testing.assert_array_equal(loaded.predict(X, verbose=0)["z"], trained.predict(X, verbose=0)["z"])


def test_a_finished_run_loads_on_another_backend(finished, run_on_backend, tmp_path):
    runs, trained, _ = finished
    np.save(tmp_path / "expected.npy", trained.get_weights()[0])
    shutil.copytree(runs / "tiny", tmp_path / "tiny")
    script = f"""
import keras, numpy as np, vaekit
from vaekit import training
keras.utils.set_random_seed(0)
vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
vae.compile(optimizer=keras.optimizers.Adam(1e-3))
x = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")
training.fit_resumable(vae, x, run_dir={str(tmp_path / "tiny")!r}, epochs=2, batch_size=8, verbose=0)
print("SAME", np.array_equal(vae.get_weights()[0], np.load({str(tmp_path / "expected.npy")!r})))
"""
    assert "SAME True" in run_on_backend("jax", script, tmp_path).stdout


@pytest.fixture
def server(finished, tmp_path, monkeypatch):
    """The finished run served over HTTP on 127.0.0.1, listed in a manifest; a fresh Keras cache."""
    runs, _, _ = finished
    served = tmp_path / "served"
    shutil.copytree(runs, served)
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    manifest = tmp_path / "shipped_runs.json"
    manifest.write_text(json.dumps(ship_runs.shipped_runs(served)))
    monkeypatch.setattr(vaekit.runs, "MANIFEST", manifest)
    monkeypatch.setenv(vaekit.runs.URL_VARIABLE, f"http://127.0.0.1:{httpd.server_address[1]}")
    (tmp_path / "keras").mkdir()  # Keras caches in /tmp/.keras instead where the folder is missing
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    QuietHandler.requests = []
    yield served
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):
        QuietHandler.requests.append(self.path)


def test_outside_a_checkout_a_shipped_run_is_fetched_checked_and_loaded(server, finished, tmp_path, capsys):
    _, trained, history = finished
    loaded = tiny_vae()
    assert fit(loaded, tmp_path / "colab" / "tiny") == history
    assert int(loaded.optimizer.iterations) == 0
    for a, b in zip(trained.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sorted(QuietHandler.requests) == ["/tiny/history.csv", "/tiny/model.weights.h5", "/tiny/run.json"]
    cached = tmp_path / "keras" / "vaekit" / "runs" / "tiny" / "model.weights.h5"
    assert cached.read_bytes() == (server / "tiny" / "model.weights.h5").read_bytes()
    assert "not fetched" not in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["altered", "cut"])
def test_an_altered_or_cut_download_is_named_never_loaded_and_the_run_trains(server, finished, tmp_path, capsys,
                                                                            damage):
    _, trained, _ = finished
    weights = server / "tiny" / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    if damage == "altered":
        data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data) if damage == "altered" else bytes(data[: len(data) // 2]))
    vae = tiny_vae()
    history = fit(vae, tmp_path / "colab" / "tiny")
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if "not fetched" in line)
    assert "tiny/model.weights.h5" in line and "training it instead" in line and "hash" in line
    assert len(history["loss"]) == 2 and int(vae.optimizer.iterations) == 4  # trained, not loaded
    assert (tmp_path / "colab" / "tiny" / "checkpoint.npz").exists()


def test_a_server_that_is_down_falls_back_to_training(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(vaekit.runs.URL_VARIABLE, "http://127.0.0.1:9")  # the discard port: nothing listens
    vae = tiny_vae()
    assert len(fit(vae, tmp_path / "colab" / "tiny")["loss"]) == 2
    assert "tiny: not fetched, training it instead: http://127.0.0.1:9/tiny/run.json" in capsys.readouterr().out
    assert int(vae.optimizer.iterations) == 4


def test_a_run_on_other_data_or_epochs_asks_the_server_for_nothing(server, tmp_path, capsys):
    """A quick-mode run (a small subset) is another run than the shipped one: it trains, without a request."""
    vae = tiny_vae()
    assert len(fit(vae, tmp_path / "quick" / "tiny", x=X[:8])["loss"]) == 2
    assert QuietHandler.requests == [] and "not fetched" not in capsys.readouterr().out
