"""Quick mode, epoch caps, output folders, results tables and resumable runs."""

import json
import os

import keras
import numpy as np
import pandas as pd
import pytest

import tiny
from vaekit import experiments, training

pytestmark = pytest.mark.oldest_versions  # .ci/run's stage on the oldest Keras and TensorFlow


def test_quick_mode_follows_environment(monkeypatch):
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    assert not experiments.quick_mode()
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    assert experiments.quick_mode()
    monkeypatch.setenv("VAEKIT_QUICK", "no")
    assert not experiments.quick_mode()


def test_epochs_is_source_value_capped_by_environment_and_one_in_quick_mode(monkeypatch):
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    monkeypatch.delenv("VAEKIT_EPOCHS", raising=False)
    assert experiments.epochs(25) == 25
    monkeypatch.setenv("VAEKIT_EPOCHS", "3")
    assert experiments.epochs(25) == 3
    assert experiments.epochs(2) == 2
    monkeypatch.setenv("VAEKIT_EPOCHS", "zero")
    with pytest.raises(ValueError, match="VAEKIT_EPOCHS"):
        experiments.epochs(25)
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    assert experiments.epochs(25) == 1


def test_quick_runs_never_write_into_the_project(monkeypatch, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "vaekit"\n')
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    assert experiments.output_dir("figures") == tmp_path / "figures"
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    quick = experiments.output_dir("figures")
    assert tmp_path not in quick.parents and quick.is_dir()


@pytest.mark.parametrize("pyproject", [None, '[project]\nname = "coursework"\n'])
def test_a_notebooks_folder_outside_a_vaekit_checkout_writes_next_to_itself(monkeypatch, tmp_path, pyproject):
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    assert experiments.project_root() == tmp_path / "notebooks"
    assert experiments.output_dir("figures") == tmp_path / "notebooks" / "figures"


def test_any_other_folder_is_its_own_project_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert experiments.project_root() == tmp_path


def test_save_table_writes_csv_and_markdown(tmp_path):
    frame = pd.DataFrame({"loss": [1.23456, 2.0]}, index=["a", "b"])
    experiments.save_table(frame, tmp_path / "results")
    assert pd.read_csv(tmp_path / "results.csv", index_col=0)["loss"].tolist() == [1.23456, 2.0]
    assert "1.235" in (tmp_path / "results.md").read_text()


def test_save_table_that_fails_midway_leaves_the_previous_files_whole(tmp_path, monkeypatch):
    experiments.save_table(pd.DataFrame({"loss": [1.0]}), tmp_path / "results")
    before = {name: (tmp_path / name).read_text() for name in ("results.csv", "results.md")}

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_markdown", fail)
    with pytest.raises(KeyboardInterrupt):
        experiments.save_table(pd.DataFrame({"loss": [2.0]}), tmp_path / "results")
    assert (tmp_path / "results.md").read_text() == before["results.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.md"]


def test_describe_run_prints_backend_and_seed(capsys):
    assert experiments.describe_run(seed=11) is None
    text = capsys.readouterr().out
    assert f"backend {keras.backend.backend()}" in text and "seed 11" in text


def test_save_table_keeps_integer_columns_whole_in_markdown(tmp_path):
    frame = pd.DataFrame({"parameters": [28_353, 134_165], "loss": [0.123456, 1.5]}, index=["ae", "vae"])
    experiments.save_table(frame, tmp_path / "results")
    markdown = (tmp_path / "results.md").read_text()
    assert "28353" in markdown and "134165" in markdown and "e+04" not in markdown


# --- fit_resumable: a run folder that survives a stop -------------------------------

def _tiny_vae():
    import vaekit

    keras.utils.set_random_seed(0)
    model = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


RESUMABLE_X = np.random.default_rng(0).random((32, 4, 4, 1)).astype("float32")  # 2 batches of 16


def _fit(model, run_dir, epochs, config=None, **kwargs):
    return training.fit_resumable(model, RESUMABLE_X, run_dir=run_dir, epochs=epochs, config=config or {"d": 2},
                                  batch_size=16, verbose=0, **kwargs)


def test_fit_resumable_resumes_at_the_first_unfinished_epoch(tmp_path):
    first = _tiny_vae()  # a run of 5 epochs, stopped after 2
    early = _fit(first, tmp_path / "run", 5, validation_data=(RESUMABLE_X[:8],), callbacks=[tiny.StopAfter(2)])
    assert len(early["loss"]) == 2 and len(early["val_loss"]) == 2

    resumed = _tiny_vae()  # a fresh process would start from freshly built weights like these
    history = _fit(resumed, tmp_path / "run", 5, validation_data=(RESUMABLE_X[:8],))
    assert len(history["loss"]) == len(history["val_loss"]) == 5
    np.testing.assert_allclose(history["loss"][:2], early["loss"])  # the old epochs come back from history.csv
    assert int(resumed.optimizer.iterations) == 5 * 2  # optimizer state restored, only 3 epochs trained
    assert history["loss"][-1] < history["loss"][0]


def test_fit_resumable_loads_a_finished_run_without_training(tmp_path):
    trained = _tiny_vae()
    history = _fit(trained, tmp_path / "run", 3)
    loaded = _tiny_vae()
    assert not np.allclose(loaded.weights[0], trained.weights[0])
    again = _fit(loaded, tmp_path / "run", 3)
    assert again == history
    assert int(loaded.optimizer.iterations) == 3 * 2
    for a, b in zip(trained.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fit_resumable_says_what_it_loads_with_the_last_epochs_numbers(tmp_path, monkeypatch, capsys):
    history = _fit(_tiny_vae(), tmp_path / "runs" / "tiny", 2, validation_data=(RESUMABLE_X[:8],))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    _fit(_tiny_vae(), tmp_path / "runs" / "tiny", 2, validation_data=(RESUMABLE_X[:8],))
    printed = capsys.readouterr().out
    assert f"tiny: all 2 epochs were trained earlier; loading the weights from {os.path.join('runs', 'tiny')}" in printed
    assert str(tmp_path) not in printed  # relative to the working directory, not this machine's path
    assert "epoch 2: " in printed and f"val_loss: {history['val_loss'][-1]:.4f}" in printed


def test_fit_resumable_rewrites_a_stale_history_csv_from_its_checkpoint(tmp_path):
    history = _fit(_tiny_vae(), tmp_path / "run", 2)
    log = tmp_path / "run" / "history.csv"
    # As after a kill between saving the checkpoint and rewriting the CSV: one epoch behind,
    # here with a duplicated row too. The checkpoint's record is what counts.
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], lines[1], lines[1]]) + "\n")
    assert _fit(_tiny_vae(), tmp_path / "run", 2) == history
    assert pd.read_csv(log)["epoch"].tolist() == [0, 1]


