"""Explore a latent space by hand: one slider per latent dimension, the decoded image live.

`explore_latent(model)` in a Jupyter notebook shows sliders over z (one per dimension,
up to `max_sliders`; the others stay at 0) beside the image decoded from z, redrawn as
a slider moves. Where no widget can be shown (plain Python, a notebook executed without
a browser such as nbval's or nbconvert's quick runs, ipywidgets missing) it draws a
static figure instead and says so in one printed line: the decoded grid for a 2-D code
(`plots.plot_latent_grid`), a traversal otherwise (`plots.latent_traversal`, one row per
dimension). `static=True` asks for that figure anywhere. A conditional VAE is explored
as one class: `explore_latent(model, label=7)` decodes every code as a 7.
"""

from __future__ import annotations

import io
import numbers
import os

import keras
import numpy as np

from vaekit import cvae, experiments, plots
from vaekit._checks import check_output_path, check_positive_number, check_switch, check_values
from vaekit.guards import check_positive_int

DEFAULT_VALUES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
# A flag to draw static figures even in a live notebook (e.g. when exporting it to HTML).
STATIC_VARIABLE = "VAEKIT_STATIC_PLOTS"


def explore_latent(model, max_sliders: int = 8, extent: float = 3.0, static: bool = False,
                   values=DEFAULT_VALUES, path=None, label: int | None = None):
    """Sliders over the latent code of `model`, decoding live; a static figure where widgets cannot show.

    `model` is a `vaekit.VAE` or its decoder (see `plots.decode`). Sliders run over
    [-extent, extent], one per latent dimension up to `max_sliders` (the rest held at 0).
    Returns a `LatentExplorer` (the last line of a cell shows it), or with `static=True`
    or without a widget frontend (`widget_frontend`) the matplotlib Figure of the
    fallback: for a 2-D code the decoded grid over [-extent, extent]^2, otherwise a
    traversal of the first `max_sliders` dimensions over `values` (saved to `path` if given).

    A `vaekit.ConditionalVAE` needs `label`, the class every code is decoded as
    (`explore_latent(model, label=7)`: sliders over the codes of 7s); other models take none.
    """
    static = check_switch("static", static)
    if isinstance(model, cvae.ConditionalVAE):
        model = LabelledDecoder(model, label)
    elif label is not None:
        raise ValueError(f"`label` is for a ConditionalVAE, whose decoder takes a class; `model` is a "
                         f"{type(model).__name__}: leave `label` out (got {label!r}).")
    max_sliders, extent, values = _check_figure_arguments(max_sliders, extent, values, path)
    size = plots.latent_dim(model)  # refuses anything that is not a VAE or a decoder
    reason = "static=True" if static else widget_frontend()[1]
    if reason is None:
        return LatentExplorer(model, max_sliders=max_sliders, extent=extent)
    shown = "the decoded grid" if size == 2 else f"a traversal of z[0..{min(size, max_sliders) - 1}]"
    print(f"explore_latent: no sliders ({reason}); showing {shown} instead.")
    return static_figure(model, max_sliders=max_sliders, extent=extent, values=values, path=path)


def widget_frontend() -> tuple[bool, str | None]:
    """(True, None) where live widgets can show, else (False, why not).

    Widgets need ipywidgets and a Jupyter kernel (IPython's ZMQ shell); a notebook run
    in quick mode (`$VAEKIT_QUICK`, as the tests execute them) or with
    `$VAEKIT_STATIC_PLOTS` set has no one to move a slider, so it gets the static figure.
    """
    if experiments.quick_mode():
        return False, f"${experiments.QUICK_VARIABLE} is set"
    if os.environ.get(STATIC_VARIABLE, "").strip().lower() in ("1", "true", "yes"):
        return False, f"${STATIC_VARIABLE} is set"
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False, "ipywidgets is not installed: pip install ipywidgets"
    shell = get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return False, "not in a Jupyter notebook"
    return True, None


def static_figure(model, max_sliders: int = 8, extent: float = 3.0, values=DEFAULT_VALUES, path=None):
    """The fallback of `explore_latent`: the decoded grid (2-D codes) or a traversal from z = 0."""
    max_sliders, extent, values = _check_figure_arguments(max_sliders, extent, values, path)
    size = plots.latent_dim(model)
    if size == 2:
        return plots.plot_latent_grid(model, n=15, extent=extent, path=path)
    dims = list(range(min(size, max_sliders)))
    rows = plots.latent_traversal(model, np.zeros(size, dtype=np.float32), dims, values)
    title = f"z[d] swept over {', '.join(f'{v:g}' for v in values)}, the other dimensions at 0"
    return plots.show_images(list(rows), [f"z[{d}]" for d in dims], title=title, path=path)


