"""Figures for autoencoders and VAEs (matplotlib).

Every function returns its `Figure` and, given `path`, also saves it as a PNG.
Images may be (n, h, w), (n, h, w, 1), (n, h, w, 3) or flat (n, 784); colour
images in [-1, 1] are shown by passing `value_range=(-1, 1)`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend():
    matplotlib.use("Agg")  # headless runs (CI, scripts) need no display
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from vaekit import _io


def show_images(rows: Sequence, row_titles: Sequence[str] | None = None, title: str | None = None,
                cmap: str = "gray", value_range=(0.0, 1.0), path=None, scale: float = 1.2):
    """A grid with one row per image batch (e.g. originals, reconstructions)."""
    rows = [_as_images(r) for r in rows]
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_reconstructions(originals, reconstructions, n: int = 10, title: str | None = None,
                         cmap: str = "gray", value_range=(0.0, 1.0), path=None):
    """Originals (top row) above their reconstructions (bottom row)."""
    return show_images([originals[:n], reconstructions[:n]], ["original", "reconstruction"],
                       title=title, cmap=cmap, value_range=value_range, path=path)


def plot_image_grid(images, ncols: int | None = None, title: str | None = None, cmap: str = "gray",
                    value_range=(0.0, 1.0), path=None, scale: float = 0.9):
    """Images tiled into one picture, `ncols` per row (square by default)."""
    images = _as_images(images)
    ncols = ncols or math.ceil(math.sqrt(len(images)))
    nrows = math.ceil(len(images) / ncols)
    canvas = _tile(images, ncols, value_range[0])
    fig, ax = plt.subplots(figsize=(scale * ncols, scale * nrows + (0.4 if title else 0)))
    _imshow(ax, canvas, cmap, value_range)
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_history(history, keys: Sequence[str] | None = None, title: str | None = None,
                 ylabel: str = "loss", logy: bool = False, path=None):
    """Training and validation curves, one panel per metric (loss, reconstruction, KL)."""
    logs = history.history if hasattr(history, "history") else dict(history)
    keys = keys or [k for k in logs if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        epochs = np.arange(1, len(logs[key]) + 1)
        ax.plot(epochs, logs[key], marker=".", label="train")
        if f"val_{key}" in logs:
            ax.plot(epochs, logs[f"val_{key}"], marker=".", label="validation")
        ax.legend()
    return _finish_curves(fig, axes[0], [key.replace("_", " ") for key in keys], ylabel, logy, title, path)


def project_2d(z) -> tuple[np.ndarray, str]:
    """Return 2-D coordinates for latent codes: as they are for d=2, PCA for d>2."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"`z` must have shape (n, d) with d >= 2, got {z.shape}.")
    if z.shape[1] == 2:
        return z, "z"
    centred = z - z.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = s[:2] ** 2 / np.sum(s ** 2)
    return centred @ vt[:2].T, f"PC (explains {100 * explained.sum():.0f}% of variance)"


def plot_latent_scatter(z, labels=None, title: str | None = None, class_names=None, ax=None, path=None):
    """Latent codes coloured by label; PCA projection when d > 2."""
    coords, axis_name = project_2d(z)
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.4, 5.4))
    ax = ax or fig.add_subplot()
    points = ax.scatter(coords[:, 0], coords[:, 1], c=labels, cmap="tab10", s=2, alpha=0.7,
                        vmin=-0.5, vmax=9.5)
    if labels is not None:
        bar = fig.colorbar(points, ax=ax, ticks=range(10))
        if class_names is not None:
            bar.ax.set_yticklabels(class_names)
    ax.set_xlabel(f"{axis_name}[0]" if axis_name == "z" else f"{axis_name.split(' ')[0]} 1")
    ax.set_ylabel(f"{axis_name}[1]" if axis_name == "z" else f"{axis_name.split(' ')[0]} 2")
    ax.set_title(title or ("latent means" if axis_name == "z" else f"latent means, {axis_name}"))
    fig.tight_layout()
    return _save(fig, path)


def latent_grid(n: int = 15, extent: float = 3.0) -> np.ndarray:
    """An n*n grid of 2-D latent points over [-extent, extent]^2, top row = highest z[1]."""
    values = np.linspace(-extent, extent, n, dtype=np.float32)
    z1, z0 = np.meshgrid(values[::-1], values, indexing="ij")
    return np.stack([z0.ravel(), z1.ravel()], axis=-1)


def plot_latent_grid(decoder, n: int = 15, extent: float = 3.0, title: str | None = None,
                     cmap: str = "gray", path=None):
    """Decode an n*n grid over [-extent, extent]^2 (2-D latents) in one batch."""
    if decoder.input_shape[-1] != 2:
        raise ValueError(f"plot_latent_grid needs a 2-D latent space, the decoder takes {decoder.input_shape[-1]}.")
    images = decoder.predict(latent_grid(n, extent), batch_size=max(256, n * n), verbose=0)
    fig = plot_image_grid(images, ncols=n, cmap=cmap, scale=0.55,
                          title=title or f"decoded grid over [-{extent:g}, {extent:g}]²")
    return _save(fig, path)


