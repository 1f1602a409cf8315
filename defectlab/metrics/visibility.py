"""How visible a defect is: contrast between the defect region and the ring of pixels around it.

For each defect (the mask's pixels) and its ring (the mask dilated by `ring` pixels, minus the mask; the ring
width grows with the defect: a quarter of its equivalent diameter, at least `min_ring`), on the grey image:
- mean contrast     |mean(in) - mean(ring)| / std(ring)
- gradient contrast |mean(g in) - mean(g ring)| / std(g ring), g = Sobel gradient energy (local texture)
and `visibility` = their Euclidean norm. A synthetic method whose defects are far less visible than the real
ones (median ratio below `flag_ratio`) labels normal-looking texture as defect: it is flagged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import DefectlabError


@dataclass
class VisibilityParams:
    ring_fraction: float = 0.25  # ring width / equivalent diameter of the defect (defectlab's choice)
    min_ring: int = 2  # pixels
    max_ring: int = 16  # pixels
    flag_ratio: float = 0.5  # flagged when the synthetic median is below half the real median (defectlab's choice)


def _grey(image) -> np.ndarray:
    from ..sample import as_image

    im = as_image(image)
    return im.mean(axis=2).astype(np.float64)


def defect_visibility(image, mask, params: VisibilityParams | None = None) -> dict:
    """Mean, gradient and combined contrast of one defect against its ring (NaN without a usable ring)."""
    p = params or VisibilityParams()
    mask = np.asarray(mask, bool)
    g = _grey(image)
    if mask.shape != g.shape:
        raise DefectlabError(f"mask: shape {mask.shape} differs from the image's {g.shape}")
    nan = {"mean_contrast": float("nan"), "gradient_contrast": float("nan"), "visibility": float("nan")}
    if not mask.any() or mask.all():
        return nan
    width = int(np.clip(round(p.ring_fraction * 2 * np.sqrt(mask.sum() / np.pi)), p.min_ring, p.max_ring))
    ring = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=width) & ~mask
    if ring.sum() < 4:
        return nan
    energy = ndimage.sobel(g, 0) ** 2 + ndimage.sobel(g, 1) ** 2
    eps = 1e-6

    def contrast(x):
        return abs(x[mask].mean() - x[ring].mean()) / (x[ring].std() + eps)

    m, e = contrast(g), contrast(energy)
    return {"mean_contrast": float(m), "gradient_contrast": float(e), "visibility": float(np.hypot(m, e))}


def visibility(images, masks, params: VisibilityParams | None = None) -> np.ndarray:
    """`visibility` of every image's defect (NaN where there is none)."""
    if len(images) != len(masks):
        raise DefectlabError(f"visibility: {len(images)} images but {len(masks)} masks")
    return np.array([defect_visibility(im, m, params)["visibility"] for im, m in zip(images, masks)])


def compare(real_images, real_masks, fake_images, fake_masks, params: VisibilityParams | None = None) -> dict:
    """Median visibility of real and synthetic defects, their ratio, and whether the method is flagged."""
    p = params or VisibilityParams()
    r, f = visibility(real_images, real_masks, p), visibility(fake_images, fake_masks, p)
    r, f = r[np.isfinite(r)], f[np.isfinite(f)]
    rm = float(np.median(r)) if r.size else float("nan")
    fm = float(np.median(f)) if f.size else float("nan")
    ratio = fm / rm if r.size and f.size and rm > 0 else float("nan")
    return {"visibility_real": rm, "visibility_fake": fm, "visibility_ratio": ratio,
            "visibility_flag": bool(np.isfinite(ratio) and ratio < p.flag_ratio),
            "visibility_n_real": int(r.size), "visibility_n_fake": int(f.size)}


__all__ = ["VisibilityParams", "compare", "defect_visibility", "visibility"]
