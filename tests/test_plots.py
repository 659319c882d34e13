"""Every plot returns a Figure, saves a PNG on request, and draws the right thing."""

import keras
import matplotlib
import numpy as np
import pytest

import vaekit
from vaekit import plots

pytestmark = pytest.mark.oldest_versions  # .ci/run's stage on the oldest Keras and TensorFlow


class CountingDecoder:
    """A stand-in decoder (z -> 28x28 image) that counts its predict calls."""

    def __init__(self, latent_dim=2):
        self.input_shape = (None, latent_dim)
        self.calls = 0

    def predict(self, z, **kwargs):
        self.calls += 1
        z = np.asarray(z)
        return np.broadcast_to(np.tanh(np.abs(z[:, :1, None, None])), (len(z), 28, 28, 1)).copy()


def images(n=6, shape=(28, 28, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


def test_plot_reconstructions_saves_png(tmp_path):
    fig = plots.plot_reconstructions(images(), images(seed=1), n=5, path=tmp_path / "r.png")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 10
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_show_images_accepts_flat_and_colour_images():
    assert len(plots.show_images([images().reshape(6, 784)]).axes) == 6
    assert len(plots.show_images([images(shape=(8, 8, 3)) * 2 - 1], value_range=(-1, 1)).axes) == 6
    with pytest.raises(ValueError, match="not square"):
        plots.show_images([np.zeros((2, 10))])


def test_plot_history_draws_train_and_validation_per_metric():
    history = {"loss": [3, 2, 1], "kl_loss": [1, 2, 3], "val_loss": [4, 3, 2], "val_kl_loss": [2, 2, 2]}
    fig = plots.plot_history(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "kl loss"]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)


def test_plot_history_marks_epochs_of_short_runs_and_takes_a_log_epoch_axis():
    short = plots.plot_history({"loss": [3.0, 2.0, 1.0]})
    assert short.axes[0].get_lines()[0].get_marker() == "." and short.axes[0].get_xscale() == "linear"
    long = plots.plot_history({"loss": np.linspace(3, 1, 500), "val_loss": np.linspace(4, 2, 500)}, logx=True)
    assert [line.get_marker() for line in long.axes[0].get_lines()] == ["None", "None"]
    assert long.axes[0].get_xscale() == "log"


def test_project_2d_keeps_2d_codes_and_uses_pca_beyond():
    z2 = np.random.default_rng(0).standard_normal((50, 2))
    coords, names = plots.project_2d(z2)
    np.testing.assert_array_equal(coords, z2)
    assert names == ("z[0]", "z[1]")
    # Points on a line in 5-D: the first principal component carries all the variance.
    t = np.linspace(-1, 1, 50)[:, None]
    coords, names = plots.project_2d(t * np.array([[1.0, 2.0, 0.0, -1.0, 0.5]]))
    assert names == ("PC 1 (100 % of the variance)", "PC 2 (0 % of the variance)")
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(t[:, 0]) * np.sqrt(6.25), rtol=1e-6)
    np.testing.assert_allclose(coords[:, 1], 0, atol=1e-9)


def test_latent_scatter_colours_by_label(tmp_path):
    fig = plots.plot_latent_scatter(np.random.rand(40, 16), np.arange(40) % 10, path=tmp_path / "s.png")
    assert "principal components" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel().startswith("PC 1 (") and fig.axes[0].get_xlabel().endswith("% of the variance)")
    assert (tmp_path / "s.png").exists()
    assert fig.axes[1].get_ylabel() == "label"  # the colour bar says what the colours are
    fig = plots.plot_latent_scatter(np.random.rand(40, 2), np.arange(40) % 10, label_name="digit")
    assert fig.axes[1].get_ylabel() == "digit"


def test_latent_grid_is_decoded_in_one_batch_with_top_row_at_highest_z1():
    decoder = CountingDecoder()
    plots.plot_latent_grid(decoder, n=30)
    assert decoder.calls == 1
    grid = plots.latent_grid(3, extent=3.0)
    np.testing.assert_array_equal(grid[0], [-3, 3])
    np.testing.assert_array_equal(grid[-1], [3, -3])
    with pytest.raises(ValueError, match="2-D latent"):
        plots.plot_latent_grid(CountingDecoder(latent_dim=5))


def test_prior_samples_are_seeded():
    decoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(784, activation="sigmoid")])
    np.testing.assert_array_equal(plots.sample_prior(decoder, 4, seed=1), plots.sample_prior(decoder, 4, seed=1))
    assert not np.array_equal(plots.sample_prior(decoder, 4, seed=1), plots.sample_prior(decoder, 4, seed=2))
    assert len(plots.plot_prior_samples(decoder, n=4, seed=0).axes) == 1


def test_interpolation_starts_and_ends_at_the_two_codes():
    decoder = CountingDecoder()
    encode = lambda x: x.reshape(len(x), -1)[:, :2]  # noqa: E731 - the code is two pixels
    a, b = np.full((28, 28, 1), 0.1, "float32"), np.full((28, 28, 1), 0.9, "float32")
    path = plots.interpolate(encode, decoder, a, b, steps=5)
    assert path.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(path[0], np.tanh(0.1), rtol=1e-6)
    np.testing.assert_allclose(path[-1], np.tanh(0.9), rtol=1e-6)


