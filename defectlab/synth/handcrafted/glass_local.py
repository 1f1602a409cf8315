"""GLASS local anomaly synthesis (Chen et al., ECCV 2024, Sec. 3.4, "LAS").

Like DRAEM, a foreign texture is blended into a Perlin region, with two changes: the region is one
Perlin mask, or the union, or the intersection of two (1/3 each), so shapes vary more; and the
blend weight is beta ~ N(0.5, 0.1) clipped to [0.2, 0.8], so the texture is never almost invisible
nor fully opaque. The region is restricted to the foreground. Same failure modes as DRAEM.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import masks
from ...errors import DefectlabError
from ...registry import register
from ..base import bbox, blend_in_box, build_params, make_sample, prepare
from .anomaly_source import get_source, texture_for


@dataclass
class GlassLocalParams:
    min_scale: int = 0  # GLASS code (after DRAEM): min_perlin_scale = 0
    max_scale: int = 6  # GLASS code: perlin_scale = 6
    threshold: float = 0.5  # GLASS code: Perlin threshold 0.5
    beta_mean: float = 0.5  # GLASS Sec. 3.4: beta ~ N(0.5, 0.1^2)
    beta_std: float = 0.1  # GLASS Sec. 3.4
    beta_clip: tuple[float, float] = (0.2, 0.8)  # GLASS Sec. 3.4: beta clipped to [0.2, 0.8]
    n_augment: int = 3  # GLASS code: 3 random augmenters on the DTD texture, as DRAEM
    texture_folder: str | None = None  # GLASS uses DTD; None = offline default


@register("glass_local", family="handcrafted")
class GlassLocal:
    Params = GlassLocalParams

    def __init__(self, params: GlassLocalParams | None = None, **overrides):
        self.params = build_params(GlassLocalParams, params, overrides, "glass_local")
        self.source = get_source(None if self.params.texture_folder is None else str(self.params.texture_folder))

    def _mask(self, shape, rng, fg):
        p = self.params
        for _ in range(masks.MAX_TRIES):
            mode = ("single", "union", "intersection")[int(rng.integers(3))]
            m = masks.perlin_mask(shape, rng, p.min_scale, p.max_scale, p.threshold)
            if mode != "single":
                m2 = masks.perlin_mask(shape, rng, p.min_scale, p.max_scale, p.threshold)
                m = m | m2 if mode == "union" else m & m2
            m &= fg
            if m.any():
                return m, mode
        raise DefectlabError(f"glass_local: no Perlin region inside the {int(fg.sum())}-pixel foreground")

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None):
        """`mask=` replaces the Perlin region."""
        img, fg, m = prepare(image, foreground, mask, self.name)
        p = self.params
        m, mode = (m, "requested") if m is not None else self._mask(img.shape[:2], rng, fg)
        box = bbox(m)
        texture, augs = texture_for(self.source, img.shape[:2], img.shape[2], rng, box, p.n_augment)
        beta = float(np.clip(rng.normal(p.beta_mean, p.beta_std), *p.beta_clip))
        return make_sample(self.name, blend_in_box(img, texture, m, box, beta), m, p, beta=beta, mask_mode=mode, augmenters=augs)
