"""Quick and shortened runs write into a fresh folder of their own and say where; full runs write as before."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tiny import ROOT
from vaekit import experiments

VARIABLES = ("VAEKIT_QUICK", "VAEKIT_EPOCHS", "VAEKIT_OUTPUT_DIR")


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A vaekit checkout's shape (its pyproject.toml beside notebooks/), entered at notebooks/ as a kernel would be.

    Every run-mode variable starts unset (the notebook tests set VAEKIT_QUICK for the whole
    session), and fresh folders are made under `tmp_path/tmp`, as if each test were a new process.
    """
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (tmp_path / "tmp").mkdir()
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(experiments, "_fresh_output_folders", {})
    monkeypatch.chdir(root / "notebooks")
    return root


def new_process(monkeypatch):
    """Forget this process's fresh folders, as a second kernel would start without them."""
    monkeypatch.setattr(experiments, "_fresh_output_folders", {})


@pytest.mark.parametrize("variable, value, mode", [("VAEKIT_QUICK", "1", "quick"), ("VAEKIT_EPOCHS", "2", "shortened")])
def test_each_quick_or_shortened_run_gets_a_fresh_folder_of_its_own(checkout, monkeypatch, variable, value, mode):
    monkeypatch.setenv(variable, value)
    first = experiments.project_root()
    assert first.is_dir() and list(first.iterdir()) == []
    assert first.name.startswith(f"vaekit-{mode}-") and checkout not in first.parents
    # one process is one run: every folder it asks for lies in the same place
    assert experiments.output_dir("figures") == first / "figures"
    assert experiments.output_dir("models") == first / "models"
    assert experiments.project_root() == first

    (first / "models" / "conv_autoencoder.keras").write_bytes(b"left by the first run")
    new_process(monkeypatch)
    second = experiments.project_root()
    assert second != first and second.parent == first.parent
    assert not (experiments.output_dir("models") / "conv_autoencoder.keras").exists()


def test_a_full_run_from_the_checkouts_notebooks_writes_into_the_checkout_as_before(checkout, capsys):
    assert experiments.run_output_folder() is None
    assert experiments.project_root() == checkout
    assert experiments.output_dir("figures") == checkout / "figures"
    experiments.describe_run(seed=3)
    lines = capsys.readouterr().out.splitlines()
    # the four lines the committed notebooks' outputs show, nothing added
    assert len(lines) == 4 and lines[-1] == "seed 3, quick mode off"


def test_describe_run_of_a_shortened_run_names_its_folder_and_cap(checkout, monkeypatch, capsys):
    monkeypatch.setenv("VAEKIT_EPOCHS", "2")
    folder = experiments.project_root()
    experiments.describe_run(seed=0)
    out = capsys.readouterr().out
    assert "shortened run: every training capped at 2 epochs by $VAEKIT_EPOCHS" in out
    assert f"outputs (figures, predictions, runs, models) go to {folder}\n" in out
    assert "earlier run" not in out


def test_describe_run_of_a_quick_run_names_its_folder(checkout, monkeypatch, capsys):
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    monkeypatch.setenv("VAEKIT_EPOCHS", "3")  # quick mode wins: one epoch
    experiments.describe_run(seed=0)
    out = capsys.readouterr().out
    assert "quick mode on" in out and "quick run ($VAEKIT_QUICK)" in out and "shortened" not in out
    assert f"go to {experiments.project_root()}\n" in out
    assert experiments.epochs(20) == 1


def test_a_chosen_output_folder_is_used_as_given_and_its_earlier_contents_are_announced(checkout, monkeypatch,
                                                                                         capsys, tmp_path):
    chosen = tmp_path / "my run"
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(chosen))
    monkeypatch.setenv("VAEKIT_EPOCHS", "2")
    assert experiments.output_dir("figures") == chosen / "figures"
    experiments.describe_run(seed=0)
    assert "earlier run" not in capsys.readouterr().out

    (chosen / "runs" / "03_conv_vae").mkdir(parents=True)
    new_process(monkeypatch)
    assert experiments.project_root() == chosen  # a chosen folder is the user's: the same for every process
    experiments.describe_run(seed=0)
    out = capsys.readouterr().out
    assert f"go to {chosen}\n" in out
    assert "that folder holds an earlier run's runs/03_conv_vae: finished runs there are loaded" in out

    monkeypatch.delenv("VAEKIT_EPOCHS")  # a full run honours the chosen folder too
    assert experiments.project_root() == chosen


def test_the_checkout_named_as_output_folder_is_shown_relative_to_the_notebooks(checkout, monkeypatch, capsys):
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(checkout))  # a deliberate shortened run into the repository
    monkeypatch.setenv("VAEKIT_EPOCHS", "500")
    assert experiments.output_dir("figures") == checkout / "figures"
    experiments.describe_run(seed=0)
    assert "outputs (figures, predictions, runs, models) go to ..\n" in capsys.readouterr().out
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(checkout / "executed" / "run"))
    experiments.describe_run(seed=0)
    assert "go to ../executed/run\n" in capsys.readouterr().out


def test_a_fresh_folder_outside_the_notebooks_folder_is_shown_whole(checkout, monkeypatch, capsys, tmp_path):
    (tmp_path / "course").mkdir()
    monkeypatch.chdir(tmp_path / "course")  # a copied notebook: its own folder is its home, tmp/ is one level up
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    experiments.describe_run(seed=0)
    folder = experiments.project_root()
    assert folder.parent == tmp_path / "tmp"
    assert f"go to {folder}\n" in capsys.readouterr().out


