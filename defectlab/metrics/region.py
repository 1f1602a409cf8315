"""Quality where the defect is: every quality metric on square windows centred on the defects.

Image-level KID / FID compare whole images; when a defect covers 1 % of the picture they measure the
background. Here each defect (8-connected region of the mask, at least `min_area` pixels) gets a square window
around its box, `margin` times the box's longer side added on every side (context), at least `min_side` pixels,
moved inside the image and resized to `size`; synthetic windows are compared with the same windows around
held-out real defects. Small sets are the norm: the n of each side is reported, and KID uses subsets of half the
smaller set. These values go *beside* the image-level ones, never replace them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import DefectlabError


@dataclass
class RegionParams:
    margin: float = 0.5  # context on each side, as a fraction of the box's longer side (defectlab's choice)
    min_side: int = 32  # smallest window, in pixels of the image
    size: int = 128  # windows are resized to this side (then each network resizes as it always does)
    min_area: int = 4  # regions smaller than this (pixels) are left out: a few pixels carry no texture
    max_per_image: int = 4  # largest regions first
    max_windows: int | None = None  # at most this many windows per set (the first images' first), None: all


def windows(mask: np.ndarray, params: RegionParams | None = None) -> list[tuple[int, int, int]]:
    """(top, left, side) of the square window around each defect region of one mask (largest first)."""
    p = params or RegionParams()
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    areas = np.bincount(lab.ravel())[1:]
    boxes = ndimage.find_objects(lab)
    out = []
    for k in np.argsort(-areas, kind="stable")[: p.max_per_image]:
        if areas[k] < p.min_area:
            continue
        ys, xs = boxes[k]
        long = max(ys.stop - ys.start, xs.stop - xs.start)
        side = min(max(int(round(long * (1 + 2 * p.margin))), p.min_side), h, w)
        cy, cx = (ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2
        top = int(np.clip(round(cy - side / 2), 0, h - side))
        left = int(np.clip(round(cx - side / 2), 0, w - side))
        out.append((top, left, side))
    return out


def crops(images, masks, params: RegionParams | None = None) -> tuple[list[np.ndarray], list[tuple]]:
    """The defect windows of a set of images, resized to `params.size` (bilinear, antialiased); and for each,
    (image index, top, left, side)."""
    import torch
    import torch.nn.functional as F

    from ..sample import as_image

    p = params or RegionParams()
    if len(images) != len(masks):
        raise DefectlabError(f"region crops: {len(images)} images but {len(masks)} masks")
    out, where = [], []
    for i, (image, mask) in enumerate(zip(images, masks)):
        image = as_image(image, f"images[{i}]")
        if np.asarray(mask).shape != image.shape[:2]:
            raise DefectlabError(f"masks[{i}]: shape {np.asarray(mask).shape} differs from its image {image.shape[:2]}")
        for top, left, side in windows(mask, p):
            win = torch.from_numpy(np.ascontiguousarray(image[top:top + side, left:left + side])).permute(2, 0, 1)[None]
            win = F.interpolate(win, size=(p.size, p.size), mode="bilinear", align_corners=False, antialias=True)
            out.append(win[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32))
            where.append((i, top, left, side))
            if p.max_windows is not None and len(out) >= p.max_windows:
                return out, where
    return out, where


def region_quality(real_images, real_masks, fake_images, fake_masks, params: RegionParams | None = None, *,
                   rng: np.random.Generator | None = None, ic_lpips: bool = True) -> dict:
    """KID, FID, the domain distance and IC-LPIPS on defect windows (synthetic vs held-out real), keys prefixed
    `region_`; `region_n_real` / `region_n_fake` windows, `region_margin`, `region_size`. Metrics that need more
    windows than there are are left out (KID / FID need 2 per side)."""
    from . import quality  # the one-call function of the package
    from .domain import DomainParams

    p = params or RegionParams()
    real, _ = crops(real_images, real_masks, p)
    fake, _ = crops(fake_images, fake_masks, p)
    out = {"region_n_real": len(real), "region_n_fake": len(fake), "region_margin": p.margin, "region_size": p.size}
    if len(real) < 2 or len(fake) < 2:
        return out
    q = quality(real, fake, isc=False, ic_lpips=ic_lpips, rng=rng, domain_params=DomainParams(size=max(32, p.size // 32 * 32)))
    for k in ("fid", "kid", "kid_std", "kid_subset_size", "domain_frechet", "domain_kernel", "ic_lpips",
              "ic_lpips_network"):
        if k in q:
            out[f"region_{k}"] = q[k]
    return out


def window_gallery(images, masks, scores=None, n: int = 3, params: RegionParams | None = None, title: str = ""):
    """The `n` lowest- and `n` highest-scoring defect windows side by side (a matplotlib figure), mask outlined.

    scores: one per window (as `crops` lists them); default: each window's visibility against its ring
    (`metrics.visibility`), so the left half shows the defects a detector can hardly see. Returns
    (figure, the window indices shown: worst first, then best)."""
    import matplotlib.pyplot as plt

    from .visibility import defect_visibility

    p = params or RegionParams()
    wins, where = crops(images, masks, p)
    if not wins:
        raise DefectlabError("window_gallery: no defect windows (empty masks?)")
    if scores is None:
        scores = []
        for i, top, left, side in where:
            m = np.asarray(masks[i], bool)[top:top + side, left:left + side]
            im = np.asarray(images[i])[top:top + side, left:left + side]
            scores.append(defect_visibility(im, m)["visibility"])
    scores = np.nan_to_num(np.asarray(scores, float), nan=-np.inf)
    if scores.size != len(wins):
        raise DefectlabError(f"window_gallery: {scores.size} scores for {len(wins)} windows")
    order = np.argsort(scores, kind="stable")
    k = min(n, len(wins))
    shown = list(order[:k]) + [j for j in order[::-1][:k] if j not in order[:k]]
    fig, axes = plt.subplots(1, len(shown), figsize=(1.8 * len(shown), 2.1), squeeze=False)
    for ax, j in zip(axes[0], shown):
        i, top, left, side = where[j]
        m = np.asarray(masks[i], bool)[top:top + side, left:left + side].astype(float)
        ax.imshow(wins[j].squeeze(), cmap="gray", vmin=0, vmax=1)
        ax.contour(np.linspace(0, p.size - 1, side), np.linspace(0, p.size - 1, side), m, levels=[0.5],
                   colors="r", linewidths=0.6)
        ax.set_title(f"{'worst' if j in order[:k] else 'best'} {scores[j]:.2f}", fontsize=7)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig, [int(j) for j in shown]


__all__ = ["RegionParams", "crops", "region_quality", "window_gallery", "windows"]