def test_latent_grid_axes_show_z_with_images_centred_on_their_codes():
    fig = plots.plot_latent_grid(CountingDecoder(), n=7, extent=3.0)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "z[0]" and ax.get_ylabel() == "z[1]"
    np.testing.assert_array_equal(ax.get_xticks(), [-3, -2, -1, 0, 1, 2, 3])
    # 7 images over [-3, 3]: centres 1 apart, so the canvas reaches half a cell beyond +-3.
    np.testing.assert_allclose(ax.images[0].get_extent(), [-3.5, 3.5, -3.5, 3.5])
    np.testing.assert_allclose([*ax.get_xlim(), *ax.get_ylim()], [-3.5, 3.5, -3.5, 3.5])  # the axes show z, not pixels


def test_latent_grid_outlines_the_region_holding_the_requested_mass_of_codes():
    codes = np.random.default_rng(0).normal([1.5, -1.5], 0.3, size=(4000, 2))
    density, (level,) = plots._density_levels(codes, edge=3.5, mass=0.9)
    centres = np.linspace(-3.5, 3.5, density.shape[0])
    at = lambda z0, z1: density[np.argmin(abs(centres - z0)), np.argmin(abs(centres - z1))]  # noqa: E731
    assert at(1.5, -1.5) > level > at(-1.5, 1.5)
    inside = density >= level
    bins = np.clip(((codes + 3.5) / 7.0 * density.shape[0]).astype(int), 0, density.shape[0] - 1)
    share = inside[bins[:, 0], bins[:, 1]].mean()
    assert 0.85 < share < 0.99  # about `mass`, not everything and not half
    fig = plots.plot_latent_grid(CountingDecoder(), n=5, codes=codes, mass=0.9)
    # The contour must not stretch the axes back to the image's pixel units.
    np.testing.assert_allclose([*fig.axes[0].get_xlim(), *fig.axes[0].get_ylim()], [-3.75, 3.75, -3.75, 3.75])
    assert "90% of the codes" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    with pytest.raises(ValueError, match="mass"):
        plots.plot_latent_grid(CountingDecoder(), codes=codes, mass=1.0)
    with pytest.raises(ValueError, match="codes"):
        plots.plot_latent_grid(CountingDecoder(), codes=codes[:, :1])


def test_latent_traversal_moves_one_dimension_per_row_and_holds_the_rest():
    decoder = keras.Sequential([keras.Input((3,)), keras.layers.Reshape((1, 3, 1))])  # the image shows z itself
    z = np.array([0.5, -0.25, 2.0])
    rows = plots.latent_traversal(decoder, z, dims=[2, 0], values=[-1.0, 0.0, 1.0])
    assert rows.shape == (2, 3, 1, 3, 1)
    shown = rows[..., 0, :, 0]  # (row, value, dimension)
    np.testing.assert_allclose(shown[0, :, 2], [-1, 0, 1])  # row 0 sweeps z[2]
    np.testing.assert_allclose(shown[0, :, :2], np.broadcast_to(z[:2], (3, 2)))  # ... and holds z[0], z[1]
    np.testing.assert_allclose(shown[1, :, 0], [-1, 0, 1])
    np.testing.assert_allclose(shown[1, :, 1:], np.broadcast_to(z[1:], (3, 2)))
    with pytest.raises(ValueError, match="dims"):
        plots.latent_traversal(decoder, z, dims=[3])
    with pytest.raises(ValueError, match="one code of length 3"):
        plots.latent_traversal(decoder, np.zeros(4), dims=[0])


def test_a_figure_save_that_fails_midway_leaves_the_previous_png_whole(tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    plots.plot_image_grid(images(4), path=path)
    before = path.read_bytes()

    def half_then_fail(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(before[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        plots.plot_image_grid(images(4, seed=1), path=path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_a_path_without_suffix_is_saved_as_png_like_savefig_does(tmp_path):
    plots.plot_image_grid(images(4), path=tmp_path / "grid")
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_plots_of_decoded_codes_take_a_vae_and_show_its_distribution_means():
    keras.utils.set_random_seed(0)
    vae = vaekit.fc_vae(latent_dim=2, hidden_units=8, input_shape=(4, 4, 1), reconstruction="continuous_bernoulli")
    z = np.random.default_rng(1).standard_normal((5, 2)).astype("float32")
    means = keras.ops.convert_to_numpy(vaekit.vae.distribution_mean("continuous_bernoulli", vae.decoder.predict(z, verbose=0)))
    np.testing.assert_allclose(plots.decode(vae, z), means, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plots.decode(vae.decoder, z), means, atol=1e-3)  # lambda is not the mean
    np.testing.assert_allclose(plots.sample_prior(vae, 5, seed=3), plots.decode(vae, np.random.default_rng(3)
                               .standard_normal((5, 2)).astype("float32")), rtol=1e-6)
    assert len(plots.plot_latent_grid(vae, n=3).axes) == 1  # a VAE, not only its decoder
    with pytest.raises(TypeError, match="vaekit.VAE or its decoder"):
        plots.sample_prior("decoder", 2)
