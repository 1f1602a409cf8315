"""DRAEM's anomaly synthesis (Zavrtanik et al., ICCV 2021, Sec. 3.2).

A Perlin-noise mask M selects where a foreign texture A (augmented by 3 random image operations) is
blended in: I' = I(1 - M) + (1 - beta) A M + beta I M, beta = 0.8 U[0, 1). The textures are
"out of distribution" on purpose: DRAEM teaches a detector that anything unlike the normal surface
is a defect, not what real defects look like. Fails as a realistic generator: blobs of foreign
texture rarely resemble scratches, dents or missing parts. Textures: `texture_folder` (e.g. DTD,
as in the paper) or the offline default (see `anomaly_source`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import masks
from ...registry import register
from ..base import bbox, blend_in_box, build_params, make_sample, prepare
from .anomaly_source import get_source, texture_for


@dataclass
class DraemParams:
    min_scale: int = 0  # DRAEM (Zavrtanik et al. 2021) code: min_perlin_scale = 0
    max_scale: int = 6  # DRAEM code: perlin_scale = 6, lattice 2^U{0..5} cells per axis
    threshold: float = 0.5  # DRAEM Sec. 3.2: Perlin noise thresholded at 0.5
    rotate: bool = True  # DRAEM code: noise rotated by U(-90, 90) degrees
    beta_max: float = 0.8  # DRAEM Sec. 3.2: beta = 0.8 * U[0, 1), the share of the original kept
    n_augment: int = 3  # DRAEM code: 3 of 10 augmenters per texture
    texture_folder: str | None = None  # DRAEM uses DTD; None = offline scikit-image photos + procedural textures


@register("draem", family="handcrafted")
class Draem:
    Params = DraemParams

    def __init__(self, params: DraemParams | None = None, **overrides):
        self.params = build_params(DraemParams, params, overrides, "draem")
        self.source = get_source(None if self.params.texture_folder is None else str(self.params.texture_folder))

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None):
        """`mask=` replaces the Perlin mask."""
        img, fg, m = prepare(image, foreground, mask, self.name)
        p = self.params
        if m is None:
            m = masks.perlin_mask(img.shape[:2], rng, p.min_scale, p.max_scale, p.threshold, p.rotate, foreground=fg)
        box = bbox(m)
        texture, augs = texture_for(self.source, img.shape[:2], img.shape[2], rng, box, p.n_augment)
        beta = p.beta_max * float(rng.random())
        return make_sample(self.name, blend_in_box(img, texture, m, box, beta), m, p, beta=beta, augmenters=augs)
