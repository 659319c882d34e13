"""Run folders whose files are damaged, or that were made by another model.

A damaged file must raise an error that names it and says what to do, never the
reader's own error and never a silent fresh start; a folder made by another model
must be refused before its weights are loaded.
"""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest

import vaekit
from vaekit import training

X = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")


def tiny_vae(beta=1.0, hidden_units=8, latent_dim=2, seed=1):
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=latent_dim, hidden_units=hidden_units, seed=seed, beta=beta)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae


def train(run_dir, epochs=2, **kwargs):
    keras.utils.set_random_seed(0)
    vae = tiny_vae(**kwargs)
    return vae, training.fit_resumable(vae, X, run_dir=run_dir, epochs=epochs, batch_size=8, verbose=0)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run of two epochs: its folder (copy it before damaging anything) and its history."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    _, history = train(run_dir)
    return run_dir, history


@pytest.fixture
def run_copy(finished_run, tmp_path):
    run_dir, history = finished_run
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run", history


def resume(run_dir, epochs=2, **kwargs):
    return training.fit_resumable(tiny_vae(**kwargs), X, run_dir=run_dir, epochs=epochs, batch_size=8, verbose=0)


def test_the_previous_epochs_state_is_kept_beside_the_checkpoint(run_copy):
    run_dir, _ = run_copy
    with np.load(run_dir / "checkpoint.previous.npz") as previous:
        assert len(json.loads(str(previous["record"]))["rows"]) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.npz", "checkpoint.previous.npz", "config.json",
                                                         "history.csv", "model.weights.h5", "run.json"]


