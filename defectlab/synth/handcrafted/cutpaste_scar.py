"""CutPaste-scar (Li et al., CVPR 2021): a thin, rotated strip cut from the image and pasted elsewhere.

Imitates scratches and cracks. Fails where real scratches differ in colour from the surface (the
strip is a piece of the same surface) and on very small images (the strip has fixed pixel sizes).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ... import masks
from ...registry import register
from ..base import build_params, color_jitter, make_sample, prepare


@dataclass
class CutPasteScarParams:
    width: tuple[int, int] = (2, 16)  # CutPaste (Li et al. 2021), Appendix A: scar width in pixels
    height: tuple[int, int] = (10, 25)  # CutPaste, Appendix A: scar length in pixels
    rotation: tuple[float, float] = (-45, 45)  # CutPaste, Appendix A: rotation in degrees
    color_jitter: float = 0.1  # CutPaste, Appendix A: colour jitter 0.1


@register("cutpaste_scar", family="handcrafted")
class CutPasteScar:
    Params = CutPasteScarParams

    def __init__(self, params: CutPasteScarParams | None = None, **overrides):
        self.params = build_params(CutPasteScarParams, params, overrides, "cutpaste_scar")

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None):
        """`mask=` restricts the scar to that region (scars are placed inside it)."""
        img, fg, want = prepare(image, foreground, mask, self.name)
        p = self.params
        geom = masks.cutpaste_scar(img.shape[:2], rng, p.width, p.height, p.rotation, foreground=fg if want is None else want)
        sy, sx, h, w = geom.src_box
        y, x, bh, bw = geom.dst_box
        patch = color_jitter(img[sy:sy + h, sx:sx + w], rng, p.color_jitter)
        rotated = cv2.warpAffine(patch, geom.transform, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rotated = rotated.reshape(bh, bw, img.shape[2])  # OpenCV drops a single channel axis
        out = img.copy()
        region = out[y:y + bh, x:x + bw]
        region[geom.patch_mask] = rotated[geom.patch_mask]
        return make_sample(self.name, out, geom.full_mask(img.shape[:2]), p, src_box=geom.src_box, dst_box=geom.dst_box,
                           angle=float(np.degrees(np.arctan2(geom.transform[0, 1], geom.transform[0, 0]))))
