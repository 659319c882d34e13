"""What the notebooks measure and draw with: reconstruction metrics, ROC curves and AUC
(`evaluate`, with bootstrap intervals), panels of image grids and latent scatters, curves of many runs, ROC plots and
saved figures (`plots`)."""

import os

import matplotlib.pyplot as plt
import numpy as np
import pytest

from vaekit import evaluate, plots


def test_reconstruction_metrics_on_known_values():
    x = np.array([[0.0, 1.0]])
    metrics = evaluate.reconstruction_metrics(x, np.array([[0.5, 0.5]]))
    assert metrics["bce_per_pixel"] == pytest.approx(np.log(2))
    assert metrics["bce_nats_per_image"] == pytest.approx(2 * np.log(2))
    assert metrics["mse_per_pixel"] == pytest.approx(0.25)


def test_roc_auc_is_one_for_a_perfect_ranking_and_zero_for_a_reversed_one():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    is_anomaly = np.array([0, 0, 0, 1, 1])
    assert evaluate.roc_auc(scores, is_anomaly) == pytest.approx(1.0)
    assert evaluate.roc_auc(-scores, is_anomaly) == pytest.approx(0.0)


def test_roc_auc_equals_the_mann_whitney_probability_with_ties_counting_half():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    is_anomaly = rng.random(60) < 0.4
    anomalous, normal = scores[is_anomaly], scores[~is_anomaly]
    pairs = anomalous[:, None] - normal[None, :]
    expected = np.mean((pairs > 0) + 0.5 * (pairs == 0))
    assert evaluate.roc_auc(scores, is_anomaly) == pytest.approx(expected)
    assert evaluate.roc_auc(np.zeros(60), is_anomaly) == pytest.approx(0.5)


def test_roc_curve_runs_from_origin_to_one_one_and_never_goes_down():
    fpr, tpr = evaluate.roc_curve([0.3, 0.1, 0.7, 0.7, 0.2], [1, 0, 1, 0, 0])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # The tied 0.7 scores (one anomaly, one normal) enter together: a diagonal step.
    assert (fpr[1], tpr[1]) == (pytest.approx(1 / 3), pytest.approx(1 / 2))


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="at least one anomaly and one normal"):
        evaluate.roc_auc([0.1, 0.2], [1, 1])



def test_bootstrap_roc_auc_is_one_everywhere_for_a_perfect_ranking_and_repeats_with_its_seed():
    scores, is_anomaly = np.arange(30.0), np.arange(30) >= 20
    assert np.all(evaluate.bootstrap_roc_auc(scores, is_anomaly, resamples=50) == 1.0)
    rng = np.random.default_rng(1)
    scores, is_anomaly = rng.random(80), rng.random(80) < 0.5
    first = evaluate.bootstrap_roc_auc(scores, is_anomaly, resamples=300, seed=3)
    assert first.shape == (300,)
    np.testing.assert_array_equal(first, evaluate.bootstrap_roc_auc(scores, is_anomaly, resamples=300, seed=3))
    assert not np.array_equal(first, evaluate.bootstrap_roc_auc(scores, is_anomaly, resamples=300, seed=4))


def test_bootstrap_roc_auc_counts_ties_as_half_like_roc_auc():
    # Every score equal: each resample's AUC is exactly 1/2, as roc_auc says for the full set.
    aucs = evaluate.bootstrap_roc_auc(np.zeros(40), np.arange(40) % 3 == 0, resamples=20)
    assert np.all(aucs == 0.5)


def test_bootstrap_roc_auc_is_centred_on_the_auc_with_the_textbook_standard_error():
    # Two Gaussians one standard deviation apart: Hanley & McNeil's (1982) standard error.
    rng = np.random.default_rng(0)
    n_anomalous, n_normal = 300, 500
    scores = np.r_[rng.normal(1.0, 1.0, n_anomalous), rng.normal(0.0, 1.0, n_normal)]
    is_anomaly = np.r_[np.ones(n_anomalous), np.zeros(n_normal)].astype(bool)
    auc = evaluate.roc_auc(scores, is_anomaly)
    aucs = evaluate.bootstrap_roc_auc(scores, is_anomaly, resamples=2000)
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    hanley_mcneil = np.sqrt((auc * (1 - auc) + (n_anomalous - 1) * (q1 - auc ** 2)
                             + (n_normal - 1) * (q2 - auc ** 2)) / (n_anomalous * n_normal))
    assert np.mean(aucs) == pytest.approx(auc, abs=0.003)
    assert np.std(aucs) == pytest.approx(hanley_mcneil, rel=0.15)


def test_bootstrap_interval_covers_the_population_auc_about_95_percent_of_the_time():
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    population_auc = norm.cdf(1.0 / np.sqrt(2))  # normal scores N(0, 1), anomalies N(1, 1)
    covered = 0
    for trial in range(200):
        scores = np.r_[rng.normal(1.0, 1.0, 60), rng.normal(0.0, 1.0, 60)]
        low, high = np.percentile(evaluate.bootstrap_roc_auc(scores, np.arange(120) < 60, resamples=400,
                                                             seed=trial), [2.5, 97.5])
        covered += low <= population_auc <= high
    assert 0.88 <= covered / 200 <= 0.99



