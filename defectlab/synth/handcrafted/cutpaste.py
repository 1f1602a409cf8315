"""CutPaste (Li et al., CVPR 2021): cut a rectangle from the image and paste it elsewhere.

The pasted patch is colour-jittered so it is not an exact copy. Good at local structural breaks on
textures; fails on defects that are not "a piece of the same image in the wrong place" (stains,
scratches) and, on objects, may paste background onto the object (the patch source is anywhere).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import masks
from ...registry import register
from ..base import bbox, build_params, color_jitter, make_sample, prepare


@dataclass
class CutPasteParams:
    area_ratio: tuple[float, float] = (0.02, 0.15)  # CutPaste (Li et al. 2021), Appendix A: patch area / image area
    aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3)  # CutPaste, Appendix A: [0.3, 1) U (1, 3.3], log-uniform
    color_jitter: float = 0.1  # CutPaste, Appendix A: colour jitter 0.1 (brightness, contrast, saturation, hue)


@register("cutpaste", family="handcrafted")
class CutPaste:
    Params = CutPasteParams

    def __init__(self, params: CutPasteParams | None = None, **overrides):
        self.params = build_params(CutPasteParams, params, overrides, "cutpaste")

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None):
        """`mask=` requests the destination region (its bounding box is filled from a random source box)."""
        img, fg, want = prepare(image, foreground, mask, self.name)
        p = self.params
        if want is None:
            geom = masks.cutpaste_rect(img.shape[:2], rng, p.area_ratio, p.aspect_ratio, foreground=fg)
        else:
            y, x, h, w = bbox(want)
            src = (int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - w + 1)), h, w)
            geom = masks.PatchGeometry(src, (y, x, h, w), want[y:y + h, x:x + w])
        sy, sx, h, w = geom.src_box
        y, x, _, _ = geom.dst_box
        patch = color_jitter(img[sy:sy + h, sx:sx + w], rng, p.color_jitter)
        out = img.copy()
        region = out[y:y + h, x:x + w]
        region[geom.patch_mask] = patch[geom.patch_mask]
        return make_sample(self.name, out, geom.full_mask(img.shape[:2]), p, src_box=geom.src_box, dst_box=geom.dst_box)
