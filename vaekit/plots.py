"""Figures for autoencoders and VAEs (matplotlib).

Every function returns its `Figure` and, given `path`, also saves it as a PNG
(`save_figure`, which any figure of your own can use too). Images may be (n, h, w),
(n, h, w, 1), (n, h, w, 3) or flat (n, 784); colour images in [-1, 1] are shown by
passing `value_range=(-1, 1)`. Every function checks its arguments before it decodes or
draws anything (`vaekit._checks`): a wrong size, extent, value range or path raises a
TypeError or ValueError naming it, what was given and what is allowed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from vaekit import _io, evaluate
from vaekit._checks import (check_batch_list, check_code_array, check_codes, check_dims, check_encode, check_encoded,
                            check_figure, check_fraction, check_grid_size, check_history, check_image_pair,
                            check_images_to_draw, check_names, check_one_code, check_optional_count,
                            check_output_path, check_panels, check_positive_number, check_recorded, check_roc_panels,
                            check_size, check_switch, check_value_range, check_values, float32_array)
from vaekit.guards import check_labels, check_positive_int, check_seed
from vaekit.vae import VAE


def show_images(rows: Sequence, row_titles: Sequence[str] | None = None, title: str | None = None,
                cmap: str = "gray", value_range=(0.0, 1.0), path=None, scale: float = 1.2):
    """A grid with one row per image batch (e.g. originals, reconstructions)."""
    rows = check_batch_list("rows", rows)
    row_titles = check_names("row_titles", row_titles, length=len(rows), optional=True)
    value_range = check_value_range("value_range", value_range)
    scale = check_positive_number("scale", scale)
    check_output_path("path", path, optional=True)
    rows = [check_images_to_draw(r) for r in rows]
    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(scale * n, scale * len(rows) + (0.4 if title else 0)),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row):
                _imshow(ax, row[j], cmap, value_range)
        if row_titles:
            axes[i, 0].set_ylabel(row_titles[i], rotation=0, ha="right", va="center", fontsize=10)
    return _save(fig, path, title)


def plot_reconstructions(originals, reconstructions, n: int = 10, title: str | None = None,
                         cmap: str = "gray", value_range=(0.0, 1.0), path=None):
    """Originals (top row) above their reconstructions (bottom row)."""
    n = check_positive_int("n", n)
    value_range = check_value_range("value_range", value_range)
    check_output_path("path", path, optional=True)
    return show_images([originals[:n], reconstructions[:n]], ["original", "reconstruction"],
                       title=title, cmap=cmap, value_range=value_range, path=path)


def plot_image_grid(images, ncols: int | None = None, title: str | None = None, cmap: str = "gray",
                    value_range=(0.0, 1.0), path=None, scale: float = 0.9):
    """Images tiled into one picture, `ncols` per row (square by default)."""
    ncols = check_optional_count("ncols", ncols)
    value_range = check_value_range("value_range", value_range)
    scale = check_positive_number("scale", scale)
    check_output_path("path", path, optional=True)
    images = check_images_to_draw(images)
    canvas = _tile(images, ncols, value_range[0])
    nrows, ncols = canvas.shape[0] // images.shape[1], canvas.shape[1] // images.shape[2]
    fig, ax = plt.subplots(figsize=(scale * ncols, scale * nrows + (0.4 if title else 0)))
    _imshow(ax, canvas, cmap, value_range)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_history(history, keys: Sequence[str] | None = None, title: str | None = None,
                 ylabel: str = "loss", logy: bool = False, logx: bool = False, path=None):
    """Training and validation curves, one panel per metric (loss, reconstruction, KL).

    A dot marks each epoch up to 100 epochs; longer runs are drawn as lines. `logx`
    spreads the first epochs of a long run over the axis (epoch 1 to 10 as wide as 100 to 1,000).
    """
    logs = check_history("history", history)
    keys = check_names("keys", keys, optional=True) or [k for k in logs if not k.startswith("val_")]
    check_recorded("keys", keys, [logs])
    logy, logx = check_switch("logy", logy), check_switch("logx", logx)
    check_output_path("path", path, optional=True)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        epochs = np.arange(1, len(logs[key]) + 1)
        marker = "." if len(epochs) <= 100 else None
        ax.plot(epochs, logs[key], marker=marker, label="train")
        if f"val_{key}" in logs:
            ax.plot(epochs, logs[f"val_{key}"], marker=marker, label="validation")
        ax.legend()
    return _finish_curves(fig, axes[0], [key.replace("_", " ") for key in keys], ylabel, logy, title, path, logx)


def project_2d(z) -> tuple[np.ndarray, tuple[str, str]]:
    """2-D coordinates for latent codes and their axis labels: as they are for d = 2, PCA for d > 2.

    The PCA labels say how much of the codes' variance each component carries, e.g.
    "PC 1 (34 % of the variance)".
    """
    z = check_code_array("z", z)
    if z.shape[1] == 2:
        return z, ("z[0]", "z[1]")
    centred = z - z.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = 100 * s[:2] ** 2 / max(np.sum(s ** 2), np.finfo(float).tiny)
    return centred @ vt[:2].T, tuple(f"PC {k + 1} ({share:.0f} % of the variance)" for k, share in enumerate(explained))


def plot_latent_scatter(z, labels=None, title: str | None = None, class_names=None, ax=None, path=None,
                        label_name: str = "label"):
    """Latent codes coloured by label (integer classes, one per code; the colour bar is titled
    `label_name`); PCA projection when d > 2, each axis labelled with its share of the variance."""
    check_output_path("path", path, optional=True)
    coords, axis_labels = project_2d(z)
    if labels is not None:
        labels = check_labels("labels", labels, None, length=len(coords))
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.4, 5.4))
    ax = ax or fig.add_subplot()
    points = ax.scatter(coords[:, 0], coords[:, 1], c=labels, cmap="tab10", s=2, alpha=0.7,
                        vmin=-0.5, vmax=9.5)
    if labels is not None:
        bar = fig.colorbar(points, ax=ax, ticks=range(10), label=label_name)
        if class_names is not None:
            bar.ax.set_yticklabels(class_names)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title or ("latent means" if z.shape[1] == 2 else "latent means, first two principal components"))
    return _save(fig, path)


def plot_latent_panels(panels: Mapping[str, tuple], ncols: int = 4, panel_size: tuple[float, float] = (5.5, 4.5),
                       title: str | None = None, same_scale: bool = True, path=None):
    """Several latent scatters side by side, `ncols` per row (one per model, say).

    `panels` maps a panel title to `(z, labels)` or `(z, labels, class_names)`; each
    is drawn by `plot_latent_scatter` (PCA for d > 2). With `same_scale` (the default)
    every panel spans the same range, so a wide code space looks wider than a narrow one;
    `same_scale=False` fits each panel to its own codes. Unused grid cells stay blank.
    """
    panels = check_panels("panels", panels, "(z, labels) or (z, labels, class_names)", lengths=(2, 3))
    ncols = check_positive_int("ncols", ncols)
    panel_size = check_size("panel_size", panel_size)
    same_scale = check_switch("same_scale", same_scale)
    check_output_path("path", path, optional=True)
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (panel_title, (z, labels, *class_names)) in zip(axes.ravel(), panels.items()):
        plot_latent_scatter(z, labels, ax=ax, title=panel_title, class_names=class_names[0] if class_names else None)
    if same_scale:
        drawn = axes.ravel()[:len(panels)]
        edge = max(max(abs(limit) for limit in (*ax.get_xlim(), *ax.get_ylim())) for ax in drawn)
        for ax in drawn:
            ax.set(xlim=(-edge, edge), ylim=(-edge, edge))
    return _save(fig, path, title, tight=False)


def latent_grid(n: int = 15, extent: float = 3.0) -> np.ndarray:
    """An n*n grid of 2-D latent points over [-extent, extent]^2, top row = highest z[1]."""
    n, extent = check_grid_size("n", n), check_positive_number("extent", extent)
    values = np.linspace(-extent, extent, n, dtype=np.float32)
    z1, z0 = np.meshgrid(values[::-1], values, indexing="ij")
    return np.stack([z0.ravel(), z1.ravel()], axis=-1)


def decode(model, z, batch_size: int = 256) -> np.ndarray:
    """The images for latent codes `z`: a VAE's distribution means, or a decoder's outputs.

    `model` is a `vaekit.VAE` (its `decode`: the mean image of the decoder's
    distribution, which for the continuous Bernoulli is not the decoder's output) or a
    decoder (a keras.Model taking z). Every plot of decoded codes goes through here.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    z = check_codes("z", model, z)
    if isinstance(model, VAE):
        return np.concatenate([float32_array(model.decode(z[start:start + batch_size]))
                               for start in range(0, len(z), batch_size)])
    if hasattr(model, "predict") and hasattr(model, "input_shape"):  # a decoder, or anything that decodes like one
        return float32_array(model.predict(z, batch_size=batch_size, verbose=0))
    raise TypeError(f"`model` must be a vaekit.VAE or its decoder (a keras.Model), got {type(model).__name__}.")


def latent_dim(model) -> int:
    """The size of the latent code that `model` (a `vaekit.VAE` or a decoder) takes."""
    if isinstance(model, VAE):
        model = model.decoder
    if not hasattr(model, "input_shape"):
        raise TypeError(f"`model` must be a vaekit.VAE or its decoder (a keras.Model), got {type(model).__name__}.")
    return int(model.input_shape[-1])


def plot_latent_grid(model, n: int = 15, extent: float = 3.0, codes=None, mass: float = 0.95,
                     title: str | None = None, cmap: str = "gray", path=None):
    """Decode an n*n grid over [-extent, extent]^2 (2-D latents) in one batch, z values on the axes.

    `model` is a `vaekit.VAE` or its decoder (see `decode`).
    With `codes` (e.g. the test set's latent means, shape (m, 2)), an orange line encloses
    the densest region holding `mass` of them: where the encoder actually puts data. The
    prior N(0, I) fills the square; the codes (the aggregate posterior) need not, and the
    images outside the line are decoded from codes no training image was given.
    """
    n, extent = check_grid_size("n", n), check_positive_number("extent", extent)
    mass = check_fraction("mass", mass)
    check_output_path("path", path, optional=True)
    if latent_dim(model) != 2:
        raise ValueError(f"plot_latent_grid needs a 2-D latent space, the model's has {latent_dim(model)} dimensions.")
    codes = None if codes is None else check_code_array("codes", codes, width=2)
    images = check_images_to_draw(decode(model, latent_grid(n, extent), batch_size=max(256, n * n)))
    half_cell = extent / (n - 1)
    edge = extent + half_cell  # each image is centred on its z, so the canvas reaches half a cell further
    fig, ax = plt.subplots(figsize=(0.55 * n + 1.2, 0.55 * n + 1.0))
    _imshow(ax, _tile(images, n, 0.0), cmap, (0.0, 1.0))
    ax.images[0].set_extent((-edge, edge, -edge, edge))
    ax.set_xlim(-edge, edge), ax.set_ylim(-edge, edge)  # set_extent leaves the pixel-unit limits of imshow
    ticks = np.arange(-math.floor(extent), math.floor(extent) + 1)
    ax.set_xticks(ticks), ax.set_yticks(ticks)
    ax.set_xlabel("z[0]"), ax.set_ylabel("z[1]")
    if codes is not None:
        density, levels = _density_levels(codes, edge, mass)
        centres = np.linspace(-edge, edge, density.shape[0])
        ax.contour(centres, centres, density.T, levels=levels, colors="tab:orange", linewidths=2)
        ax.plot([], [], color="tab:orange", linewidth=2, label=f"{mass:.0%} of the codes")
        ax.legend(loc="upper right", framealpha=0.85)
    ax.set_title(title or f"decoded grid over [-{extent:g}, {extent:g}]²")
    return _save(fig, path)


def _density_levels(codes: np.ndarray, edge: float, mass: float, bins: int = 80):
    """A smoothed 2-D histogram of `codes` over [-edge, edge]^2 and the level enclosing `mass` of all codes."""
    counts, _, _ = np.histogram2d(codes[:, 0], codes[:, 1], bins=bins, range=[[-edge, edge], [-edge, edge]])
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)  # a small Gaussian blur, sigma = one bin
    kernel /= kernel.sum()
    for axis in (0, 1):
        counts = np.apply_along_axis(np.convolve, axis, counts, kernel, mode="same")
    # The highest-density region: add bins from the densest down until `mass` of all codes is inside.
    ordered = np.sort(counts.ravel())[::-1]
    inside = np.searchsorted(np.cumsum(ordered), mass * len(codes))
    return counts, [ordered[min(inside, len(ordered) - 1)]]


