"""Pictures: overlays and image / defect / mask / overlay grids."""
from __future__ import annotations

import textwrap
from typing import Any, Callable, Sequence

import numpy as np

from .sample import Sample


def to_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def overlay(image: np.ndarray, mask: np.ndarray, color=(1.0, 0.1, 0.1), alpha: float = 0.45) -> np.ndarray:
    """The image in RGB with the mask tinted and its outline drawn."""
    from scipy.ndimage import binary_erosion

    rgb = to_rgb(image).copy()
    m = np.asarray(mask, bool)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, np.float32)
    edge = m & ~binary_erosion(m)
    rgb[edge] = color
    return rgb


def outline(image: np.ndarray, mask: np.ndarray, color=(1.0, 0.1, 0.1)) -> np.ndarray:
    """The image in RGB with a one-pixel line just *outside* the mask: the defect's own pixels stay as drawn
    (`overlay` tints and edges the mask itself, which hides a thin defect)."""
    from scipy.ndimage import binary_dilation

    rgb = to_rgb(image).copy()
    m = np.asarray(mask, bool)
    rgb[binary_dilation(m) & ~m] = color
    return rgb


def sample_row(good: np.ndarray, sample: Sample) -> list[np.ndarray]:
    """good image, synthetic defect, mask, overlay: the four panels of one method."""
    return [to_rgb(good), to_rgb(sample.image), to_rgb(sample.mask.astype(np.float32)), overlay(sample.image, sample.mask)]


def zoom(image: np.ndarray, mask: np.ndarray, margin: float = 0.5, min_side: int = 32) -> np.ndarray:
    """The square crop around the mask (its bounding box grown by `margin` of its side, at least
    `min_side` px), in RGB: thin defects vanish at full-image scale."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return to_rgb(image)
    h, w = mask.shape
    side = int(max(np.ptp(ys) + 1, np.ptp(xs) + 1, min_side / (1 + 2 * margin)) * (1 + 2 * margin))
    side = min(side, h, w)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    y0, x0 = int(np.clip(cy - side // 2, 0, h - side)), int(np.clip(cx - side // 2, 0, w - side))
    return to_rgb(image)[y0:y0 + side, x0:x0 + side]


def grid_figure(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str] | None = None,
                col_labels: Sequence[str] = ("good", "synthetic", "mask", "overlay"), cell: float = 2.0):
    """A matplotlib figure laying out `rows` of panels with labels."""
    import matplotlib

    if matplotlib.get_backend().lower() == "agg" or not in_notebook():
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(row):
                ax.imshow(np.clip(row[j], 0, 1), interpolation="nearest")
            else:
                ax.axis("off")
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=9)
            if j == 0 and row_labels is not None:  # wrapped to the row's height: long labels ran into their neighbours
                ax.set_ylabel(textwrap.fill(str(row_labels[i]), max(8, int(cell * 12))), fontsize=9)
    fig.tight_layout()
    return fig


def sample_grid(goods: Sequence[np.ndarray], samples: Sequence[Sample], labels: Sequence[str] | None = None, cell=2.0):
    """Figure with one row (good / synthetic / mask / overlay) per sample."""
    return grid_figure([sample_row(g, s) for g, s in zip(goods, samples)], labels, cell=cell)


def sweep_figure(make: Callable[[Any], Any], values: Sequence, images: Sequence[np.ndarray],
                 foregrounds: Sequence[np.ndarray | None] | None = None, *, name: str = "", seed: int = 0,
                 row_labels: Sequence[str] | None = None, cell: float = 1.8, zoomed: bool = False):
    """The static stand-in of an interactive cell: one column per value of the parameter a slider moves
    (`make(value)` builds the method), one row per image. Every picture of a row is drawn with the same generator,
    `default_rng([seed, row])`, so along a row only the parameter changes; a red line runs just outside the mask
    (`zoomed`: each picture cropped around its defect, `zoom`)."""
    methods = [make(v) for v in values]
    rows = []
    for i, image in enumerate(images):
        fg = foregrounds[i] if foregrounds is not None else None
        samples = [m(image, np.random.default_rng([seed, i]), foreground=fg) for m in methods]
        pictures = [outline(s.image, s.mask) for s in samples]
        rows.append([zoom(p, s.mask) for p, s in zip(pictures, samples)] if zoomed else pictures)
    return grid_figure(rows, row_labels, col_labels=[f"{name} = {v}" if name else str(v) for v in values], cell=cell)


def save_figure(fig, path) -> None:
    """Save a figure atomically as PNG."""
    import io

    from .imageio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def in_notebook() -> bool:
    """True inside a Jupyter kernel (figures show inline there)."""
    try:
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:
        return False