@pytest.mark.parametrize("damage", ["cut short", "emptied", "cut to its first bytes"])
def test_a_cut_checkpoint_is_named_with_the_way_back_to_the_previous_epoch(run_copy, damage):
    run_dir, history = run_copy
    checkpoint = run_dir / "checkpoint.npz"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes({"cut short": data[:len(data) // 2], "emptied": b"",
                            "cut to its first bytes": data[:40]}[damage])
    with pytest.raises(training.DamagedRunFileError) as error:
        resume(run_dir)
    message = str(error.value)
    assert str(checkpoint) in message and "damaged" in message
    assert "Move it aside" in message and "checkpoint.previous.npz" in message and "one epoch earlier" in message
    assert checkpoint.read_bytes() != data  # nothing was overwritten or restarted behind the user's back
    # The way out works: with the damaged file moved aside the run resumes from the epoch before.
    checkpoint.rename(run_dir / "checkpoint.npz.damaged")
    resumed = resume(run_dir)
    assert len(resumed["loss"]) == 2
    assert resumed["loss"][0] == pytest.approx(history["loss"][0])


def test_a_damaged_checkpoint_without_an_earlier_state_says_the_run_starts_over_if_moved_aside(run_copy):
    run_dir, _ = run_copy
    (run_dir / "checkpoint.previous.npz").unlink()
    (run_dir / "checkpoint.npz").write_bytes(b"")
    with pytest.raises(training.DamagedRunFileError, match="from epoch 1, or put back a good copy"):
        resume(run_dir)


def test_a_damaged_previous_checkpoint_alone_is_named_too(run_copy):
    run_dir, _ = run_copy
    (run_dir / "checkpoint.npz").unlink()
    previous = run_dir / "checkpoint.previous.npz"
    previous.write_bytes(previous.read_bytes()[:100])
    with pytest.raises(training.DamagedRunFileError, match=f"{previous}.*from epoch 1"):
        resume(run_dir)


def test_every_single_flipped_byte_is_refused_or_changes_nothing(run_copy):
    """A byte changed anywhere in the checkpoint: the CRC-32 of every array and of the record,
    and zip's own headers, catch it; where no check covers a byte (padding), the state read is
    the same as before. Never a wrong state, never a reader's bare traceback."""
    run_dir, history = run_copy
    checkpoint = run_dir / "checkpoint.npz"
    data = checkpoint.read_bytes()
    keras.utils.set_random_seed(3)
    reference = tiny_vae()
    resume_weights = None
    refused = 0
    positions = sorted({*np.random.default_rng(0).integers(0, len(data), 60).tolist(), 0, 5, 30, len(data) - 1,
                        len(data) - 10, len(data) - 30})
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        checkpoint.write_bytes(bytes(flipped))
        vae = tiny_vae()
        try:
            got = training.fit_resumable(vae, X, run_dir=run_dir, epochs=2, batch_size=8, verbose=0)
        except training.DamagedRunFileError as error:
            assert str(checkpoint) in str(error), position
            refused += 1
            continue
        if resume_weights is None:
            checkpoint.write_bytes(data)
            training.fit_resumable(reference, X, run_dir=run_dir, epochs=2, batch_size=8, verbose=0)
            resume_weights = reference.get_weights()
        assert got == history, position
        for a, b in zip(vae.get_weights(), resume_weights):
            np.testing.assert_array_equal(a, b, err_msg=f"byte {position}")
    assert refused >= len(positions) * 0.8  # nearly every byte is covered by a check


@pytest.mark.parametrize("text", ['{"purpose": "test', "", '{"a": 1}\x00\x00garbage'])
def test_a_damaged_config_json_is_named_with_what_to_do(run_copy, text):
    run_dir, _ = run_copy
    (run_dir / "config.json").write_text(text)
    with pytest.raises(training.DamagedRunFileError) as error:
        training.fit_resumable(tiny_vae(), X, run_dir=run_dir, epochs=2, config={"purpose": "test"}, verbose=0)
    assert str(run_dir / "config.json") in str(error.value) and "delete it and run again" in str(error.value)
    assert "'purpose': 'test'" in str(error.value)


def test_a_damaged_history_csv_is_rewritten_from_the_checkpoint(run_copy):
    run_dir, history = run_copy
    (run_dir / "history.csv").write_text("epoch,lo")
    assert resume(run_dir) == history
    assert (run_dir / "history.csv").read_text().count("\n") == 3


# --- A folder made by another model ---------------------------------------------------------

@pytest.mark.parametrize("change, shown, name", [(dict(beta=4.0), "model.beta: 1.0 there, 4.0 here", "beta4.0"),
                                                 (dict(latent_dim=3), ": 2 there, 3 here", "units3"),
                                                 (dict(hidden_units=16), ": 8 there, 16 here", "units16")])
def test_another_model_trains_in_a_folder_of_its_own_and_leaves_the_run_there_as_it_was(run_copy, capsys, change,
                                                                                       shown, name):
    run_dir, history = run_copy
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    capsys.readouterr()
    other = resume(run_dir, **change)
    printed = capsys.readouterr().out
    assert "run holds a run with other settings (" in printed and shown in printed
    sibling = next(path for path in run_dir.parent.iterdir() if path != run_dir)
    assert sibling.name.startswith(f"run-{name}-") and printed.rstrip().endswith(f"this run's folder is {os.path.relpath(sibling)}")
    assert other != history and len(other["loss"]) == 2
    assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before
    assert resume(run_dir) == history  # the first model still finds its own run


def test_a_loaded_finished_run_draws_the_same_sampling_noise_as_the_run_that_trained_it(tmp_path):
    """The sampling layer's seed generator is saved with the weights: a notebook that only loads a
    finished run shows the same sampled reconstructions as the execution that trained it."""
    trained, _ = train(tmp_path / "run")
    keras.utils.set_random_seed(5)
    loaded = tiny_vae()
    fresh = loaded.predict(X, verbose=0)["z"]
    training.fit_resumable(loaded, X, run_dir=tmp_path / "run", epochs=2, batch_size=8, verbose=0)
    z = trained.predict(X, verbose=0)["z"]
    np.testing.assert_array_equal(loaded.predict(X, verbose=0)["z"], z)
    assert not np.allclose(fresh, z)  # a model built afresh draws other noise: the saved state is what matches


def test_a_checkpoint_without_seed_states_still_loads(run_copy):
    """Checkpoints written before the seed generators were saved resume as before."""
    run_dir, history = run_copy
    checkpoint = run_dir / "checkpoint.npz"
    with np.load(checkpoint) as saved:
        arrays = {name: saved[name] for name in saved.files if not name.startswith("seed_state_")}
    record = json.loads(str(arrays["record"]))
    assert record.pop("seed_states") == 1
    arrays["record"] = np.array(json.dumps(record))
    np.savez(checkpoint, **arrays)
    assert resume(run_dir) == history


def test_a_checkpoint_with_another_number_of_seed_generators_is_refused(run_copy):
    run_dir, _ = run_copy
    checkpoint = run_dir / "checkpoint.npz"
    with np.load(checkpoint) as saved:
        arrays = {name: saved[name] for name in saved.files}
    record = json.loads(str(arrays["record"]))
    record["seed_states"] = 2
    arrays["record"], arrays["seed_state_1"] = np.array(json.dumps(record)), arrays["seed_state_0"]
    np.savez(checkpoint, **arrays)
    with pytest.raises(ValueError, match="1 random seed generators, the checkpoint 2"):
        resume(run_dir)


def test_the_same_model_built_again_among_other_models_resumes(run_copy):
    """Keras numbers its automatic layer names per process (dense_3 here, dense_17 there): not a difference."""
    run_dir, history = run_copy
    for _ in range(3):
        vaekit.conv_vae(input_shape=(8, 8, 1), latent_dim=2, hidden_units=4, filters=(4, 4))
    assert resume(run_dir, seed=7) == history  # the sampling seed is no part of the model's shape
    assert [path.name for path in run_dir.parent.iterdir()] == ["run"]


def test_a_plain_keras_autoencoder_with_another_activation_whose_weights_would_fit_trains_apart(tmp_path):
    def autoencoder(activation):
        inputs = keras.Input((4, 4, 1))
        x = keras.layers.Dense(4, activation=activation)(keras.layers.Flatten()(inputs))
        x = keras.layers.Reshape((4, 4, 1))(keras.layers.Dense(16, activation="sigmoid")(x))
        model = keras.Model(inputs, x)
        model.compile(optimizer="adam", loss="mse")
        return model

    training.fit_resumable(autoencoder("relu"), X, X, run_dir=tmp_path / "run", epochs=1, verbose=0)
    training.fit_resumable(autoencoder("tanh"), X, X, run_dir=tmp_path / "run", epochs=1, verbose=0)
    assert sorted(path.name for path in tmp_path.iterdir())[1].startswith("run-activation-tanh-")


def test_an_unnamed_plain_keras_model_built_again_resumes(tmp_path):
    """Keras names unnamed models "functional", "functional_1"...: the name is no part of the record."""
    def autoencoder():
        inputs = keras.Input((4, 4, 1))
        outputs = keras.layers.Reshape((4, 4, 1))(keras.layers.Dense(16, activation="sigmoid")(
            keras.layers.Flatten()(inputs)))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="mse")
        return model

    first, second = autoencoder(), autoencoder()
    assert first.name != second.name
    training.fit_resumable(first, X, X, run_dir=tmp_path / "run", epochs=1, verbose=0)
    assert len(training.fit_resumable(second, X, X, run_dir=tmp_path / "run", epochs=2, verbose=0)["loss"]) == 2
