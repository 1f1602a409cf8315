"""MemSeg's anomaly simulation (Yang et al., Computers in Industry 2023, Sec. 3.2).

The Perlin mask is intersected with the object's foreground (so defects never land on the
background), then filled with a "noise foreground" made transparent by delta ~ U[0.15, 1]:
I_A = (1 - M) I + delta M N + (1 - delta) M I. N is either a foreign texture (texture anomaly, as
DRAEM) or the image itself, jittered and cut into a 4 x 4 grid of shuffled tiles (structure anomaly).
Fails on objects whose foreground estimate is wrong, and the shuffled-tile structure looks
unnatural on images without a regular layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ... import masks
from ...registry import register
from ..base import bbox, blend_in_box, build_params, color_jitter, make_sample, prepare
from .anomaly_source import get_source, texture_for


@dataclass
class MemSegParams:
    min_scale: int = 0  # MemSeg follows DRAEM's Perlin noise: min scale 0
    max_scale: int = 6  # DRAEM / MemSeg: perlin_scale 6
    threshold: float = 0.5  # DRAEM / MemSeg: threshold 0.5
    transparency: tuple[float, float] = (0.15, 1.0)  # MemSeg Sec. 3.2: delta ~ U[0.15, 1]
    structure_prob: float = 0.5  # ours (public re-implementations use even odds): structure vs texture anomaly
    structure_grid: int = 4  # MemSeg Sec. 3.2: the augmented image is cut into a 4 x 4 grid of shuffled tiles
    n_augment: int = 3  # texture anomaly: DRAEM's 3 augmenters
    texture_folder: str | None = None  # MemSeg uses DTD; None = offline default


@register("memseg", family="handcrafted")
class MemSeg:
    Params = MemSegParams

    def __init__(self, params: MemSegParams | None = None, **overrides):
        self.params = build_params(MemSegParams, params, overrides, "memseg")
        self.source = get_source(None if self.params.texture_folder is None else str(self.params.texture_folder))

    def _structure(self, img, box, rng):
        """The image, flipped and colour-jittered, as a shuffled g x g grid of tiles; only `box` is returned."""
        g = self.params.structure_grid
        h, w = img.shape[:2]
        aug = color_jitter(img[::-1] if rng.random() < 0.5 else img[:, ::-1], rng, 0.2)
        th, tw = -(-h // g), -(-w // g)
        tiles = cv2.resize(aug, (tw * g, th * g)).reshape(g, th, g, tw, img.shape[2]).transpose(0, 2, 1, 3, 4)
        tiles = tiles.reshape(g * g, th, tw, img.shape[2])[rng.permutation(g * g)]
        grid = tiles.reshape(g, g, th, tw, img.shape[2]).transpose(0, 2, 1, 3, 4).reshape(g * th, g * tw, img.shape[2])
        y, x, bh, bw = box
        return cv2.resize(grid, (w, h)).reshape(h, w, img.shape[2])[y:y + bh, x:x + bw]

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None):
        """`mask=` replaces the Perlin mask (still AND foreground)."""
        img, fg, m = prepare(image, foreground, mask, self.name)
        p = self.params
        if m is None:
            m = masks.perlin_mask(img.shape[:2], rng, p.min_scale, p.max_scale, p.threshold, True, foreground=fg)
        box = bbox(m)
        if rng.random() < p.structure_prob:
            kind, noise, augs = "structure", self._structure(img, box, rng), []
        else:
            kind = "texture"
            noise, augs = texture_for(self.source, img.shape[:2], img.shape[2], rng, box, p.n_augment)
        delta = float(rng.uniform(*p.transparency))
        out = blend_in_box(img, noise, m, box, 1 - delta)
        return make_sample(self.name, out, m, p, anomaly=kind, transparency=delta, augmenters=augs)
