"""Every public function checks its arguments at the door: one test per kind of argument, each
parametrised over every public function of plots, explorer, data, export, evaluate, experiments and
training that takes one.

A refusal is a TypeError (the wrong kind of value) or a ValueError (a value outside what is
allowed) whose message names the argument in backquotes and shows what was given. It comes before
any work: no figure is drawn, nothing is decoded, no data file is looked for, nothing is written
(`refused` checks all four after every call).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import vaekit
from vaekit import data, evaluate, experiments, explorer, export, plots, training

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # "not a log-likelihood" on grey-level test images


class Decoder:
    """A stand-in decoder, z (n, 2) -> images (n, 4, 4, 1), that counts its calls: none may happen."""

    input_shape = (None, 2)

    def __init__(self):
        self.calls = 0

    def predict(self, z, **kwargs):
        self.calls += 1
        return np.full((len(z), 4, 4, 1), 0.5, "float32")


IMAGES = np.random.default_rng(0).random((4, 4, 4, 1)).astype("float32")
CODES = np.random.default_rng(1).normal(size=(6, 2))
HISTORY = {"loss": [3.0, 2.0], "kl_loss": [1.0, 0.5]}
SCORES, FLAGS = np.linspace(0, 1, 10), np.arange(10) >= 5


@pytest.fixture(scope="module")
def vae():
    vae = vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8, seed=1)
    vae.compile(optimizer="adam")
    return vae


@pytest.fixture
def s(tmp_path, monkeypatch, vae):
    """What the calls below use: the stand-in decoder, a tiny VAE, a folder to write in (also the working folder)."""
    monkeypatch.chdir(tmp_path)

    def looked_for_files(*args, **kwargs):
        raise AssertionError("the loader looked for data files before checking its arguments")

    monkeypatch.setattr(data, "_candidates", looked_for_files)
    (tmp_path / "existing folder").mkdir()
    yield SimpleNamespace(decoder=Decoder(), vae=vae, tmp=tmp_path, png=tmp_path / "figure.png", figure=plt.figure())
    plt.close("all")


def refused(s, call, value, error, name):
    """`call(value, s)` raises `error` naming `name`, before drawing, decoding or writing anything."""
    figures, files = set(plt.get_fignums()), sorted(s.tmp.rglob("*"))
    with pytest.raises(error) as raised:
        call(value, s)
    message = str(raised.value)
    assert f"`{name}" in message, message  # `name` or `name[0]`
    assert set(plt.get_fignums()) == figures, "drew a figure before checking its arguments"
    assert s.decoder.calls == 0, "decoded codes before checking its arguments"
    assert sorted(s.tmp.rglob("*")) == files, "wrote a file before checking its arguments"
    return message


def cases(table: dict) -> list:
    return [pytest.param(call, name, id=f"{function}:{name}") for (function, name), call in table.items()]


# --- Sizes and counts: integers >= 1 ---------------------------------------------------------------

COUNTS = {
    ("plot_reconstructions", "n"): lambda v, s: plots.plot_reconstructions(IMAGES, IMAGES, n=v),
    ("plot_image_grid", "ncols"): lambda v, s: plots.plot_image_grid(IMAGES, ncols=v),
    ("sample_prior", "n"): lambda v, s: plots.sample_prior(s.decoder, v),
    ("plot_prior_samples", "n"): lambda v, s: plots.plot_prior_samples(s.decoder, n=v),
    ("plot_prior_samples", "ncols"): lambda v, s: plots.plot_prior_samples(s.decoder, ncols=v),
    ("plot_latent_panels", "ncols"): lambda v, s: plots.plot_latent_panels({"a": (CODES, None)}, ncols=v),
    ("plot_image_panels", "ncols"): lambda v, s: plots.plot_image_panels({"a": IMAGES}, ncols=v),
    ("plot_image_panels", "panels_per_row"): lambda v, s: plots.plot_image_panels({"a": IMAGES}, panels_per_row=v),
    ("explore_latent", "max_sliders"): lambda v, s: explorer.explore_latent(s.decoder, max_sliders=v, static=True),
    ("static_figure", "max_sliders"): lambda v, s: explorer.static_figure(s.decoder, max_sliders=v),
    ("LatentExplorer", "max_sliders"): lambda v, s: explorer.LatentExplorer(s.decoder, max_sliders=v),
    ("LatentExplorer", "zoom"): lambda v, s: explorer.LatentExplorer(s.decoder, zoom=v),
    ("load_mnist", "limit"): lambda v, s: data.load_mnist(limit=v),
    ("load_mnist", "test_limit"): lambda v, s: data.load_mnist(test_limit=v),
    ("load_fashion_mnist", "limit"): lambda v, s: data.load_fashion_mnist(limit=v),
    ("load_fashion_mnist", "test_limit"): lambda v, s: data.load_fashion_mnist(test_limit=v),
    ("load_svhn", "limit"): lambda v, s: data.load_svhn(limit=v),
    ("load_svhn", "test_limit"): lambda v, s: data.load_svhn(test_limit=v),
    ("write_prediction_csv", "decimals"): lambda v, s: export.write_prediction_csv(s.tmp / "p.csv", IMAGES, IMAGES, decimals=v),
    ("prediction_columns", "num_pixels"): lambda v, s: export.prediction_columns(v),
    ("iwae_nll", "k"): lambda v, s: evaluate.iwae_nll(s.vae, IMAGES, k=v),
    ("iwae_nll_terms", "chunk_size"): lambda v, s: evaluate.iwae_nll_terms(s.vae, IMAGES, k=2, chunk_size=v),
    ("bootstrap_roc_auc", "resamples"): lambda v, s: evaluate.bootstrap_roc_auc(SCORES, FLAGS, resamples=v),
    ("cvae.generate", "num_codes"): lambda v, s: vaekit.cvae.generate(
        vaekit.conditional_conv_vae(num_classes=2, hidden_units=2, input_shape=(4, 4, 1), filters=(2,)), [0], num_codes=v),
}
# A grid or a path needs both of its ends: at least 2.
GRID_SIZES = {
    ("latent_grid", "n"): lambda v, s: plots.latent_grid(v),
    ("plot_latent_grid", "n"): lambda v, s: plots.plot_latent_grid(s.decoder, n=v),
    ("interpolate", "steps"): lambda v, s: plots.interpolate(lambda x: x.reshape(2, -1)[:, :2], s.decoder,
                                                             IMAGES[0], IMAGES[1], steps=v),
}


@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("4", TypeError),
                                          (True, TypeError)])
@pytest.mark.parametrize("call, name", cases({**COUNTS, **GRID_SIZES}))
def test_sizes_and_counts_must_be_positive_integers(s, call, name, value, error):
    message = refused(s, call, value, error, name)
    assert repr(value) in message or str(value) in message


@pytest.mark.parametrize("call, name", cases(GRID_SIZES))
def test_grids_and_paths_need_at_least_two_points(s, call, name):
    assert "must be an integer >= 2" in refused(s, call, 1, ValueError, name)


# --- Batch sizes ------------------------------------------------------------------------------------

BATCH_SIZES = {
    "decode": lambda v, s: plots.decode(s.decoder, CODES, batch_size=v),
    "elbo": lambda v, s: evaluate.elbo(s.vae, IMAGES, batch_size=v),
    "elbo_terms": lambda v, s: evaluate.elbo_terms(s.vae, IMAGES, batch_size=v),
    "latent_means": lambda v, s: evaluate.latent_means(s.vae, IMAGES, batch_size=v),
    "active_units": lambda v, s: evaluate.active_units(s.vae, IMAGES, batch_size=v),
    "iwae_nll": lambda v, s: evaluate.iwae_nll(s.vae, IMAGES, k=2, batch_size=v),
    "iwae_nll_terms": lambda v, s: evaluate.iwae_nll_terms(s.vae, IMAGES, k=2, batch_size=v),
    "DynamicBinarization": lambda v, s: data.DynamicBinarization(IMAGES, batch_size=v),
    "fit_resumable": lambda v, s: training.fit_resumable(s.vae, IMAGES, run_dir=s.tmp / "run", epochs=1, batch_size=v),
}


@pytest.mark.parametrize("value, error", [(0, ValueError), (-32, ValueError), (32.0, TypeError), ("32", TypeError)])
@pytest.mark.parametrize("function", BATCH_SIZES)
def test_batch_sizes_must_be_positive_integers(s, function, value, error):
    refused(s, BATCH_SIZES[function], value, error, "batch_size")


# --- Epochs -----------------------------------------------------------------------------------------

EPOCHS = {
    ("fit_resumable", "epochs"): lambda v, s: training.fit_resumable(s.vae, IMAGES, run_dir=s.tmp / "run", epochs=v),
    ("fit_resumable without a folder", "epochs"): lambda v, s: training.fit_resumable(s.vae, IMAGES, run_dir=None, epochs=v),
    ("experiments.epochs", "full_epochs"): lambda v, s: experiments.epochs(v),
}


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), ("10", TypeError),
                                          (None, TypeError)])
@pytest.mark.parametrize("call, name", cases(EPOCHS))
def test_epochs_must_be_positive_integers(s, call, name, value, error):
    refused(s, call, value, error, name)


# --- Extents and ranges -----------------------------------------------------------------------------

POSITIVE_NUMBERS = {
    ("latent_grid", "extent"): lambda v, s: plots.latent_grid(5, extent=v),
    ("plot_latent_grid", "extent"): lambda v, s: plots.plot_latent_grid(s.decoder, extent=v),
    ("explore_latent", "extent"): lambda v, s: explorer.explore_latent(s.decoder, extent=v, static=True),
    ("static_figure", "extent"): lambda v, s: explorer.static_figure(s.decoder, extent=v),
    ("LatentExplorer", "extent"): lambda v, s: explorer.LatentExplorer(s.decoder, extent=v),
    ("LatentExplorer", "step"): lambda v, s: explorer.LatentExplorer(s.decoder, step=v),
    ("show_images", "scale"): lambda v, s: plots.show_images([IMAGES], scale=v),
    ("plot_image_grid", "scale"): lambda v, s: plots.plot_image_grid(IMAGES, scale=v),
    ("plot_image_panels", "panel_size"): lambda v, s: plots.plot_image_panels({"a": IMAGES}, panel_size=v),
    ("save_figure", "dpi"): lambda v, s: plots.save_figure(s.figure, s.png, dpi=v),
    ("plot_latent_panels", "panel_size[0]"): lambda v, s: plots.plot_latent_panels({"a": (CODES, None)}, panel_size=(v, 4)),
    ("plot_roc", "panel_size[1]"): lambda v, s: plots.plot_roc({"test": {"m": (SCORES, FLAGS)}}, panel_size=(5, v)),
}
FRACTIONS = {("plot_latent_grid", "mass"): lambda v, s: plots.plot_latent_grid(s.decoder, codes=CODES, mass=v)}
NON_NEGATIVE = {("active_units", "threshold"): lambda v, s: evaluate.active_units(s.vae, IMAGES, threshold=v)}
VALUE_RANGES = {
    (function, "value_range"): call for function, call in {
        "show_images": lambda v, s: plots.show_images([IMAGES], value_range=v),
        "plot_reconstructions": lambda v, s: plots.plot_reconstructions(IMAGES, IMAGES, value_range=v),
        "plot_image_grid": lambda v, s: plots.plot_image_grid(IMAGES, value_range=v),
        "plot_prior_samples": lambda v, s: plots.plot_prior_samples(s.decoder, value_range=v),
        "plot_image_panels": lambda v, s: plots.plot_image_panels({"a": IMAGES}, value_range=v),
    }.items()
}
SIZE_PAIRS = {
    ("plot_latent_panels", "panel_size"): lambda v, s: plots.plot_latent_panels({"a": (CODES, None)}, panel_size=v),
    ("plot_roc", "panel_size"): lambda v, s: plots.plot_roc({"test": {"m": (SCORES, FLAGS)}}, panel_size=v),
}
VALUE_LISTS = {
    ("latent_traversal", "values"): lambda v, s: plots.latent_traversal(s.decoder, np.zeros(2), [0], values=v),
    ("explore_latent", "values"): lambda v, s: explorer.explore_latent(s.decoder, values=v, static=True),
    ("static_figure", "values"): lambda v, s: explorer.static_figure(s.decoder, values=v),
}
RANGE_KINDS = [  # (the functions, a value outside the range, the error)
    *[(POSITIVE_NUMBERS, value, error) for value, error in
      [(0, ValueError), (-1.5, ValueError), (math.nan, ValueError), (math.inf, ValueError), ("2", TypeError),
       (True, TypeError)]],
    *[(FRACTIONS, value, error) for value, error in
      [(0.0, ValueError), (1, ValueError), (1.5, ValueError), (math.nan, ValueError), ("0.9", TypeError)]],
    *[(NON_NEGATIVE, value, error) for value, error in [(-0.1, ValueError), (math.nan, ValueError), ("0", TypeError)]],
    *[(VALUE_RANGES, value, error) for value, error in
      [((1, 0), ValueError), ((0, 0), ValueError), ((0, math.inf), ValueError), ((0,), TypeError), ("01", TypeError),
       ((0, "1"), TypeError), (None, TypeError)]],
    *[(SIZE_PAIRS, value, error) for value, error in [(5, TypeError), ((5,), TypeError), ((5, 4, 3), TypeError)]],
    *[(VALUE_LISTS, value, error) for value, error in [([], ValueError), ([0, math.nan], ValueError),
                                                       ("abc", TypeError), ([[1, 2]], TypeError)]],
]


@pytest.mark.parametrize("call, name, value, error", [
    pytest.param(call, name, value, error, id=f"{function}:{name}={value!r}")
    for table, value, error in RANGE_KINDS for (function, name), call in table.items()])
def test_extents_and_ranges_must_lie_in_what_is_allowed(s, call, name, value, error):
    refused(s, call, value, error, name)


# --- Folders and paths ------------------------------------------------------------------------------

FILE_PATHS = {  # files written, optional where None saves nothing
    "show_images": lambda v, s: plots.show_images([IMAGES], path=v),
    "plot_reconstructions": lambda v, s: plots.plot_reconstructions(IMAGES, IMAGES, path=v),
    "plot_image_grid": lambda v, s: plots.plot_image_grid(IMAGES, path=v),
    "plot_history": lambda v, s: plots.plot_history(HISTORY, path=v),
    "plot_histories": lambda v, s: plots.plot_histories({"a": HISTORY}, path=v),
    "plot_latent_scatter": lambda v, s: plots.plot_latent_scatter(CODES, path=v),
    "plot_latent_panels": lambda v, s: plots.plot_latent_panels({"a": (CODES, None)}, path=v),
    "plot_latent_grid": lambda v, s: plots.plot_latent_grid(s.decoder, path=v),
    "plot_prior_samples": lambda v, s: plots.plot_prior_samples(s.decoder, path=v),
    "plot_image_panels": lambda v, s: plots.plot_image_panels({"a": IMAGES}, path=v),
    "plot_roc": lambda v, s: plots.plot_roc({"test": {"m": (SCORES, FLAGS)}}, path=v),
    "save_figure": lambda v, s: plots.save_figure(s.figure, v),
    "explore_latent": lambda v, s: explorer.explore_latent(s.decoder, static=True, path=v),
    "static_figure": lambda v, s: explorer.static_figure(s.decoder, path=v),
    "write_prediction_csv": lambda v, s: export.write_prediction_csv(v, IMAGES, IMAGES),
    "save_table": lambda v, s: experiments.save_table(pd.DataFrame({"a": [1]}), v),
}
READ_PATHS = {
    ("read_prediction_csv", "path"): lambda v, s: export.read_prediction_csv(v),
    ("read_idx", "path"): lambda v, s: data.read_idx(v),
}
FOLDERS = {
    ("load_mnist", "data_dir"): lambda v, s: data.load_mnist(v),
    ("load_fashion_mnist", "data_dir"): lambda v, s: data.load_fashion_mnist(v),
    ("load_svhn", "data_dir"): lambda v, s: data.load_svhn(v),
    ("fit_resumable", "run_dir"): lambda v, s: training.fit_resumable(s.vae, IMAGES, run_dir=v, epochs=1),
    ("RunCheckpoint", "run_dir"): lambda v, s: training.RunCheckpoint(v),
}
NAMES = {  # names of a folder or table, never paths
    ("run_dir", "name"): lambda v, s: experiments.run_dir(v),
    ("output_dir", "kind"): lambda v, s: experiments.output_dir(v),
    ("recorded_runs", "table"): lambda v, s: experiments.recorded_runs(v),
}
PATH_KINDS = [
    *[({(f, "path"): call for f, call in FILE_PATHS.items()}, value, error) for value, error in
      [(123, TypeError), (b"figure.png", TypeError), ("", ValueError), ("existing folder", ValueError)]],
    *[(READ_PATHS, value, TypeError) for value in (123, None)],
    *[(FOLDERS, value, error) for value, error in [(123, TypeError), (b"folder", TypeError), ("", ValueError)]],
    *[(NAMES, value, ValueError) for value in ("", "a/b", "..")],
]


@pytest.mark.parametrize("call, name, value, error", [
    pytest.param(call, name, value, error, id=f"{function}:{name}={value!r}")
    for table, value, error in PATH_KINDS for (function, name), call in table.items()])
def test_folders_and_paths_are_checked_before_anything_is_drawn_or_written(s, call, name, value, error):
    message = refused(s, call, value, error, name)
    if value == "existing folder":
        assert "is an existing folder; pass a file in it" in message


def test_a_figure_path_may_not_be_left_out_of_save_figure(s):
    refused(s, lambda v, s: plots.save_figure(s.figure, v), None, TypeError, "path")


def test_a_table_name_is_given_without_its_csv_suffix(s):
    assert "'source_check_runs'" in refused(s, lambda v, s: experiments.recorded_runs(v), "source_check_runs.csv",
                                          ValueError, "table")


# --- Seeds: None or an integer >= 0 ---------------------------------------------------------------------

SEEDS = {
    "sample_prior": lambda v, s: plots.sample_prior(s.decoder, 2, seed=v),
    "plot_prior_samples": lambda v, s: plots.plot_prior_samples(s.decoder, seed=v),
    "binarize": lambda v, s: data.binarize(IMAGES, seed=v),
    "DynamicBinarization": lambda v, s: data.DynamicBinarization(IMAGES, seed=v),
    "load_mnist": lambda v, s: data.load_mnist(binarize=True, seed=v),
    "load_fashion_mnist": lambda v, s: data.load_fashion_mnist(binarize=True, seed=v),
    "elbo": lambda v, s: evaluate.elbo(s.vae, IMAGES, seed=v),
    "elbo_terms": lambda v, s: evaluate.elbo_terms(s.vae, IMAGES, seed=v),
    "iwae_nll": lambda v, s: evaluate.iwae_nll(s.vae, IMAGES, k=2, seed=v),
    "iwae_nll_terms": lambda v, s: evaluate.iwae_nll_terms(s.vae, IMAGES, k=2, seed=v),
    "bootstrap_roc_auc": lambda v, s: evaluate.bootstrap_roc_auc(SCORES, FLAGS, resamples=5, seed=v),
    "describe_run": lambda v, s: experiments.describe_run(v),
    "setup": lambda v, s: experiments.setup(v),
}


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)])
@pytest.mark.parametrize("function", SEEDS)
def test_seeds_must_be_integers_from_zero(s, function, value, error):
    refused(s, SEEDS[function], value, error, "seed")


# --- Switches: True or False, not a truthy string --------------------------------------------------------

SWITCHES = {
    ("plot_history", "logy"): lambda v, s: plots.plot_history(HISTORY, logy=v),
    ("plot_history", "logx"): lambda v, s: plots.plot_history(HISTORY, logx=v),
    ("plot_histories", "logy"): lambda v, s: plots.plot_histories({"a": HISTORY}, logy=v),
    ("plot_latent_panels", "same_scale"): lambda v, s: plots.plot_latent_panels({"a": (CODES, None)}, same_scale=v),
    ("explore_latent", "static"): lambda v, s: explorer.explore_latent(s.decoder, static=v),
    ("load_mnist", "binarize"): lambda v, s: data.load_mnist(binarize=v),
    ("load_fashion_mnist", "binarize"): lambda v, s: data.load_fashion_mnist(binarize=v),
    ("bootstrap_roc_auc", "stratify"): lambda v, s: evaluate.bootstrap_roc_auc(SCORES, FLAGS, stratify=v),
}


@pytest.mark.parametrize("value", ["no", 1, None])
@pytest.mark.parametrize("call, name", cases(SWITCHES))
def test_switches_must_be_true_or_false(s, call, name, value):
    assert "must be True or False" in refused(s, call, value, TypeError, name)


# --- Lists of names and collections of panels ----------------------------------------------------------

COLLECTIONS = [  # (function, argument, call, bad value, error)
    ("plot_history", "keys", lambda v, s: plots.plot_history(HISTORY, keys=v), "loss", TypeError),
    ("plot_history", "keys", lambda v, s: plots.plot_history(HISTORY, keys=v), ["kl"], ValueError),
    ("plot_history", "history", lambda v, s: plots.plot_history(v), {}, ValueError),
    ("plot_histories", "keys", lambda v, s: plots.plot_histories({"a": HISTORY}, keys=v), [], ValueError),
    ("plot_histories", "keys", lambda v, s: plots.plot_histories({"a": HISTORY}, keys=v), ["val_loss"], ValueError),
    ("plot_histories", "titles", lambda v, s: plots.plot_histories({"a": HISTORY}, titles=v), ["a", "b"], ValueError),
    ("plot_histories", "histories", lambda v, s: plots.plot_histories(v), [HISTORY], TypeError),
    ("show_images", "rows", lambda v, s: plots.show_images(v), IMAGES, TypeError),
    ("show_images", "rows", lambda v, s: plots.show_images(v), [], ValueError),
    ("show_images", "row_titles", lambda v, s: plots.show_images([IMAGES, IMAGES], v), ["one"], ValueError),
    ("latent_traversal", "dims", lambda v, s: plots.latent_traversal(s.decoder, np.zeros(2), v), [0.5], TypeError),
    ("latent_traversal", "dims", lambda v, s: plots.latent_traversal(s.decoder, np.zeros(2), v), [2], ValueError),
    ("plot_latent_panels", "panels", lambda v, s: plots.plot_latent_panels(v), {}, ValueError),
    ("plot_latent_panels", "panels['a']", lambda v, s: plots.plot_latent_panels(v), {"a": CODES}, ValueError),
    ("plot_image_panels", "panels", lambda v, s: plots.plot_image_panels(v), [IMAGES], TypeError),
    ("plot_roc", "panels['test']['m']", lambda v, s: plots.plot_roc(v), {"test": {"m": SCORES}}, ValueError),
    ("decode", "z", lambda v, s: plots.decode(s.decoder, v), np.zeros((0, 2)), ValueError),
    ("decode", "z", lambda v, s: plots.decode(s.decoder, v), np.zeros((3, 5)), ValueError),
    ("interpolate", "encode", lambda v, s: plots.interpolate(v, s.decoder, IMAGES[0], IMAGES[1]), "encoder", TypeError),
    ("save_table", "frame", lambda v, s: experiments.save_table(v, s.tmp / "table"), {"a": [1]}, TypeError),
]


@pytest.mark.parametrize("call, name, value, error", [
    pytest.param(call, name, value, error, id=f"{function}:{name}[{index}]")
    for index, (function, name, call, value, error) in enumerate(COLLECTIONS)])
def test_lists_and_collections_are_checked_by_name(s, call, name, value, error):
    refused(s, call, value, error, name)


def test_interpolate_refuses_an_encoder_that_returns_mean_log_variance_and_sample():
    encoder = lambda x: [x.reshape(2, -1)[:, :2]] * 3  # noqa: E731 - as `vae.encoder` returns them
    with pytest.raises(TypeError, match=r"`encode` returned 3 outputs.*lambda x: vae.encoder\(x\)\[0\]"):
        plots.interpolate(encoder, Decoder(), IMAGES[0], IMAGES[1])


# --- fit_resumable's own arguments: refused before the run folder is made ---------------------------------

def uncompiled(s):
    return vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8)


FIT_RESUMABLE = [  # (what, keyword arguments besides model, x, run_dir and epochs, the error, the message)
    ("a misspelt keyword", {"batchsize": 8}, TypeError, r"unexpected keyword argument `batchsize`.*Did you mean `batch_size`"),
    ("an unknown keyword", {"learning_rate": 1e-3}, TypeError, r"unexpected keyword argument `learning_rate`"),
    ("initial_epoch", {"initial_epoch": 1}, TypeError, "takes no `initial_epoch`"),
    ("a config that is not a dict", {"config": [("d", 2)]}, TypeError, r"`config` must be a dict"),
    ("an object in config", {"config": {"optimizer": keras.optimizers.Adam()}}, TypeError,
     r"`config` must hold JSON data only.*Adam"),
    ("NaN in config", {"config": {"beta": math.nan}}, TypeError, r"`config` must hold JSON data only.*finite"),
    ("callbacks not in a list", {"callbacks": keras.callbacks.History()}, TypeError, r"`callbacks` must be a list"),
    ("a model that is not one", {"model": "vae"}, TypeError, r"`model` must be a compiled keras.Model"),
    ("an uncompiled model", {"model": uncompiled}, ValueError, r"`model` \(.*\) is not compiled"),
]


@pytest.mark.parametrize("what, kwargs, error, match", [pytest.param(*case, id=case[0]) for case in FIT_RESUMABLE])
def test_fit_resumable_refuses_its_own_arguments_before_the_folder_is_made(s, what, kwargs, error, match):
    kwargs = dict(kwargs)
    model = kwargs.pop("model", s.vae)
    model = uncompiled(s) if model is uncompiled else model
    with pytest.raises(error, match=match):
        training.fit_resumable(model, IMAGES, run_dir=s.tmp / "run", epochs=1, verbose=0, **kwargs)
    assert not (s.tmp / "run").exists()


def test_fit_resumable_still_passes_on_what_fit_takes(s):
    history = training.fit_resumable(s.vae, IMAGES, run_dir=s.tmp / "run", epochs=1, batch_size=2, shuffle=False,
                                     verbose=0, validation_data=(IMAGES,), stop_on_nonfinite=True,
                                     config={"d": 2, "sizes": (8,)})
    assert set(history) >= {"loss", "val_loss"}


# --- docs/troubleshooting.md's table of these messages stays true ------------------------------------------

DOCUMENTED = [  # (a call that is refused, the start of its message as the table shows it)
    (lambda: plots.plot_reconstructions(IMAGES, IMAGES, n=0), "`n` must be a positive integer (>= 1), got 0."),
    (lambda: plots.latent_grid(1), "`n` must be an integer >= 2 (an n x n grid from -extent to +extent), got 1."),
    (lambda: plots.latent_grid(5, extent=-1), "`extent` must be a finite number > 0, got -1."),
    (lambda: plots.plot_latent_grid(Decoder(), mass=1.0), "`mass` must lie strictly between 0 and 1, got 1.0."),
    (lambda: plots.show_images([IMAGES], value_range=(1, 0)),
     "`value_range` must be (low, high) with finite low < high, e.g. (0, 1) or (-1, 1), got (1, 0)."),
    (lambda: plots.sample_prior(Decoder(), 2, seed=-1), "`seed` must be None or an integer >= 0, got -1."),
    (lambda: plots.plot_history(HISTORY, logy="no"), "`logy` must be True or False, got 'no'."),
    (lambda: plots.plot_history(HISTORY, keys=["kl"]), "`keys` names 'kl', which the history does not hold; it holds ["),
    (lambda: plots.show_images(IMAGES), "`rows` must be a list of image batches, one per row (e.g. [originals, "
                                        "reconstructions]), got ndarray"),
    (lambda: plots.interpolate(lambda x: [x] * 3, Decoder(), IMAGES[0], IMAGES[1]),
     "`encode` returned 3 outputs, not one batch of codes"),
    (lambda: data.load_mnist(3), "`data_dir` must be a folder path (str or pathlib.Path), or None to use "
                                 "$VAEKIT_DATA_DIR, got 3 (int)."),
    (lambda: experiments.recorded_runs("source_check_runs.csv"),
     "`table` is the table's name without .csv, e.g. 'source_check_runs', got 'source_check_runs.csv'."),
    (lambda: training.fit_resumable(vaekit.fc_vae(input_shape=(4, 4, 1), latent_dim=2, hidden_units=8), IMAGES,
                                    run_dir="run", epochs=1), "`model` (fc_vae) is not compiled: call "
                                                              "`model.compile(optimizer=...)` before fit_resumable."),
]


@pytest.mark.parametrize("call, documented", DOCUMENTED, ids=[text.split(" ")[0] for _, text in DOCUMENTED])
def test_the_troubleshooting_table_shows_the_messages_as_they_are(s, call, documented):
    from tiny import ROOT

    table = (ROOT / "docs" / "troubleshooting.md").read_text()
    with pytest.raises((TypeError, ValueError)) as raised:
        call()
    assert str(raised.value).startswith(documented), str(raised.value)
    assert documented.rstrip(".[") in table, f"docs/troubleshooting.md lacks: {documented}"
