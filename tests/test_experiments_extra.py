"""Helpers added for notebooks 05-07: ROC curves and AUC, panels of image grids, curves of many runs."""

import numpy as np
import pytest

from vaekit import experiments, plots


def test_roc_auc_is_one_for_a_perfect_ranking_and_zero_for_a_reversed_one():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    is_anomaly = np.array([0, 0, 0, 1, 1])
    assert experiments.roc_auc(scores, is_anomaly) == pytest.approx(1.0)
    assert experiments.roc_auc(-scores, is_anomaly) == pytest.approx(0.0)


def test_roc_auc_equals_the_mann_whitney_probability_with_ties_counting_half():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    is_anomaly = rng.random(60) < 0.4
    anomalous, normal = scores[is_anomaly], scores[~is_anomaly]
    pairs = anomalous[:, None] - normal[None, :]
    expected = np.mean((pairs > 0) + 0.5 * (pairs == 0))
    assert experiments.roc_auc(scores, is_anomaly) == pytest.approx(expected)
    assert experiments.roc_auc(np.zeros(60), is_anomaly) == pytest.approx(0.5)


def test_roc_curve_runs_from_origin_to_one_one_and_never_goes_down():
    fpr, tpr = experiments.roc_curve([0.3, 0.1, 0.7, 0.7, 0.2], [1, 0, 1, 0, 0])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # The tied 0.7 scores (one anomaly, one normal) enter together: a diagonal step.
    assert (fpr[1], tpr[1]) == (pytest.approx(1 / 3), pytest.approx(1 / 2))


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="at least one anomaly and one normal"):
        experiments.roc_auc([0.1, 0.2], [1, 1])


def test_plot_image_panels_draws_one_titled_panel_per_run(tmp_path):
    rng = np.random.default_rng(0)
    panels = {f"run {k}": rng.random((16, 8, 8, 1)) for k in range(3)}
    fig = plots.plot_image_panels(panels, panels_per_row=2, path=tmp_path / "panels.png")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["run 0", "run 1", "run 2"]
    assert (tmp_path / "panels.png").stat().st_size > 0


def test_plot_histories_draws_train_and_validation_per_run_and_skips_missing_metrics():
    histories = {
        "vae": {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5], "kl_loss": [1.0, 1.5]},
        "ae": {"loss": [2.0, 1.0]},
    }
    fig = plots.plot_histories(histories, keys=["loss", "kl_loss"])
    loss_panel, kl_panel = fig.axes[:2]
    assert len(loss_panel.lines) == 3  # vae train + validation, ae train
    assert len(kl_panel.lines) == 1