def test_fit_resumable_clears_temporary_files_left_by_a_kill_mid_save(tmp_path):
    _fit(_tiny_vae(), tmp_path / "run", 2, callbacks=[tiny.StopAfter(1)])
    leftover = tmp_path / "run" / ".checkpoint.tmp-0123abcd.npz"
    leftover.write_bytes(b"half a checkpoint")
    history = _fit(_tiny_vae(), tmp_path / "run", 2)
    assert len(history["loss"]) == 2 and not leftover.exists()


def test_fit_resumable_refuses_a_run_dir_that_is_a_file(tmp_path):
    path = tmp_path / "run"
    path.write_text("not a folder")
    with pytest.raises(ValueError, match=r"`run_dir` .*run is an existing file; pass the path of a folder"):
        _fit(_tiny_vae(), path, 1)
    with pytest.raises(ValueError, match=r"`run_dir` .* cannot be created as a folder"):
        _fit(_tiny_vae(), path / "inside", 1)


def test_fit_resumable_checks_the_data_before_writing_anything(tmp_path):
    with pytest.raises(ValueError, match=r"`x` values must lie in \[0.0, 1.0\].*`x / 255`"):
        training.fit_resumable(_tiny_vae(), RESUMABLE_X * 255, run_dir=tmp_path / "run", epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data\[0\]` contains NaN"):
        training.fit_resumable(_tiny_vae(), RESUMABLE_X, run_dir=tmp_path / "run", epochs=1, verbose=0,
                               validation_data=(np.full_like(RESUMABLE_X, np.nan),))
    assert not (tmp_path / "run").exists()


def test_fit_resumable_does_not_save_an_epoch_with_a_nan_loss(tmp_path):
    model = _tiny_vae()
    model.compile(optimizer=keras.optimizers.SGD(1e25))  # diverges in the first epoch
    with pytest.raises(FloatingPointError, match="epoch 1, batch"):
        _fit(model, tmp_path / "run", 2)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_fit_resumable_trains_another_config_or_epochs_in_a_folder_of_its_own(tmp_path, capsys):
    history = _fit(_tiny_vae(), tmp_path / "run", 2, config={"d": 2, "sizes": (8,)})
    assert _fit(_tiny_vae(), tmp_path / "run", 2, config={"d": 2, "sizes": [8]}) == history  # equal once JSON
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
    capsys.readouterr()
    other = _fit(_tiny_vae(), tmp_path / "run", 2, config={"d": 3, "sizes": [8]})
    assert "(config.d: 2 there, 3 here): this run's folder is " in capsys.readouterr().out
    shorter = _fit(_tiny_vae(), tmp_path / "run", 1, config={"d": 2, "sizes": [8]})
    assert len(other["loss"]) == 2 and len(shorter["loss"]) == 1
    folders = sorted(path.name for path in tmp_path.iterdir())
    assert folders[0] == "run" and folders[1].startswith("run-d3-") and folders[2].startswith("run-epochs1-")
    assert json.loads((tmp_path / folders[1] / "config.json").read_text()) == {"d": 3, "sizes": [8]}
    # Asked again, each finds its own folder and loads it.
    assert _fit(_tiny_vae(), tmp_path / "run", 2, config={"d": 3, "sizes": [8]}) == other
    assert len(list(tmp_path.iterdir())) == 3
    with pytest.raises(TypeError, match="initial_epoch"):
        _fit(_tiny_vae(), tmp_path / "run", 2, initial_epoch=1)
    with pytest.raises(ValueError, match="epochs"):
        _fit(_tiny_vae(), tmp_path / "other", 0)


def test_fit_resumable_without_a_folder_is_plain_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    history = _fit(_tiny_vae(), None, 2)
    assert len(history["loss"]) == 2
    assert list(tmp_path.iterdir()) == []


def _checkout_with_a_table(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "vaekit"\n')
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "figures").mkdir()
    pd.DataFrame({"run": ["a", "b", "a"], "seed": [0, 1, 2], "recon_nats": [75.0, 74.5, 74.9]}).to_csv(
        tmp_path / "figures" / "runs_table.csv", index=False)
    monkeypatch.chdir(tmp_path / "notebooks")
    for variable in ("VAEKIT_QUICK", "VAEKIT_EPOCHS", "VAEKIT_OUTPUT_DIR"):
        monkeypatch.delenv(variable, raising=False)


def test_recorded_runs_reads_the_checkouts_table_and_keeps_the_rows_asked_for(tmp_path, monkeypatch):
    _checkout_with_a_table(tmp_path, monkeypatch)
    rows = experiments.recorded_runs("runs_table", run="a")
    assert list(rows["seed"]) == [0, 2] and list(rows.index) == [0, 1]
    assert len(experiments.recorded_runs("runs_table")) == 3
    with pytest.raises(ValueError, match="`dataset` is not a column.*'recon_nats'"):
        experiments.recorded_runs("runs_table", dataset="MNIST")


def test_recorded_runs_keep_the_rows_that_match_every_key_given(tmp_path, monkeypatch):
    """Rows (run, seed): (a, 0), (b, 1), (a, 2). Filtering on the first key only, the last only, or on
    either key would each keep other rows than these."""
    _checkout_with_a_table(tmp_path, monkeypatch)
    both = experiments.recorded_runs("runs_table", run="a", seed=2)
    assert both[["run", "seed"]].values.tolist() == [["a", 2]] and list(both.index) == [0]
    assert experiments.recorded_runs("runs_table", seed=1, run="a").empty  # seed 1 is run b's
    assert experiments.recorded_runs("runs_table", seed=1, run="b")["recon_nats"].tolist() == [74.5]
    with pytest.raises(ValueError, match="`dataset` is not a column"):  # the second key is checked too
        experiments.recorded_runs("runs_table", run="a", dataset="MNIST")


@pytest.mark.parametrize("variable, value", [("VAEKIT_QUICK", "1"), ("VAEKIT_EPOCHS", "2")])
def test_recorded_runs_are_not_pooled_with_a_quick_or_shortened_run(tmp_path, monkeypatch, capsys, variable, value):
    _checkout_with_a_table(tmp_path, monkeypatch)
    monkeypatch.setenv(variable, value)
    assert experiments.recorded_runs("runs_table", run="a").empty
    assert "not pooled" in capsys.readouterr().out


def test_recorded_runs_outside_a_checkout_or_of_a_missing_table_are_empty(tmp_path, monkeypatch, capsys):
    _checkout_with_a_table(tmp_path, monkeypatch)
    assert experiments.recorded_runs("no_such_table").empty
    assert "no_such_table.csv is not here" in capsys.readouterr().out
    (tmp_path / "pyproject.toml").unlink()  # the same files, but not a vaekit checkout
    assert experiments.recorded_runs("runs_table").empty


def test_fit_resumable_without_a_config_records_the_training_settings(tmp_path):
    run_dir = tmp_path / "run"
    training.fit_resumable(_tiny_vae(), RESUMABLE_X, run_dir=run_dir, epochs=1, batch_size=16, verbose=0)
    settings = json.loads((run_dir / "config.json").read_text())
    assert settings["optimizer"] == "Adam" and settings["batch_size"] == 16 and settings["train_examples"] == 32
    assert settings["learning_rate"] == 1e-2  # as written, not float32's 0.009999999776482582
    training.fit_resumable(_tiny_vae(), RESUMABLE_X, run_dir=run_dir, epochs=1, batch_size=8, verbose=0)
    slower = _tiny_vae()
    slower.compile(optimizer=keras.optimizers.Adam(1e-3))
    training.fit_resumable(slower, RESUMABLE_X, run_dir=run_dir, epochs=1, batch_size=16, verbose=0)
    names = sorted(path.name for path in tmp_path.iterdir())  # another batch size, another learning rate
    assert names[0] == "run" and names[1].startswith("run-batch-size8-") and names[2].startswith(
        "run-learning-rate0.001-"), names