def test_unstratified_bootstrap_draws_the_same_test_examples_for_every_scoring_of_one_test_set():
    rng = np.random.default_rng(2)
    scores = rng.random((2, 50))  # two models' (or two normal classes') scores of the same 50 examples
    labels = rng.random((2, 50)) < 0.5
    runs = [evaluate.bootstrap_roc_auc(s, y, resamples=30, seed=7, stratify=False) for s, y in zip(scores, labels)]
    indices = np.random.default_rng(7).integers(0, 50, size=(30, 50))
    for run, s, y in zip(runs, scores, labels):
        expected = [evaluate.roc_auc(s[i], y[i]) for i in indices]
        np.testing.assert_allclose(run, expected, rtol=1e-12)
    # So the element-wise mean is the bootstrap of the mean AUC, resample by resample.
    np.testing.assert_allclose(np.mean(runs, axis=0), np.mean([[evaluate.roc_auc(s[i], y[i]) for s, y in
                                                                zip(scores, labels)] for i in indices], axis=1))


def test_unstratified_resample_without_one_class_is_nan():
    # One anomaly among three examples: some of 200 resamples of three draws miss it.
    aucs = evaluate.bootstrap_roc_auc([0.1, 0.2, 0.9], [0, 0, 1], resamples=200, stratify=False)
    assert np.isnan(aucs).any() and np.all(aucs[~np.isnan(aucs)] == 1.0)

def test_bootstrap_roc_auc_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match="resamples"):
        evaluate.bootstrap_roc_auc([0.1, 0.9], [0, 1], resamples=0)
    with pytest.raises(ValueError, match="at least one anomaly and one normal"):
        evaluate.bootstrap_roc_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="same length"):
        evaluate.bootstrap_roc_auc([0.1, 0.2, 0.3], [0, 1])

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


def test_plot_latent_panels_draws_one_scatter_per_panel_and_blanks_the_rest(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 50)
    panels = {"d=2": (rng.normal(size=(50, 2)), labels), "d=8": (rng.normal(size=(50, 8)), labels, list("abcdefghij")),
              "d=16": (rng.normal(size=(50, 16)), labels)}
    fig = plots.plot_latent_panels(panels, ncols=2, path=tmp_path / "latent.png")
    scatters = [ax for ax in fig.axes if ax.get_title()]  # the colour bars are axes too, untitled
    assert [ax.get_title() for ax in scatters] == ["d=2", "d=8", "d=16"]
    assert scatters[0].get_xlabel() == "z[0]" and scatters[1].get_xlabel().startswith("PC 1 (")  # PCA for d > 2
    blank = [ax for ax in fig.axes if not ax.collections and not ax.axison]
    assert len(blank) == 1  # 3 panels on a 2 x 2 grid
    assert (tmp_path / "latent.png").stat().st_size > 0
    plt.close(fig)


def test_plot_latent_panels_draw_every_panel_on_one_scale_unless_asked_not_to():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    panels = {"wide": (15 * rng.normal(size=(200, 2)), labels), "narrow": (rng.normal(size=(200, 2)), labels)}
    fig = plots.plot_latent_panels(panels, ncols=2)
    wide, narrow = [ax for ax in fig.axes if ax.get_title()]
    assert wide.get_xlim() == narrow.get_xlim() == wide.get_ylim() == narrow.get_ylim()
    assert wide.get_xlim()[1] > 30  # the wide codes' range, not the narrow ones'
    fig = plots.plot_latent_panels(panels, ncols=2, same_scale=False)
    wide, narrow = [ax for ax in fig.axes if ax.get_title()]
    assert narrow.get_xlim()[1] < wide.get_xlim()[1] / 4
    with pytest.raises(TypeError, match="same_scale"):
        plots.plot_latent_panels(panels, same_scale="yes")
    plt.close("all")


def test_plot_roc_draws_each_models_curve_with_its_auc_and_the_chance_line():
    scores, is_anomaly = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    fig = plots.plot_roc({"split": {"perfect": (is_anomaly * 1.0, is_anomaly), "noisy": (scores, is_anomaly)}})
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert legend == ["perfect (AUC 1.000)", f"noisy (AUC {evaluate.roc_auc(scores, is_anomaly):.3f})", "chance"]
    assert evaluate.roc_auc(scores, is_anomaly) == pytest.approx(0.75)
    plt.close(fig)


def test_save_figure_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "new folder" / "figure.png"
    path.parent.mkdir()
    path.write_bytes(b"old")
    assert plots.save_figure(fig, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(path.parent) == ["figure.png"]
    plt.close(fig)


def test_save_figure_keeps_the_old_file_when_saving_fails(tmp_path):
    path = tmp_path / "figure.png"
    path.write_bytes(b"old")

    class Broken:
        def savefig(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        plots.save_figure(Broken(), path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["figure.png"]
