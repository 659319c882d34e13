"""scripts/source_check.py trains the sources' reported configurations and tabulates ours beside theirs."""

import numpy as np
import pytest

from tiny import load_script


@pytest.fixture(scope="module")
def source_check():
    return load_script("scripts/source_check.py")


@pytest.fixture
def quick_mode(source_check, monkeypatch):
    """512 images, 1 epoch, output in a temporary folder, without the tables of an earlier quick run."""
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    figures = source_check.experiments.output_dir("figures")
    for stale in figures.glob("source_check*"):  # the script keeps the rows of a previous table
        stale.unlink()
    return figures


def test_quick_run_writes_the_comparison_table(source_check, real_data_dir, quick_mode):
    table = source_check.main(["--runs", "ablation-ae", "cnn-vae-fashion"])
    assert list(table.index) == ["ablation-ae", "cnn-vae-fashion"]
    assert list(table["source_value"]) == [0.1855, 254.21]
    assert list(table["compared"]) == ["bce_per_pixel", "neg_elbo_nats"]
    assert list(table["epochs"]) == [1, 1] and list(table["full_epochs"]) == [25, 20]
    assert list(table["epochs_source"]) == ["the ablation study", "ours: the CNN-VAE report gives none"]
    ae, fashion = table.loc["ablation-ae"], table.loc["cnn-vae-fashion"]
    assert np.isnan(ae["kl_nats"])  # the deterministic baseline has no KL term
    assert ae["ours"] == pytest.approx(ae["recon_nats"] / 784)
    assert fashion["ours"] == pytest.approx(fashion["recon_nats"] + fashion["kl_nats"], rel=1e-5)
    assert 0 < ae["ours"] < 1 and fashion["kl_nats"] >= 0
    assert fashion["ours / source"] == pytest.approx(fashion["ours"] / 254.21)
    written = (quick_mode / "source_check.md").read_text()
    assert "cnn-vae-fashion" in written and "ablation-vae-d16" not in written


def test_repeats_train_each_run_with_the_next_seeds_and_report_mean_and_range(source_check, real_data_dir, quick_mode,
                                                                              tmp_path):
    figures = quick_mode
    source_check.main(["--runs", "cnn-vae-mnist", "--runs-dir", str(tmp_path / "runs")])
    table = source_check.main(["--runs", "ablation-ae", "--repeats", "2", "--runs-dir", str(tmp_path / "runs")])
    runs = source_check.pd.read_csv(figures / "source_check_runs.csv")
    # the earlier call's row is kept; this call's two seeds are added, each with its own run log
    assert list(zip(runs["run"], runs["seed"])) == [("ablation-ae", 42), ("ablation-ae", 43), ("cnn-vae-mnist", 0)]
    for seed in (42, 43):
        assert (tmp_path / "runs" / f"source_check_ablation-ae_seed{seed}" / "history.csv").is_file()
    assert list(runs["run_log"])[:2] == ["runs/source_check_ablation-ae_seed42", "runs/source_check_ablation-ae_seed43"]
    ae_runs = runs[runs["run"] == "ablation-ae"]["ours"]
    assert ae_runs.iloc[0] != ae_runs.iloc[1]  # two seeds, two different models
    ae = table.loc["ablation-ae"]
    assert ae["seeds"] == "42 43" and ae["n_seeds"] == 2
    assert ae["ours"] == pytest.approx(ae_runs.mean())
    assert ae["ours_min"] == pytest.approx(ae_runs.min()) and ae["ours_max"] == pytest.approx(ae_runs.max())
    assert table.loc["cnn-vae-mnist", "n_seeds"] == 1


def test_repeats_below_one_are_refused(source_check, capsys):
    with pytest.raises(SystemExit):
        source_check.main(["--repeats", "0"])
    assert "--repeats must be at least 1, got 0" in capsys.readouterr().err


def test_unknown_run_is_refused(source_check, capsys):
    with pytest.raises(SystemExit):
        source_check.main(["--runs", "cnn-vae-svhn"])
    assert "invalid choice" in capsys.readouterr().err
