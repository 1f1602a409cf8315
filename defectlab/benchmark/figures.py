"""Figures of the benchmark: PR curves (computed in bins, kept small for the JSON files, and drawn), the grid of
detections, and the two written into a benchmark folder (`pr_curves.png`, `detections.png`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import BenchmarkConfig
from .folder import run_file


def downsample_curve(x: np.ndarray, y: np.ndarray, points: int = 200) -> tuple[list, list]:
    """Keep about `points` points of a curve so it fits in a JSON file."""
    idx = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).round().astype(int))
    return [round(float(v), 5) for v in x[idx]], [round(float(v), 5) for v in y[idx]]


def pr_curves(masks: np.ndarray, maps: np.ndarray, scores: np.ndarray, bins: int = 1000, labels=None) -> dict:
    """Image-level and pixel-level precision-recall curves. Pixels are counted in `bins` score bins
    (maps are probabilities in [0, 1]) instead of sorted: millions of pixels take one pass. `labels` as in
    `metrics.detection.evaluate` (a defect image whose mask is empty adds no pixels)."""
    from ..metrics.detection import image_labels

    labels, scored = image_labels(masks, labels)
    out = {}
    for level, (y, s) in {"image": (labels, scores), "pixel": (masks[scored].ravel(), maps[scored].ravel())}.items():
        if not y.any() or y.all():
            continue
        edges = np.linspace(0, 1, bins + 1) if level == "pixel" else np.unique(s)
        if level == "image":
            edges = np.append(edges, np.inf)
        pos = np.histogram(np.clip(s[y], 0, 1) if level == "pixel" else s[y], bins=edges)[0]
        neg = np.histogram(np.clip(s[~y], 0, 1) if level == "pixel" else s[~y], bins=edges)[0]
        tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])  # threshold falling from the top bin
        keep = (tp + fp) > 0
        recall, precision = tp[keep] / y.sum(), tp[keep] / (tp + fp)[keep]
        recall, precision = np.concatenate([[0.0], recall]), np.concatenate([[precision[0]], precision])
        out[level] = dict(zip(("recall", "precision"), downsample_curve(recall, precision)))
    return out


def _pyplot():
    import matplotlib

    from ..viz import in_notebook

    if not in_notebook():
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def pr_figure(curves: dict[str, dict], title: str = ""):
    """Two panels (image level, pixel level), one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, level in zip(axes, ("image", "pixel")):
        for name, c in curves.items():
            if level in c:
                style = "--" if name.endswith("+fewshot") else ("-" if name != "fewshot" else ":")
                ax.plot(c[level]["recall"], c[level]["precision"], style, lw=1.5 if name == "fewshot" else 1, label=name)
        ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
        ax.set_title(f"{level}-level PR {title}".strip(), fontsize=10)
    axes[1].legend(fontsize=7, loc="upper right", ncol=1 + len(curves) // 10)
    fig.tight_layout()
    return fig


def detection_grid(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], maps_by_run: dict[str, np.ndarray],
                   labels: Sequence[str] | None = None, cell: float = 1.4):
    """Rows: test images (ground truth outlined); columns: each run's anomaly map, scaled by that
    run's largest value over the shown images (a weak detector's maps would otherwise look black)."""
    from ..viz import grid_figure, overlay

    cmap = _pyplot().get_cmap("inferno")
    scaled = [np.asarray(m, np.float32) / max(float(np.max(m)), 1e-6) for m in maps_by_run.values()]
    rows = []
    for i, (img, mask) in enumerate(zip(images, masks)):
        rows.append([overlay(img, mask)] + [cmap(m[i])[:, :, :3] for m in scaled])
    return grid_figure(rows, labels, col_labels=["ground truth", *maps_by_run], cell=cell)


def write_plots(cfg: BenchmarkConfig, out: Path, cache, splits) -> None:
    from ..viz import save_figure

    import matplotlib.pyplot as plt

    seed = cfg.seeds[0]
    curves = {r: json.loads(run_file(out, r, seed).read_text())["curves"] for r in cfg.run_names()}
    fig = pr_figure(curves, f"(seed {seed})")
    save_figure(fig, out / "pr_curves.png")
    plt.close(fig)
    maps = {r: np.load(run_file(out, r, seed).with_suffix(".npz")) for r in cfg.run_names()}
    index = maps[cfg.run_names()[0]]["index"]
    split = splits[seed]
    test = split.test_records()
    fig = detection_grid([cache.eval_image(test[i]) for i in index], [cache.eval_mask(test[i]) for i in index], {r: v["maps"] for r, v in maps.items()},
                         labels=[test[i].label for i in index])
    save_figure(fig, out / "detections.png")
    plt.close(fig)