def sample_prior(model, n: int, seed: int | None = None) -> np.ndarray:
    """Decode n draws z ~ N(0, I) from the prior with `model`, a `vaekit.VAE` or its decoder (see `decode`)."""
    n, seed = check_positive_int("n", n), check_seed("seed", seed)
    z = np.random.default_rng(seed).standard_normal((n, latent_dim(model))).astype("float32")
    return decode(model, z)


def plot_prior_samples(model, n: int = 10, ncols: int | None = None, seed: int | None = None,
                       title: str | None = None, cmap: str = "gray", value_range=(0.0, 1.0), path=None):
    """Images decoded from z ~ N(0, I)."""
    n, ncols, seed = check_positive_int("n", n), check_optional_count("ncols", ncols), check_seed("seed", seed)
    value_range = check_value_range("value_range", value_range)
    check_output_path("path", path, optional=True)
    images = sample_prior(model, n, seed)
    return plot_image_grid(images, ncols=ncols or n, title=title or f"{n} samples from N(0, I)",
                           cmap=cmap, value_range=value_range, path=path)


def interpolate(encode, model, x_start, x_end, steps: int = 10) -> np.ndarray:
    """Decode `steps` points on the straight line between the codes of two images.

    `encode` maps a batch of images to codes (for a VAE, the latent means); `model`
    is a `vaekit.VAE` or a decoder (see `decode`).
    """
    check_encode("encode", encode)
    steps = check_grid_size("steps", steps, what="the two ends and the points between them")
    codes = check_encoded(encode(check_image_pair(x_start, x_end)))
    weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    flat = codes.reshape(2, -1)
    path = ((1 - weights) * flat[0] + weights * flat[1]).reshape((steps,) + codes.shape[1:])
    return decode(model, path)


