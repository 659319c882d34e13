"""scripts/seed_check.py trains the seeds' reported configurations and tabulates ours beside theirs."""

import importlib.util

import numpy as np
import pytest

from tiny import ROOT


@pytest.fixture(scope="module")
def seed_check():
    spec = importlib.util.spec_from_file_location("seed_check", ROOT / "scripts" / "seed_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_the_comparison_table(seed_check, real_data_dir, monkeypatch):
    monkeypatch.setenv("VAEKIT_QUICK", "1")  # 512 images, 1 epoch, output in a temporary folder
    table = seed_check.main(["--runs", "seed-003-ae", "seed-004-fashion"])
    assert list(table.index) == ["seed-003-ae", "seed-004-fashion"]
    assert list(table["seed_value"]) == [0.1855, 254.21]
    assert list(table["compared"]) == ["bce_per_pixel", "neg_elbo_nats"]
    assert list(table["epochs"]) == [1, 1] and list(table["full_epochs"]) == [25, 20]
    assert list(table["epochs_source"]) == ["seed-003", "ours: seed-004 gives none"]
    ae, fashion = table.loc["seed-003-ae"], table.loc["seed-004-fashion"]
    assert np.isnan(ae["kl_nats"])  # the deterministic baseline has no KL term
    assert ae["ours"] == pytest.approx(ae["recon_nats"] / 784)
    assert fashion["ours"] == pytest.approx(fashion["recon_nats"] + fashion["kl_nats"], rel=1e-5)
    assert 0 < ae["ours"] < 1 and fashion["kl_nats"] >= 0
    assert fashion["ours / seed"] == pytest.approx(fashion["ours"] / 254.21)
    written = (seed_check.experiments.output_dir("figures") / "seed_check.md").read_text()
    assert "seed-004-fashion" in written and "seed-003-vae-d16" not in written


def test_unknown_run_is_refused(seed_check, capsys):
    with pytest.raises(SystemExit):
        seed_check.main(["--runs", "seed-009"])
    assert "invalid choice" in capsys.readouterr().err
