"""Quick mode, epoch caps, output folders, run grids and results tables."""

import keras
import numpy as np
import pandas as pd
import pytest

from vaekit import experiments


def test_quick_mode_follows_environment(monkeypatch):
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    assert not experiments.quick_mode()
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    assert experiments.quick_mode()
    monkeypatch.setenv("VAEKIT_QUICK", "no")
    assert not experiments.quick_mode()


def test_epochs_is_seed_value_capped_by_environment_and_one_in_quick_mode(monkeypatch):
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
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    assert experiments.output_dir("figures") == tmp_path / "figures"
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    quick = experiments.output_dir("figures")
    assert tmp_path not in quick.parents and quick.is_dir()


def test_run_grid_reseeds_each_run_and_collects_one_row_per_config():
    def run(scale):
        return {"draw": float(np.random.rand()) * scale, "history": [1, 2]}

    table = experiments.run_grid({"a": {"scale": 1.0}, "b": {"scale": 1.0}, "c": {"scale": 2.0}}, run, seed=3)
    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns) == ["scale", "draw"]  # non-scalar results stay out
    assert table.loc["a", "draw"] == table.loc["b", "draw"]
    assert table.loc["c", "draw"] == pytest.approx(2 * table.loc["a", "draw"])


def test_reconstruction_metrics_on_known_values():
    x = np.array([[0.0, 1.0]])
    metrics = experiments.reconstruction_metrics(x, np.array([[0.5, 0.5]]))
    assert metrics["bce_per_pixel"] == pytest.approx(np.log(2))
    assert metrics["bce_nats_per_image"] == pytest.approx(2 * np.log(2))
    assert metrics["mse_per_pixel"] == pytest.approx(0.25)


def test_save_table_writes_csv_and_markdown(tmp_path):
    frame = pd.DataFrame({"loss": [1.23456, 2.0]}, index=["a", "b"])
    experiments.save_table(frame, tmp_path / "results")
    assert pd.read_csv(tmp_path / "results.csv", index_col=0)["loss"].tolist() == [1.23456, 2.0]
    assert "1.235" in (tmp_path / "results.md").read_text()


def test_describe_run_names_backend_and_seed(capsys):
    text = experiments.describe_run(seed=11)
    assert f"backend {keras.backend.backend()}" in text and "seed 11" in text
    assert text in capsys.readouterr().out


def test_save_table_keeps_integer_columns_whole_in_markdown(tmp_path):
    frame = pd.DataFrame({"parameters": [28_353, 134_165], "loss": [0.123456, 1.5]}, index=["ae", "vae"])
    experiments.save_table(frame, tmp_path / "results")
    markdown = (tmp_path / "results.md").read_text()
    assert "28353" in markdown and "134165" in markdown and "e+04" not in markdown
