"""scripts/precision_check.py trains under a mixed-precision policy and tables the result beside float32's."""

import keras
import numpy as np
import pandas as pd
import pytest

from tiny import ROOT, load_script


@pytest.fixture(scope="module")
def precision_check():
    return load_script("scripts/precision_check.py")


def test_quick_run_tables_the_mixed_run_beside_the_committed_float32_runs(precision_check, real_data_dir, monkeypatch):
    monkeypatch.setenv("VAEKIT_QUICK", "1")  # --quick sets it too; monkeypatch takes it away afterwards
    from vaekit import experiments

    figures = experiments.output_dir("figures")
    for stale in figures.glob("precision_check*"):  # the script keeps this script's rows of a previous table
        stale.unlink()
    try:
        table = precision_check.main(["--quick", "--runs", "05_VAE_d16"])
    finally:
        assert keras.mixed_precision.global_policy().name == "float32"  # the script puts the policy back
    reference = table[table["precision"] == "float32"].loc["05_VAE_d16"]
    # The seven committed float32 runs of the d = 16 configuration, read from their tables.
    committed = pd.read_csv(ROOT / "figures" / "05_ablation_results.csv", index_col=0).loc["VAE d=16, β=1"]
    assert len(reference) == 7 and committed["recon_nats"] in set(reference["recon_nats"])
    beta_1 = pd.read_csv(ROOT / "figures" / "10_beta_results.csv").query("beta == 1.0")["recon_nats"]
    checked = pd.read_csv(ROOT / "figures" / "source_check_runs.csv").query("model == 'VAE' and latent_dim == 16")
    pooled = pd.concat([beta_1, checked["recon_nats"], pd.Series([committed["recon_nats"]])])
    assert sorted(reference["recon_nats"]) == pytest.approx(sorted(pooled))
    mixed = table[table["precision"] == "mixed_bfloat16"].loc["05_VAE_d16"]
    assert mixed["seed"] == 42 and mixed["epochs"] == 1 and mixed["source"] == "this script"
    assert mixed["neg_elbo_nats"] == pytest.approx(mixed["recon_nats"] + mixed["kl_nats"], rel=1e-5)
    # The same weights evaluated by a float32 model: 16-bit arithmetic moves the test loss by well under 1 %.
    assert mixed["neg_elbo_nats_f32_eval"] == pytest.approx(mixed["neg_elbo_nats"], rel=0.01)
    assert np.isfinite(mixed["seconds_per_epoch"]) and mixed["seconds_per_epoch"] > 0
    summary = pd.read_csv(figures / "precision_check_summary.csv")
    assert list(zip(summary["run"], summary["precision"], summary["runs"])) == [  # both float32 references, always
        ("03_conv_vae", "float32", 1), ("05_VAE_d16", "float32", 7), ("05_VAE_d16", "mixed_bfloat16", 1)]
    assert "mixed_bfloat16" in (figures / "precision_check.md").read_text()


def test_runs_alone_trains_nothing_and_rereads_the_committed_float32_rows(precision_check, real_data_dir, monkeypatch):
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    from vaekit import experiments

    figures = experiments.output_dir("figures")
    for stale in figures.glob("precision_check*"):
        stale.unlink()
    precision_check.main(["--quick", "--runs", "05_VAE_d16"])
    # A float32 row of a previous table that the committed tables no longer give is replaced on rereading.
    kept = pd.read_csv(figures / "precision_check.csv")
    stale = kept.assign(recon_nats=np.where(kept["source"].str.startswith("this script"), kept["recon_nats"], -1.0))
    stale.to_csv(figures / "precision_check.csv", index=False)
    monkeypatch.setattr(precision_check, "train_and_measure", lambda *args: pytest.fail("--runs alone trained"))
    table = precision_check.main(["--quick", "--runs"]).reset_index()
    assert (table["recon_nats"] > 0).all()
    pd.testing.assert_frame_equal(table, kept[table.columns])
