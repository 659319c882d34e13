"""`vaekit.explorer`: sliders over a latent code, and the static figure where widgets cannot show."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import vaekit
from vaekit import explorer, plots


@pytest.fixture
def no_flags(monkeypatch):
    monkeypatch.delenv("VAEKIT_QUICK", raising=False)
    monkeypatch.delenv(explorer.STATIC_VARIABLE, raising=False)


def small_vae(latent_dim: int):
    return vaekit.fc_vae(latent_dim=latent_dim, hidden_units=8, input_shape=(4, 4, 1), seed=1)


def test_static_figure_for_a_2d_code_is_the_decoded_grid(capsys, no_flags):
    figure = explorer.explore_latent(small_vae(2), static=True)
    assert isinstance(figure, plt.Figure) and len(figure.axes) == 1
    assert figure.axes[0].get_xlabel() == "z[0]" and figure.axes[0].get_ylabel() == "z[1]"
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["explore_latent: no sliders (static=True); showing the decoded grid instead."]
    plt.close(figure)


def test_static_figure_traverses_up_to_max_sliders_dimensions(capsys, no_flags):
    figure = explorer.explore_latent(small_vae(5), max_sliders=3, static=True, values=(-2.0, 0.0, 2.0, 4.0))
    assert len(figure.axes) == 3 * 4  # a row per shown dimension, a panel per value
    assert [figure.axes[4 * row].get_ylabel() for row in range(3)] == ["z[0]", "z[1]", "z[2]"]
    assert "a traversal of z[0..2]" in capsys.readouterr().out
    plt.close(figure)


def test_without_a_notebook_or_in_quick_mode_it_falls_back_and_says_why(capsys, monkeypatch, no_flags):
    assert explorer.widget_frontend() == (False, "not in a Jupyter notebook")
    plt.close(explorer.explore_latent(small_vae(2)))
    assert "(not in a Jupyter notebook)" in capsys.readouterr().out
    monkeypatch.setenv("VAEKIT_QUICK", "1")
    assert explorer.widget_frontend() == (False, "$VAEKIT_QUICK is set")
    monkeypatch.delenv("VAEKIT_QUICK")
    monkeypatch.setenv(explorer.STATIC_VARIABLE, "1")
    assert explorer.widget_frontend() == (False, "$VAEKIT_STATIC_PLOTS is set")


def test_moving_a_slider_decodes_the_new_code():
    vae = small_vae(5)
    sliders = explorer.LatentExplorer(vae, max_sliders=3)
    assert len(sliders.sliders) == 3 and [s.description for s in sliders.sliders] == ["z[0]", "z[1]", "z[2]"]
    first = sliders.image.copy()
    np.testing.assert_allclose(first, plots.decode(vae, np.zeros((1, 5)))[0], atol=1e-6)
    first_png = bytes(sliders.picture.value)
    assert first_png.startswith(b"\x89PNG")
    sliders.sliders[1].value = 2.5  # the slider's observer calls update()
    np.testing.assert_array_equal(sliders.z, [0.0, 2.5, 0.0, 0.0, 0.0])
    assert np.abs(sliders.image - first).max() > 1e-4 and bytes(sliders.picture.value) != first_png
    np.testing.assert_allclose(sliders.image, plots.decode(vae, sliders.z[None])[0], atol=1e-6)


def test_explore_latent_gives_the_sliders_where_a_frontend_exists(monkeypatch, capsys):
    monkeypatch.setattr(explorer, "widget_frontend", lambda: (True, None))
    shown = explorer.explore_latent(small_vae(2).decoder, extent=2.0)
    assert isinstance(shown, explorer.LatentExplorer) and len(shown.sliders) == 2
    assert shown.sliders[0].min == -2.0 and shown.sliders[0].max == 2.0
    assert capsys.readouterr().out == ""


def test_bad_arguments_are_named():
    vae = small_vae(2)
    with pytest.raises(ValueError, match=r"`max_sliders` must be a positive integer \(>= 1\), got 0"):
        explorer.explore_latent(vae, max_sliders=0)
    with pytest.raises(ValueError, match=r"`extent` must be a finite number > 0, got -1"):
        explorer.explore_latent(vae, extent=-1)
    with pytest.raises(TypeError, match=r"`static` must be True or False, got 'yes'"):
        explorer.explore_latent(vae, static="yes")
    with pytest.raises(TypeError, match=r"`model` must be a vaekit.VAE or its decoder"):
        explorer.explore_latent(np.zeros(3))
    conditional = vaekit.conditional_conv_vae(num_classes=2, hidden_units=2, input_shape=(4, 4, 1), filters=(2,))
    with pytest.raises(TypeError, match=r"draw it with `vaekit.cvae.generate"):
        explorer.explore_latent(conditional)


def small_cvae():
    return vaekit.conditional_conv_vae(num_classes=3, latent_dim=2, hidden_units=4, input_shape=(8, 8, 1),
                                       filters=(4, 4), seed=1)


def test_a_conditional_vae_is_explored_as_the_class_given_by_label(capsys, no_flags):
    model = small_cvae()
    sliders = explorer.LatentExplorer(explorer.LabelledDecoder(model, 2))
    sliders.sliders[0].value = 1.5
    expected = vaekit.cvae.generate(model, [2], z=sliders.z[None])[0, 0]
    np.testing.assert_allclose(sliders.image, expected, atol=1e-6)
    other_class = vaekit.cvae.generate(model, [0], z=sliders.z[None])[0, 0]
    assert np.abs(sliders.image - other_class).max() > 1e-4  # the label reaches the decoder
    # The static figure: the decoded grid, each cell the code decoded as that class.
    figure = explorer.explore_latent(model, label=2, static=True)
    grid = np.asarray(figure.axes[0].images[0].get_array())
    corner = vaekit.cvae.generate(model, [2], z=np.array([[-3.0, 3.0]], "float32"))[0, 0, ..., 0]
    assert grid.shape == (15 * 8, 15 * 8)
    np.testing.assert_allclose(grid[:8, :8], corner, atol=1e-5)
    plt.close(figure)
    assert "showing the decoded grid instead" in capsys.readouterr().out


def test_label_is_required_for_a_conditional_vae_and_refused_otherwise():
    with pytest.raises(TypeError, match=r"pass `label=`, one of 0..2 \(e.g. explore_latent\(model, label=2\)\)"):
        explorer.explore_latent(small_cvae(), static=True)
    with pytest.raises(ValueError, match=r"`label` must lie in 0..2 \(the model's classes\), got 3"):
        explorer.explore_latent(small_cvae(), label=3, static=True)
    with pytest.raises(TypeError, match=r"`label` must be one integer class, got \[1, 2\]"):
        explorer.explore_latent(small_cvae(), label=[1, 2], static=True)
    with pytest.raises(ValueError, match=r"`label` is for a ConditionalVAE.*leave `label` out \(got 1\)"):
        explorer.explore_latent(small_vae(2), label=1, static=True)