def _check_figure_arguments(max_sliders, extent, values, path) -> tuple[int, float, tuple[float, ...]]:
    """The arguments `explore_latent` and `static_figure` share, checked in one order: (max_sliders, extent, values)."""
    max_sliders = check_positive_int("max_sliders", max_sliders)
    extent = check_positive_number("extent", extent)
    values = tuple(float(v) for v in check_values("values", values))
    check_output_path("path", path, optional=True)
    return max_sliders, extent, values


class LabelledDecoder:
    """A ConditionalVAE's decoder with the class fixed: it takes codes alone, as a plain decoder does.

    `predict(z)` returns `model.decode(z, label)` for every code, so the sliders and the
    static figures (`plots.decode`) draw a conditional model like an unconditional one.
    """

    def __init__(self, model: cvae.ConditionalVAE, label: int):
        if label is None:
            raise TypeError("`model` is a ConditionalVAE, whose decoder needs a class with each code: "
                            f"pass `label=`, one of 0..{model.num_classes - 1} (e.g. explore_latent(model, "
                            f"label={model.num_classes - 1})), or draw it with "
                            "`vaekit.cvae.generate(model, labels, z)`.")
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise TypeError(f"`label` must be one integer class, got {label!r}.")
        if not 0 <= label < model.num_classes:
            raise ValueError(f"`label` must lie in 0..{model.num_classes - 1} (the model's classes), got {label}.")
        self.model, self.label = model, int(label)
        self.input_shape = tuple(model.decoder.input_shape[0])  # (None, latent_dim): the code, without the label

    def predict(self, z, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32)
        return np.concatenate([keras.ops.convert_to_numpy(self.model.decode(
            z[start:start + batch_size], np.full(len(z[start:start + batch_size]), self.label)))
            for start in range(0, len(z), batch_size)])


class LatentExplorer:
    """The widgets of `explore_latent`: sliders over z and the image decoded from it.

    `update()` decodes the sliders' z into `image` (a NumPy array) and the widget's PNG;
    every slider calls it when moved. `widget` is the ipywidgets box to display.
    """

    def __init__(self, model, max_sliders: int = 8, extent: float = 3.0, step: float = 0.05, zoom: int = 6):
        max_sliders = check_positive_int("max_sliders", max_sliders)
        extent, step = check_positive_number("extent", extent), check_positive_number("step", step)
        if step > 2 * extent:
            raise ValueError(f"`step` must be at most the sliders' span 2 * extent = {2 * extent:g}, got {step:g}.")
        zoom = check_positive_int("zoom", zoom)
        import ipywidgets

        self.model, self.zoom = model, zoom
        self.latent_dim = plots.latent_dim(model)
        self.sliders = [ipywidgets.FloatSlider(value=0.0, min=-extent, max=extent, step=step, description=f"z[{d}]",
                                               continuous_update=True)
                        for d in range(min(self.latent_dim, max_sliders))]
        held = self.latent_dim - len(self.sliders)
        note = f"z[{len(self.sliders)}..{self.latent_dim - 1}] held at 0" if held else ""
        self.picture = ipywidgets.Image(format="png")
        self.widget = ipywidgets.HBox([ipywidgets.VBox([*self.sliders, ipywidgets.Label(note)]), self.picture])
        for slider in self.sliders:
            slider.observe(lambda change: self.update(), names="value")
        self.update()

    @property
    def z(self) -> np.ndarray:
        """The code the sliders set: their values, then zeros for the dimensions without one."""
        z = np.zeros(self.latent_dim, dtype=np.float32)
        z[:len(self.sliders)] = [slider.value for slider in self.sliders]
        return z

    def update(self) -> np.ndarray:
        """Decode the sliders' z, show it, and return the image."""
        self.image = plots.decode(self.model, self.z[None])[0]
        self.picture.value = _png(self.image, self.zoom)
        return self.image

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"LatentExplorer({len(self.sliders)} sliders over a {self.latent_dim}-D code)"


def _png(image: np.ndarray, zoom: int) -> bytes:
    """`image` (h, w[, 1 or 3]) in [0, 1] as PNG bytes, each pixel a zoom x zoom square (no blur when shown)."""
    import matplotlib.image

    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    image = image.repeat(zoom, axis=0).repeat(zoom, axis=1)
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buffer.getvalue()
