"""Bézier scars and clumps (DefectMaker-style): drawn shapes filled with noise or with image content.

A scar is a thick Bézier stroke (scratch, crack); a clump is a closed Bézier blob (stain, dent, spot).
The fill is random noise with a controlled mean and spread, or a patch of another image (`source=`)
or of the same image; it is pasted or blended with weight `alpha`. Shapes and fills are free
parameters, not learnt: realistic only where real defects look like "a line or a blob of something
else"; a noise fill with a mean close to the surface looks like no defect at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ... import masks
from ...registry import register
from ...sample import as_image
from ..base import bbox, blend_in_box, build_params, check_choice, make_sample, match_channels, prepare


@dataclass
class BezierParams:
    shape: str = "random"  # "scar" | "clump" | "random" (even odds); DefectMaker's two Bézier shape families
    fill: str = "random"  # "noise" | "patch" | "random" (even odds); DefectMaker: noise or image-patch fill
    blend: str = "random"  # "paste" | "blend" | "random" (even odds)
    noise_mean: tuple[float, float] = (0.0, 1.0)  # ours: mean grey level of a noise fill, drawn uniformly
    noise_std: tuple[float, float] = (0.02, 0.15)  # ours: spread of a noise fill
    noise_smooth: float = 1.0  # ours: Gaussian sigma (pixels) smoothing the noise into grain
    alpha: tuple[float, float] = (0.5, 0.9)  # ours: weight of the fill when blend="blend"
    scar_length: tuple[float, float] = (0.15, 0.5)  # ours: fraction of the shorter image side
    scar_thickness: tuple[float, float] = (0.01, 0.04)  # ours: fraction of the shorter image side
    clump_radius: tuple[float, float] = (0.04, 0.15)  # ours: fraction of the shorter image side


@register("bezier", family="handcrafted")
class Bezier:
    Params = BezierParams

    def __init__(self, params: BezierParams | None = None, source=None, **overrides):
        """`source`: an image whose patches fill the shapes (default: the image being edited)."""
        self.params = build_params(BezierParams, params, overrides, "bezier")
        p = self.params
        check_choice("bezier", "shape", p.shape, ("scar", "clump", "random"))
        check_choice("bezier", "fill", p.fill, ("noise", "patch", "random"))
        check_choice("bezier", "blend", p.blend, ("paste", "blend", "random"))
        self.source = None if source is None else as_image(source, what="bezier source")

    def _shape(self, shape, rng, fg):
        p = self.params
        kind = p.shape if p.shape != "random" else ("scar", "clump")[int(rng.integers(2))]
        if kind == "scar":
            return kind, masks.bezier_scar(shape, rng, p.scar_length, p.scar_thickness, foreground=fg)
        return kind, masks.bezier_clump(shape, rng, p.clump_radius, foreground=fg)

    def _fill(self, img, box, rng, kind):
        p = self.params
        _, _, h, w = box
        if kind == "noise":
            mean, std = rng.uniform(*p.noise_mean), rng.uniform(*p.noise_std)
            noise = rng.standard_normal((h, w, img.shape[2]), dtype=np.float32) * np.float32(std) + np.float32(mean)
            if p.noise_smooth > 0:
                noise = cv2.GaussianBlur(noise, (0, 0), p.noise_smooth).reshape(h, w, img.shape[2])
            return np.clip(noise, 0, 1), {"mean": mean, "std": std}
        src = img if self.source is None else match_channels(self.source, img.shape[2])
        if src.shape[0] < h or src.shape[1] < w:
            src = cv2.resize(src, (max(w, src.shape[1]), max(h, src.shape[0]))).reshape(max(h, src.shape[0]), max(w, src.shape[1]), -1)
        sy, sx = int(rng.integers(0, src.shape[0] - h + 1)), int(rng.integers(0, src.shape[1] - w + 1))
        return src[sy:sy + h, sx:sx + w], {"src_box": (sy, sx, h, w)}

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None):
        """`mask=` requests the defect region (the shape is not drawn then)."""
        img, fg, want = prepare(image, foreground, mask, self.name)
        p = self.params
        shape_kind, m = ("requested", want) if want is not None else self._shape(img.shape[:2], rng, fg)
        box = bbox(m)
        fill_kind = p.fill if p.fill != "random" else ("noise", "patch")[int(rng.integers(2))]
        fill, fill_info = self._fill(img, box, rng, fill_kind)
        blend = p.blend if p.blend != "random" else ("paste", "blend")[int(rng.integers(2))]
        alpha = 1.0 if blend == "paste" else float(rng.uniform(*p.alpha))
        out = blend_in_box(img, fill, m, box, 1 - alpha)
        return make_sample(self.name, out, m, p, shape=shape_kind, fill=fill_kind, blend=blend, alpha=alpha, **fill_info)