def latent_traversal(model, z, dims: Sequence[int], values=(-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)) -> np.ndarray:
    """Decode `z` with one latent dimension at a time swept over `values`, the others held.

    Returns images shaped (len(dims), len(values), h, w[, c]): row r varies z[dims[r]].
    With a disentangled code each row changes one property of the image (slant, width...).
    `model` is a `vaekit.VAE` or its decoder (see `decode`).
    """
    z = np.asarray(z, dtype=np.float32).reshape(-1)
    size = latent_dim(model)
    check_one_code("z", z, size)
    dims = check_dims("dims", dims, size)
    values = check_values("values", values)
    codes = np.repeat(z[None, None, :], len(dims), axis=0).repeat(len(values), axis=1)
    for row, d in enumerate(dims):
        codes[row, :, d] = values
    images = decode(model, codes.reshape(-1, size), batch_size=max(256, codes.shape[0] * codes.shape[1]))
    return np.asarray(images).reshape(len(dims), len(values), *np.shape(images)[1:])


def _imshow(ax, image, cmap, value_range):
    low, high = value_range
    if image.ndim == 3:  # colour: imshow wants [0, 1]
        ax.imshow(np.clip((image - low) / (high - low), 0, 1))
    else:
        ax.imshow(image, cmap=cmap, vmin=low, vmax=high)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save `fig` to `path` (format from its suffix, e.g. .png), creating the folder; returns the path.

    The figure is written under a temporary name and then renamed, so an interrupted
    run never leaves a half-written image in place of the previous one.
    """
    check_figure("fig", fig)
    path = check_output_path("path", path)
    dpi = check_positive_number("dpi", dpi)
    if not path.suffix:  # as savefig itself does: "name" is saved as "name.png"
        path = path.with_name(f"{path.name}.{matplotlib.rcParams['savefig.format']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _io.replacing(path) as temporary:
        fig.savefig(temporary, dpi=dpi, bbox_inches="tight")
    return path


def _save(fig, path, title: str | None = None, tight: bool = True):
    """A plot's last step: the figure's `title` if given, its layout tightened, saved to `path` if given."""
    if title:
        fig.suptitle(title)
    if tight:
        fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_image_panels(panels: Mapping[str, object], ncols: int | None = None, panels_per_row: int = 4,
                      title: str | None = None, cmap: str = "gray", value_range=(0.0, 1.0), path=None,
                      panel_size: float = 2.6):
    """One tiled image grid per run, side by side: `panels` maps a panel title to a batch of images.

    Each batch is tiled `ncols` per row (square by default), so e.g. 64 samples from
    each of several models can be compared in one figure.
    """
    panels = check_panels("panels", panels, "a batch of images")
    ncols, panels_per_row = check_optional_count("ncols", ncols), check_positive_int("panels_per_row", panels_per_row)
    value_range = check_value_range("value_range", value_range)
    panel_size = check_positive_number("panel_size", panel_size)
    check_output_path("path", path, optional=True)
    canvases = {name: _tile(check_images_to_draw(images), ncols, value_range[0]) for name, images in panels.items()}
    columns = min(panels_per_row, len(canvases))
    rows = math.ceil(len(canvases) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel_size * columns, (panel_size + 0.35) * rows + (0.4 if title else 0)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, canvas) in zip(axes.ravel(), canvases.items()):
        _imshow(ax, canvas, cmap, value_range)
        ax.set_title(name, fontsize=10)
    return _save(fig, path, title)


def plot_histories(histories: Mapping[str, object], keys: Sequence[str] = ("loss",), titles: Sequence[str] | None = None,
                   ylabel: str = "loss", logy: bool = False, title: str | None = None, path=None):
    """Training curves of several runs: one panel per metric, one colour per run.

    Training is drawn solid and validation (`val_<key>`, where recorded) dashed. A run
    without a metric (say, an autoencoder has no KL) is left out of that panel.
    """
    histories = check_panels("histories", histories, "a History or a dict of per-epoch values")
    every_logs = {name: check_history(f"histories[{name!r}]", history) for name, history in histories.items()}
    keys = check_names("keys", keys)
    check_recorded("keys", keys, list(every_logs.values()))
    titles = check_names("titles", titles, length=len(keys), optional=True)
    logy = check_switch("logy", logy)
    check_output_path("path", path, optional=True)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, logs) in enumerate(every_logs.items()):
        colour = colours[k % len(colours)]
        for ax, key in zip(axes[0], keys):
            if key not in logs:
                continue
            epochs = np.arange(1, len(logs[key]) + 1)
            ax.plot(epochs, logs[key], color=colour, marker=".", label=name)
            if f"val_{key}" in logs:
                ax.plot(epochs, logs[f"val_{key}"], color=colour, linestyle="--")
    axes[0, 0].legend(fontsize=8, title="solid: train, dashed: validation", title_fontsize=8)
    titles = titles or [key.replace("_", " ") for key in keys]
    return _finish_curves(fig, axes[0], titles, ylabel, logy, title, path)


def _finish_curves(fig, axes, titles, ylabel, logy, title, path, logx=False):
    """The axes of a row of per-epoch curves: titles, whole-epoch ticks, y label on the first."""
    for i, (ax, panel_title) in enumerate(zip(axes, titles)):
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        if logx:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(ylabel if i == 0 else "")
        if logy:
            ax.set_yscale("log")
        ax.grid(True, linestyle="--", alpha=0.5)
    return _save(fig, path, title)


def _tile(images: np.ndarray, ncols: int | None, fill: float) -> np.ndarray:
    """Images (n, h, w[, c]) pasted into one canvas, `ncols` per row (square by default)."""
    n = len(images)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    h, w = images.shape[1:3]
    canvas = np.full((nrows * h, ncols * w) + images.shape[3:], fill, dtype=np.float32)
    for k, image in enumerate(images):
        r, c = divmod(k, ncols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return canvas


def plot_roc(panels: Mapping[str, Mapping[str, tuple]], panel_size: tuple[float, float] = (5.2, 4.6), path=None):
    """ROC curves, one panel per data split and one curve per model, AUC in the legend.

    `panels` maps a panel title (the split) to `{model name: (scores, is_anomaly)}`;
    higher scores mean more anomalous (see `evaluate.roc_curve`).
    """
    panels = check_roc_panels("panels", panels)
    panel_size = check_size("panel_size", panel_size)
    check_output_path("path", path, optional=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]), squeeze=False)
    for ax, (panel_title, curves) in zip(axes[0], panels.items()):
        for name, (scores, is_anomaly) in curves.items():
            fpr, tpr = evaluate.roc_curve(scores, is_anomaly)
            ax.plot(fpr, tpr, label=f"{name} (AUC {evaluate.roc_auc(scores, is_anomaly):.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
        ax.set(title=panel_title, xlabel="false-positive rate (normal flagged)",
               ylabel="true-positive rate (anomaly flagged)")
        ax.grid(True, linestyle="--", alpha=0.5)
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