def test_an_output_folder_that_is_a_file_is_refused_naming_the_variable(checkout, monkeypatch, tmp_path):
    (tmp_path / "taken").write_text("")
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(tmp_path / "taken"))
    with pytest.raises(ValueError, match=r"VAEKIT_OUTPUT_DIR '.*taken' is an existing file; set it to a folder"):
        experiments.output_dir("figures")
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(tmp_path / "taken" / "run"))
    with pytest.raises(ValueError, match=r"VAEKIT_OUTPUT_DIR '.*run' cannot be created as a folder"):
        experiments.describe_run(seed=0)


def test_a_bad_epoch_cap_is_refused_before_any_folder_is_chosen(checkout, monkeypatch):
    monkeypatch.setenv("VAEKIT_EPOCHS", "-1")
    with pytest.raises(ValueError, match=r"VAEKIT_EPOCHS must be a positive integer, got '-1'; unset it"):
        experiments.project_root()


# A notebook's pattern (notebook 03): a resumable run under project_root()/runs, figures and a
# saved model under output_dir, and a model loaded from there when an earlier run left one.
NOTEBOOK_LIKE = textwrap.dedent("""
    import keras, numpy as np
    from vaekit import experiments, training
    from tiny import tiny_model

    EPOCHS = experiments.epochs(20)
    RUN_DIR = experiments.project_root() / "runs" / "03_conv_vae"
    FIGURES = experiments.output_dir("figures")
    experiments.describe_run(0)
    vae = tiny_model("conv_vae")
    vae.compile(optimizer="adam")
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    history = training.fit_resumable(vae, x, run_dir=RUN_DIR, config={"epochs": EPOCHS}, epochs=EPOCHS,
                                     batch_size=8, verbose=0)
    (FIGURES / "03_conv_vae_loss.png").write_bytes(b"figure")
    model_path = experiments.output_dir("models") / "conv_autoencoder.keras"
    print("LOADED" if model_path.exists() else "TRAINED", len(history["loss"]))
    vae.save(model_path)
""")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_shortened_runs_write_nothing_into_the_checkout_and_never_load_each_others_files(tmp_path, run_on_backend):
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "figures").mkdir()
    (root / "figures" / "03_conv_vae_loss.png").write_bytes(b"the committed full-length figure")
    (tmp_path / "tmp").mkdir()
    before = tree(root)
    env = {**dict.fromkeys(VARIABLES), "VAEKIT_EPOCHS": "2", "TMPDIR": tmp_path / "tmp",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}

    printed = []
    for _ in range(2):
        run = run_on_backend("tensorflow", NOTEBOOK_LIKE, cwd=root / "notebooks", env=env, timeout=300)
        printed.append(run.stdout)

    assert tree(root) == before
    folders = [Path(out.split("outputs (figures, predictions, runs, models) go to ")[1].splitlines()[0])
               for out in printed]
    assert folders[0] != folders[1] and all(tmp_path / "tmp" in folder.parents for folder in folders)
    for out, folder in zip(printed, folders):
        assert "shortened run: every training capped at 2 epochs" in out
        assert "TRAINED 2" in out  # the second run neither resumed nor loaded the first one's files
        assert "resuming" not in out and "loading the weights" not in out
        assert (folder / "runs" / "03_conv_vae" / "history.csv").is_file()
        assert (folder / "figures" / "03_conv_vae_loss.png").read_bytes() == b"figure"
        assert (folder / "models" / "conv_autoencoder.keras").is_file()


# ---------------------------------------------------------------- a notebook's set-up in one line each

def test_setup_seeds_prints_the_run_and_returns_the_figures_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(tmp_path))
    figures = experiments.setup(3)
    first = np.random.rand()
    assert figures == tmp_path / "figures" and figures.is_dir()
    assert "seed 3" in capsys.readouterr().out
    experiments.setup(3)
    assert np.random.rand() == first  # seeded again: the same draw
    with pytest.raises(TypeError, match="`seed` must be an integer >= 0"):
        experiments.setup("3")


def test_setup_drops_tensorflows_per_model_retracing_warning_and_nothing_else(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(tmp_path))
    experiments.setup(0)
    experiments.setup(0)  # a second call adds no second filter
    logger = logging.getLogger("tensorflow")
    assert sum(type(f).__name__ == "_PerModelRetracing" for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logger.warning("5 out of the last 5 calls to <function f> triggered tf.function retracing. Tracing is expensive")
        logger.warning("some other TensorFlow warning")
    assert [record.getMessage() for record in caplog.records] == ["some other TensorFlow warning"]


def test_run_dir_lies_under_the_runs_folder_of_the_run(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_OUTPUT_DIR", str(tmp_path))
    assert experiments.run_dir("03_conv_vae") == tmp_path / "runs" / "03_conv_vae"
    with pytest.raises(ValueError, match="`name` must be a non-empty folder name"):
        experiments.run_dir("../elsewhere")


def test_quick_or_picks_the_quick_size_only_in_quick_mode(monkeypatch):
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    assert experiments.quick_or(None, 1024) is None
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    assert experiments.quick_or(None, 1024) == 1024