def sample_prior(decoder, n: int, seed: int | None = None) -> np.ndarray:
    """Decode n draws z ~ N(0, I) from the prior."""
    z = np.random.default_rng(seed).standard_normal((n, decoder.input_shape[-1])).astype("float32")
    return decoder.predict(z, verbose=0)


def plot_prior_samples(decoder, n: int = 10, ncols: int | None = None, seed: int | None = None,
                       title: str | None = None, cmap: str = "gray", value_range=(0.0, 1.0), path=None):
    """Images decoded from z ~ N(0, I)."""
    images = sample_prior(decoder, n, seed)
    return plot_image_grid(images, ncols=ncols or n, title=title or f"{n} samples from N(0, I)",
                           cmap=cmap, value_range=value_range, path=path)


def interpolate(encode, decoder, x_start, x_end, steps: int = 10) -> np.ndarray:
    """Decode `steps` points on the straight line between the codes of two images.

    `encode` maps a batch of images to codes (for a VAE, the latent means).
    """
    codes = np.asarray(encode(np.stack([x_start, x_end])))
    weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    flat = codes.reshape(2, -1)
    path = ((1 - weights) * flat[0] + weights * flat[1]).reshape((steps,) + codes.shape[1:])
    return decoder.predict(path, verbose=0)


def plot_interpolations(encode, decoder, pairs, steps: int = 10, row_titles=None, title: str | None = None,
                        cmap: str = "gray", path=None):
    """One row per (start, end) image pair, decoded along the line between their codes."""
    rows = [interpolate(encode, decoder, a, b, steps) for a, b in pairs]
    return show_images(rows, row_titles, title=title or "latent interpolation", cmap=cmap, path=path)


def _as_images(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:  # flat vectors: square grayscale images
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"Flat images of length {images.shape[1]} are not square; reshape them first.")
        images = images.reshape(-1, side, side)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4):
        raise ValueError(f"Expected a batch of images (n, h, w[, c]), got shape {images.shape}.")
    return images


def _imshow(ax, image, cmap, value_range):
    low, high = value_range
    if image.ndim == 3:  # colour: imshow wants [0, 1]
        ax.imshow(np.clip((image - low) / (high - low), 0, 1))
    else:
        ax.imshow(image, cmap=cmap, vmin=low, vmax=high)


def _save(fig, path):
    if path is not None:
        path = os.fspath(path)
        if not os.path.splitext(path)[1]:  # as savefig itself does: "name" is saved as "name.png"
            path += "." + matplotlib.rcParams["savefig.format"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with _io.replacing(path) as temporary:  # a stop mid-save never leaves half a PNG
            fig.savefig(temporary, dpi=110, bbox_inches="tight")
    return fig


def plot_image_panels(panels: Mapping[str, object], ncols: int | None = None, panels_per_row: int = 4,
                      title: str | None = None, cmap: str = "gray", value_range=(0.0, 1.0), path=None,
                      panel_size: float = 2.6):
    """One tiled image grid per run, side by side: `panels` maps a panel title to a batch of images.

    Each batch is tiled `ncols` per row (square by default), so e.g. 64 samples from
    each of several models can be compared in one figure.
    """
    if not panels:
        raise ValueError("`panels` is empty.")
    canvases = {name: _tile(_as_images(images), ncols, value_range[0]) for name, images in panels.items()}
    columns = min(panels_per_row, len(canvases))
    rows = math.ceil(len(canvases) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel_size * columns, (panel_size + 0.35) * rows + (0.4 if title else 0)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, canvas) in zip(axes.ravel(), canvases.items()):
        _imshow(ax, canvas, cmap, value_range)
        ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_histories(histories: Mapping[str, object], keys: Sequence[str] = ("loss",), titles: Sequence[str] | None = None,
                   ylabel: str = "loss", logy: bool = False, title: str | None = None, path=None):
    """Training curves of several runs: one panel per metric, one colour per run.

    Training is drawn solid and validation (`val_<key>`, where recorded) dashed. A run
    without a metric (say, an autoencoder has no KL) is left out of that panel.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, history) in enumerate(histories.items()):
        logs = history.history if hasattr(history, "history") else dict(history)
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


def _finish_curves(fig, axes, titles, ylabel, logy, title, path):
    """The axes of a row of per-epoch curves: titles, whole-epoch ticks, y label on the first."""
    for i, (ax, panel_title) in enumerate(zip(axes, titles)):
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(ylabel if i == 0 else "")
        if logy:
            ax.set_yscale("log")
        ax.grid(True, linestyle="--", alpha=0.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


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
